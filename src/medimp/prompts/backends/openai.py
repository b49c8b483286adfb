"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

Works with a hosted service, vLLM, llama.cpp server or Ollama (``/v1/chat/completions``). The
API key is read from an environment variable (never from a file or the command line). Requests
are retried with exponential back-off on 429, 5xx, timeouts and dropped connections, honouring
``Retry-After``. Only the standard library is used (urllib).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from medimp.prompts.errors import BackendError

__all__ = ["Completion", "OpenAIBackend"]


@dataclass
class Completion:
    """One reply: its text and why generation stopped ("stop", "length", …)."""

    text: str
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class OpenAIBackend:
    """Client of an OpenAI-compatible ``chat/completions`` endpoint.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``.
        model: the model name the server expects.
        api_key_env: environment variable holding the key (unset: no Authorization header,
            fine for local servers).
        temperature: sampling temperature.
        max_tokens: reply length limit.
        timeout: seconds per request.
        max_retries: retries after the first attempt on 429/5xx/timeouts.
        backoff: first back-off delay in seconds (doubles each retry, capped at 60 s).
        sleep: the sleep function (tests pass a fast one).
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.9, max_tokens: int = 1024, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep):
        if not base_url.startswith(("http://", "https://")):
            raise BackendError(f"base URL {base_url!r} must start with http:// or https://")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """Send ``messages``; return the first choice.

        Raises:
            BackendError: a non-retryable HTTP error, retries exhausted, or a body that is not
                a chat-completions answer.
        """
        body = json.dumps({"model": self.model, "messages": messages,
                           "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            delay = min(60.0, self.backoff * 2**attempt)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                return self._parse(raw)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last = f"HTTP {exc.code}: {detail}"
                if exc.code != 429 and exc.code < 500:
                    hint = (f"; set ${self.api_key_env}" if exc.code in (401, 403) else "")
                    raise BackendError(f"{self.url}: {last}{hint}") from exc
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = min(60.0, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.max_retries:
                self.sleep(delay)
        raise BackendError(f"{self.url}: giving up after {self.max_retries + 1} attempts "
                           f"({last}); check the server or raise --retries")

    def _parse(self, raw: bytes) -> Completion:
        try:
            doc = json.loads(raw)
            choice = doc["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.url}: the reply is not a chat-completions answer "
                               f"({raw[:200]!r})") from exc
        return Completion(text=str(text), finish_reason=choice.get("finish_reason"))
