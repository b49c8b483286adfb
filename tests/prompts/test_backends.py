"""LLM backends against a local HTTP server that speaks the OpenAI chat API and records what it
receives, and a tiny randomly initialised GPT-2 saved to disk."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from medimp.prompts import BackendError, NotEnoughVariantsError, PrivacyError, load_bank
from medimp.prompts.backends.openai import OpenAIBackend
from medimp.prompts.paraphrase import augment
from medimp.prompts.privacy import cohort_values


class FakeLLM:
    """Scripted replies: each item is (status, body dict or text, headers, delay_s)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple] = []
        self.default = (200, {"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]})
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                owner.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                status, payload, headers, delay = (*owner.pop(), {}, 0)[:4]
                if delay:
                    time.sleep(delay)
                data = payload.encode() if isinstance(payload, str) else json.dumps(
                    payload).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def pop(self) -> tuple:
        return self.script.pop(0) if self.script else self.default

    def reply(self, content: str, finish: str = "stop") -> None:
        self.script.append((200, {"choices": [{"message": {"role": "assistant",
                                                           "content": content},
                                               "finish_reason": finish}]}))

    def sent_texts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r["body"]["messages"]]


@pytest.fixture
def llm():
    server = FakeLLM()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def good_lines(gpt_augs: Path) -> list[str]:
    return [ln.strip() for ln in gpt_augs.read_text().splitlines()[1:]]


def client(llm: FakeLLM, **kw) -> OpenAIBackend:
    kw.setdefault("backoff", 0.01)
    if "forbidden" not in kw:  # these tests send study templates, not a cohort's
        kw.setdefault("no_cohort", True)
    return OpenAIBackend(llm.url, "test-model", sleep=lambda s: None, **kw)


def test_openai_bank_and_what_was_sent(llm, study, good_lines, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    llm.reply("\n".join(f"{i + 1}. {ln}" for i, ln in enumerate(good_lines[:6])))
    exams = pd.DataFrame({"patient_id": ["P001"], "exam": ["D15"], "egfr": [22.0]})
    patients = pd.DataFrame({"patient_id": ["P001"], "donor_type": ["DBD"]})
    out = tmp_path / "bank.yaml"
    res = augment(study, client(llm, api_key_env="MY_KEY"), n=5,
                  forbidden=cohort_values({"patients.csv": patients, "exams.csv": exams}),
                  out=out)
    assert res.bank.n == 5 and res.bank.line(1) == [p.strip() for p in good_lines[0].split(";")]
    assert res.bank.provenance.backend == "openai" and res.bank.provenance.model == "test-model"
    assert load_bank(out).lines() == res.bank.lines()
    assert not Path(f"{out}.partial.json").exists()
    req = llm.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "test-model"
    for text in llm.sent_texts():
        assert not re.search(r"\d", text)
        assert "P001" not in text and "DBD" not in text
    assert "{gfr}" in llm.sent_texts()[1]


def test_privacy_guard_sends_nothing(llm, study) -> None:
    with pytest.raises(PrivacyError, match="digits"):
        augment(study, client(llm), n=3,
                sources={"donor_age": "The donor was {age} years of age, older than 65."})
    patients = pd.DataFrame({"patient_id": ["P001"], "donor_type": ["Brain dead"]})
    with pytest.raises(PrivacyError, match=r"patients\.csv column 'donor_type'"):
        augment(study, client(llm), n=3,
                sources={"donor_age": "The brain dead donor was {age} years of age."},
                forbidden=cohort_values({"patients.csv": patients}))
    assert llm.requests == []


def test_retries_on_429_5xx_and_timeouts(llm, study, good_lines) -> None:
    slept: list[float] = []
    llm.script = [(429, {"error": "slow down"}, {"Retry-After": "0.02"}),
                  (503, "unavailable"),
                  (200, {"choices": []}, {}, 1.5)]  # too slow: the client times out
    llm.reply("\n".join(good_lines[:3]))
    backend = OpenAIBackend(llm.url, "m", backoff=0.05, timeout=0.5, sleep=slept.append,
                            no_cohort=True)
    res = augment(study, backend, n=3, min_similarity=None)
    assert res.bank.n == 3
    assert len(llm.requests) == 4
    assert slept == [0.02, 0.1, 0.2]  # Retry-After honoured, then exponential back-off


def test_non_retryable_and_exhausted(llm, study) -> None:
    llm.script = [(401, {"error": "bad key"})]
    with pytest.raises(BackendError, match=r"HTTP 401.*\$OPENAI_API_KEY"):
        augment(study, client(llm), n=2)
    assert len(llm.requests) == 1
    llm.script = [(500, "boom")] * 3
    with pytest.raises(BackendError, match="giving up after 3 attempts"):
        augment(study, client(llm, max_retries=2), n=2)
    llm.script = [(200, "this is not json")]
    with pytest.raises(BackendError, match="not a chat-completions answer"):
        augment(study, client(llm), n=2)


def test_bad_replies_are_reported_rejections(llm, study, good_lines) -> None:
    llm.reply("")
    llm.reply("Sure! Here are some paraphrases without any structure at all.")
    llm.reply(good_lines[0] + "\n" + good_lines[1][:40], finish="length")
    with pytest.raises(NotEnoughVariantsError, match="only 2 of 4") as info:
        augment(study, client(llm), n=4, max_rounds=3)
    reasons = [" ".join(r.reasons) for r in info.value.report.rejected]
    assert "empty reply" in reasons
    assert any("expected 3 sentences" in r for r in reasons)
    assert any("truncated" in r for r in reasons)


def test_interrupted_run_resumes(llm, study, good_lines, tmp_path) -> None:
    out = tmp_path / "bank.yaml"
    out.write_text("previous bank\n")
    llm.reply("\n".join(good_lines[:2]))
    with pytest.raises(NotEnoughVariantsError):
        augment(study, client(llm), n=6, max_rounds=1, out=out)
    state = Path(f"{out}.partial.json")
    assert state.exists() and out.read_text() == "previous bank\n"  # old file untouched
    assert len(json.loads(state.read_text())["accepted"]) == 3
    llm.reply("\n".join(good_lines[2:6]))
    res = augment(study, client(llm), n=6, max_rounds=1, out=out)
    assert res.bank.n == 6 and not state.exists()
    assert res.bank.line(1) == [p.strip() for p in good_lines[0].split(";")]
    # the first run asked for 5 missing (+2 spare), the resumed run only for the 3 still missing
    assert "Write seven different" in llm.requests[0]["body"]["messages"][1]["content"]
    assert "Write five different" in llm.requests[1]["body"]["messages"][1]["content"]
    with pytest.raises(NotEnoughVariantsError):  # a different request finds a foreign state
        augment(study, client(llm), n=9, max_rounds=1, out=tmp_path / "b2.yaml")
    with pytest.raises(BackendError, match="another request"):
        augment(study, client(llm), n=8, max_rounds=1, out=tmp_path / "b2.yaml")


def _tiny_gpt2(path: Path, texts: list[str]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)})
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                   pad_token="<eos>")
    fast.save_pretrained(path)
    import torch

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                     eos_token_id=1, bos_token_id=1)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    return path


def test_transformers_gibberish_is_rejected(tmp_path, study, gpt_augs) -> None:
    from medimp.prompts.backends.transformers_backend import TransformersBackend

    path = _tiny_gpt2(tmp_path / "gpt2", [*gpt_augs.read_text().splitlines(),
                                          "Write paraphrases of the line below"])
    backend = TransformersBackend(path, max_new_tokens=24, seed=0)
    with pytest.raises(NotEnoughVariantsError) as info:
        augment(study, backend, n=3, max_rounds=2)
    report = info.value.report
    assert report.results and not report.accepted
    assert all(r.reasons for r in report.results)
    with pytest.raises(BackendError, match="not found"):
        TransformersBackend(tmp_path / "nope")


def test_cli_openai_end_to_end(llm, good_lines, tmp_path, simulated_cohort, monkeypatch) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app
    from medimp.study import default_study, save_study

    monkeypatch.setenv("LLM_KEY", "k")
    study_yaml = tmp_path / "study.yaml"
    save_study(default_study(gfr_binning="kdigo"), study_yaml)
    llm.reply("\n".join(good_lines[:4]))
    out, rep = tmp_path / "bank.yaml", tmp_path / "rep.json"
    args = ["prompts", "augment", str(study_yaml), "--backend", "openai", "--base-url", llm.url,
            "--model", "m", "--api-key-env", "LLM_KEY", "--cohort", str(simulated_cohort),
            "--n", "4", "--out", str(out), "--report", str(rep), "--max-rounds", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert load_bank(out).n == 4 and json.loads(rep.read_text())["n_accepted"] == 4
    assert llm.requests[0]["auth"] == "Bearer k"
    # not enough valid paraphrases: exit 1, report written, progress kept for a rerun
    llm.reply("nonsense without slots")
    out2 = tmp_path / "bank2.yaml"
    res = CliRunner().invoke(app, [*args[:-6], "--out", str(out2), "--report", str(rep),
                                   "--max-rounds", "1"])
    assert res.exit_code == 1 and "rerun to continue" in " ".join(res.output.split())
    assert json.loads(rep.read_text())["n_rejected"] == 1
    assert not out2.exists() and Path(f"{out2}.partial.json").exists()


# --- privacy: the openai backend needs the cohort (or --no-cohort) before it sends anything ---


def test_openai_refuses_to_send_without_the_cohort(llm, study) -> None:
    with pytest.raises(PrivacyError, match=r"--cohort DIR.*--no-cohort"):
        augment(study, OpenAIBackend(llm.url, "m", sleep=lambda s: None), n=3)
    patients = pd.DataFrame({"patient_id": ["P001"], "donor_type": ["Brain dead"]})
    backend = client(llm, forbidden=cohort_values({"patients.csv": patients}))
    with pytest.raises(PrivacyError, match=r"patients\.csv column 'donor_type'"):
        backend.complete([{"role": "user", "content": "Paraphrase: a brain dead donor."}])
    assert llm.requests == []  # nothing left the machine


def _augment_args(study_yaml: Path, out: Path, *extra: str) -> list[str]:
    return ["prompts", "augment", str(study_yaml), "--backend", "openai", "--n", "3",
            "--out", str(out), "--max-rounds", "1", "--min-similarity", "0", *extra]


@pytest.fixture
def study_yaml(tmp_path: Path) -> Path:
    from medimp.study import default_study, save_study

    path = tmp_path / "study.yaml"
    save_study(default_study(gfr_binning="kdigo"), path)
    return path


def test_cli_openai_needs_cohort_or_no_cohort_and_reads_the_environment(
        llm, good_lines, tmp_path, study_yaml, simulated_cohort, monkeypatch) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app

    monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
    monkeypatch.setenv("OPENAI_MODEL", "model-from-env")
    out = tmp_path / "bank.yaml"
    res = CliRunner().invoke(app, _augment_args(study_yaml, out))
    assert res.exit_code == 1 and "--no-cohort" in res.stderr and len(
        res.stderr.strip().splitlines()) == 1
    assert llm.requests == [] and not out.exists()
    res = CliRunner().invoke(app, _augment_args(study_yaml, out, "--cohort",
                                                str(simulated_cohort), "--no-cohort"))
    assert res.exit_code == 2 and "not both" in res.stderr and llm.requests == []

    llm.reply("\n".join(good_lines[:3]))
    res = CliRunner().invoke(app, _augment_args(study_yaml, out, "--no-cohort"))
    assert res.exit_code == 0, res.output
    assert llm.requests[0]["body"]["model"] == "model-from-env"  # $OPENAI_BASE_URL was used
    llm.reply("\n".join(good_lines[:3]))
    res = CliRunner().invoke(app, _augment_args(study_yaml, tmp_path / "b2.yaml", "--cohort",
                                                str(simulated_cohort), "--model", "explicit"))
    assert res.exit_code == 0, res.output
    assert llm.requests[1]["body"]["model"] == "explicit"  # an option beats the environment


# --- replies that are not HTTP, or are cut short, are retried like a 5xx ---


class RawServer:
    """A TCP server that answers each connection with scripted raw bytes, then closes it."""

    def __init__(self, replies: list[bytes]) -> None:
        import socket

        self.replies = list(replies)
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                while len(body) < length:
                    body += conn.recv(65536)
                self.connections += 1
                conn.sendall(self.replies.pop(0))

    def close(self) -> None:
        self.sock.close()


def _http(body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(n).encode() + b"\r\nConnection: close\r\n\r\n" + body)


_GOOD = json.dumps({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]})


def test_non_http_and_truncated_replies_are_retried() -> None:
    server = RawServer([
        b"SSH-2.0-OpenSSH_9.6\r\n",                        # not HTTP at all
        _http(_GOOD.encode()[:30], length=len(_GOOD)),     # connection closed half-way
        _http(_GOOD.encode()[:30]),                        # JSON that stops half-way
        _http(_GOOD.encode()),
    ])
    slept: list[float] = []
    try:
        backend = OpenAIBackend(server.url, "m", no_cohort=True, backoff=0.01,
                                sleep=slept.append)
        reply = backend.complete([{"role": "user", "content": "hello"}])
    finally:
        server.close()
    assert reply.text == "fine" and server.connections == 4 and len(slept) == 3


def test_bad_replies_end_in_one_line(study_yaml: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app

    server = RawServer([b"garbage\r\n", _http(b'{"choices": [{"mess', length=400)])
    out = tmp_path / "bank.yaml"
    try:
        res = CliRunner().invoke(app, _augment_args(
            study_yaml, out, "--no-cohort", "--base-url", server.url, "--retries", "1"))
    finally:
        server.close()
    assert (res.exit_code == 1 and res.exception is None) or isinstance(res.exception, SystemExit)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "giving up after 2 attempts" in lines[0], res.stderr
    assert "cut short" in lines[0] and "Traceback" not in res.output and not out.exists()


# --- the backend registry: the CLI builds whatever backend is registered ---


def test_backend_registry(study_yaml: Path, tmp_path: Path, good_lines) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app
    from medimp.prompts.backends import _registry, create_backend, list_backends, register_backend
    from medimp.prompts.backends.openai import Completion

    assert {"rules", "openai", "transformers"} <= set(list_backends())
    assert create_backend("rules") == "rules"
    with pytest.raises(BackendError, match=r"choose one of: .*openai.*rules"):
        create_backend("gpt-17")
    with pytest.raises(BackendError, match="takes no option base_url"):
        create_backend("rules", base_url="http://x")
    with pytest.raises(BackendError, match="--model-path"):
        create_backend("transformers")

    class Canned:
        name, model = "canned", "canned/1"

        def complete(self, messages):
            return Completion("\n".join(good_lines[:3]), "stop")

    @register_backend(name="canned")
    def canned(*, forbidden=None, no_cohort=False):
        return Canned()

    try:
        out = tmp_path / "bank.yaml"
        res = CliRunner().invoke(app, ["prompts", "augment", str(study_yaml), "--backend",
                                       "canned", "--n", "3", "--out", str(out),
                                       "--min-similarity", "0"])
        assert res.exit_code == 0, res.output
        assert load_bank(out).provenance.backend == "canned"
    finally:
        _registry._BACKENDS.pop("canned", None)
