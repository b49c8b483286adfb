"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

Works with a hosted service, vLLM, llama.cpp server or Ollama (``/v1/chat/completions``). The
API key is read from an environment variable (never from a file or the command line); like the
OpenAI client libraries, the endpoint and the model default to ``$OPENAI_BASE_URL`` and
``$OPENAI_MODEL``. Requests are retried with exponential back-off on 429, 5xx, timeouts, dropped
connections and replies that are not HTTP or are cut short, honouring ``Retry-After``. Only the
standard library is used (urllib).

Privacy: the backend refuses to send anything unless it was given the cohort values that must
never leave the machine (``forbidden``) or was told explicitly that there is no cohort
(``no_cohort=True``); every message is checked against them before it is sent.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from medimp.prompts.backends._registry import register_backend
from medimp.prompts.errors import BackendError, PrivacyError
from medimp.prompts.privacy import assert_safe_to_send

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "Completion", "OpenAIBackend"]

#: Used when neither an argument nor ``$OPENAI_BASE_URL`` gives the endpoint: a local server,
#: so that nothing goes to a hosted service unless asked.
DEFAULT_BASE_URL = "http://localhost:8000/v1"
#: Used when neither an argument nor ``$OPENAI_MODEL`` names the model.
DEFAULT_MODEL = "gpt-4o-mini"


class _BadReplyError(Exception):
    """A reply that is not HTTP, or is cut short: retried like a 5xx."""


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
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8000/v1``; default
            ``$OPENAI_BASE_URL``, else :data:`DEFAULT_BASE_URL`.
        model: the model name the server expects; default ``$OPENAI_MODEL``, else
            :data:`DEFAULT_MODEL`.
        forbidden: the cohort values that must never be sent (value -> where it comes from,
            see :func:`medimp.prompts.privacy.cohort_values`).
        no_cohort: state that there is no cohort to protect. Without ``forbidden`` or
            ``no_cohort`` the backend refuses to send anything.
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

    def __init__(self, base_url: str | None = None, model: str | None = None, *,
                 forbidden: Mapping[str, str] | None = None, no_cohort: bool = False,
                 api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.9,
                 max_tokens: int = 1024, timeout: float = 60.0, max_retries: int = 5,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep):
        from_env = not base_url and bool(os.environ.get("OPENAI_BASE_URL"))
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            source = " (from $OPENAI_BASE_URL)" if from_env else ""
            raise BackendError(f"base URL {base_url!r}{source} must start with http:// or "
                               "https://")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL
        self.forbidden = dict(forbidden) if forbidden is not None else None
        self.no_cohort = no_cohort
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
            PrivacyError: no cohort values were given (nor ``no_cohort``), or a message holds
                a digit or one of them; nothing was sent.
            BackendError: a non-retryable HTTP error, retries exhausted, or a body that is not
                a chat-completions answer.
        """
        if self.forbidden is None and not self.no_cohort:
            raise PrivacyError(
                f"refusing to send to {self.url}: give the cohort whose values must never be "
                "sent (--cohort DIR), or say that there is none (--no-cohort)")
        assert_safe_to_send([m["content"] for m in messages], self.forbidden)
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
                    raw = self._read(resp)
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
            except http.client.HTTPException as exc:  # the server did not answer in HTTP
                last = f"not an HTTP reply ({type(exc).__name__}: {str(exc)[:100]!r})"
            except _BadReplyError as exc:
                last = str(exc)
            if attempt < self.max_retries:
                self.sleep(delay)
        raise BackendError(f"{self.url}: giving up after {self.max_retries + 1} attempts "
                           f"({last}); check the server or raise --retries")

    @staticmethod
    def _read(resp: Any) -> bytes:
        try:
            raw = resp.read()
        except http.client.IncompleteRead as exc:
            raise _BadReplyError(f"reply cut short after {len(exc.partial)} bytes"
                            + (f" of {exc.expected} more" if exc.expected else "")) from exc
        try:
            json.loads(raw)
        except ValueError as exc:
            if raw.lstrip()[:1] in (b"{", b"["):  # JSON that stops half-way: cut short
                raise _BadReplyError(f"reply cut short: incomplete JSON ({raw[-60:]!r})") from exc
        return raw

    def _parse(self, raw: bytes) -> Completion:
        try:
            doc = json.loads(raw)
            choice = doc["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{self.url}: the reply is not a chat-completions answer "
                               f"({raw[:200]!r})") from exc
        return Completion(text=str(text), finish_reason=choice.get("finish_reason"))


@register_backend(name="openai")
def _openai_backend(*, forbidden: Mapping[str, str] | None = None, no_cohort: bool = False,
                    **options: Any) -> OpenAIBackend:
    """An OpenAI-compatible endpoint (options: see :class:`OpenAIBackend`)."""
    return OpenAIBackend(forbidden=forbidden, no_cohort=no_cohort, **options)
