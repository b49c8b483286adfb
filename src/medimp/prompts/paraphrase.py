"""Paraphrase banks: source templates -> N validated variants, any backend.

``rules`` is offline and deterministic. ``openai`` and ``transformers`` ask a language model for
paraphrases of the whole template line (sentences separated by ``;``, as in ``gpt_augs.txt``),
validate every candidate (``medimp.prompts.validate``) and ask again until N variants pass or
``max_rounds`` is reached. Before any text leaves the process, the privacy guard refuses digits
and any value present in the cohort tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from medimp._io import atomic_write_text
from medimp.prompts.backends.rules import BACKEND_NAME, MODEL_NAME, rules_paraphrases
from medimp.prompts.bank import BANK_FORMAT, ParaphraseBank, Provenance, load_bank, save_bank
from medimp.prompts.errors import BackendError, NotEnoughVariantsError, PromptError
from medimp.prompts.privacy import assert_safe_to_send
from medimp.prompts.templates import check_template
from medimp.prompts.validate import (
    DEFAULT_MIN_SIMILARITY,
    LineResult,
    ValidationReport,
    Validator,
)
from medimp.study import Study, default_study, load_study

__all__ = [
    "AugmentResult",
    "ChatBackend",
    "augment",
    "build_messages",
    "load_templates",
    "parse_reply",
    "rules_bank",
    "rules_candidates",
]

RULES_INSTRUCTION = ("curated synonym substitution and sentence-frame variation "
                     "(medimp.prompts.backends.rules)")


def rules_candidates(sources: list[str], n: int) -> list[list[str]]:
    """``n`` candidate variants (lists of sentences), variant 0 being ``sources`` itself.

    Variable ``j`` of variant ``i`` is paraphrase ``i mod k_j`` of source ``j`` (``k_j``
    paraphrases exist), so variants stay distinct as long as one template has enough.
    """
    per_var = [rules_paraphrases(s, n) for s in sources]
    lines = [[p[i % len(p)] for p in per_var] for i in range(n)]
    if len({tuple(x) for x in lines}) < n:
        raise PromptError(
            f"the rules backend can make only {max(len(p) for p in per_var)} distinct variants "
            f"of these templates, fewer than --n {n}; lower --n or use an LLM backend"
        )
    return lines


def rules_bank(study: Study, n: int = 10, sources: dict[str, str] | None = None,
               min_similarity: float | None = None) -> ParaphraseBank:
    """The ``rules`` backend's bank for ``study`` (validated; similarity only if asked)."""
    names = [v.name for v in study.variables]
    src = {v.name: v.template for v in study.variables}
    src.update(sources or {})
    lines = rules_candidates([src[v] for v in names], n)
    report = Validator(study, src, names, min_similarity=min_similarity).validate(lines)
    if len(report.accepted) < n:
        bad = report.rejected[0]
        raise PromptError(f"rules backend: only {len(report.accepted)} of {n} variants are "
                          f"valid; first rejection: {'; '.join(bad.reasons)}")
    return ParaphraseBank.from_lines(
        report.accepted[:n], study,
        Provenance(backend=BACKEND_NAME, model=MODEL_NAME, instruction=RULES_INSTRUCTION),
        where="rules backend", sources=src)



class ChatBackend(Protocol):
    """What ``augment`` needs of a language-model backend."""

    name: str
    model: str

    def complete(self, messages: list[dict[str, str]]):  # -> Completion
        ...


@dataclass
class AugmentResult:
    """The bank (N valid variants, variant 0 = the sources) and the validation report."""

    bank: ParaphraseBank
    report: ValidationReport


SYSTEM_PROMPT = (
    "You paraphrase sentence templates used as clinical text prompts. Placeholders are words "
    "in curly braces, such as {gfr}; copy every placeholder exactly as written, once each, and "
    "never replace it by a value. Keep the meaning: add no number, no negation and no new fact."
)

_NUMBER_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                 "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def _in_words(k: int) -> str:
    """Small counts in words, so that what is sent never holds a digit."""
    return _NUMBER_NAMES[k] if k < len(_NUMBER_NAMES) else "several"


def build_messages(sources: list[str], k: int) -> list[dict[str, str]]:
    """Chat messages asking for ``k`` paraphrases of the template line ``sources``."""
    line = "; ".join(sources)
    user = (
        f"Write {_in_words(k)} different paraphrases of the line below. The line holds "
        f"{_in_words(len(sources))} sentence(s) separated by ';'. Answer with one paraphrase "
        "per line, its sentences in the same order and separated by ';', with no numbering "
        f"and nothing else.\n\nLine: {line}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_ENUM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s+")


def parse_reply(text: str, truncated: bool, report: ValidationReport) -> list[list[str]]:
    """Split a reply into candidate variants; record empty or truncated replies in ``report``.

    List markers ("1. ", "- ") are removed; a trailing ';' is ignored. The last line of a
    truncated reply (the model hit its length limit) is rejected.
    """
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        report.add_rejection(text or "", "empty reply")
        return []
    if truncated:
        report.add_rejection(lines.pop(), "truncated reply (the model hit its length limit)")
    out = []
    for ln in lines:
        ln = _ENUM.sub("", ln).strip().strip('"').strip()
        parts = [p.strip() for p in ln.split(";")]
        if parts and not parts[-1]:
            parts.pop()
        out.append(parts)
    return out


def _request_key(sources: list[str], n: int, backend: ChatBackend, min_sim) -> str:
    blob = json.dumps([sources, n, backend.name, backend.model, min_sim])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_state(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BackendError(f"{path}: progress file is corrupt ({exc}); delete it") from exc
    if state.get("key") != key:
        raise BackendError(f"{path}: progress file belongs to another request (other templates, "
                           "n, backend or model); delete it or choose another --out")
    return state


def augment(
    study: Study,
    backend: ChatBackend | str = "rules",
    n: int = 10,
    sources: Mapping[str, str] | None = None,
    *,
    forbidden: Mapping[str, str] | None = None,
    min_similarity: float | None = DEFAULT_MIN_SIMILARITY,
    max_rounds: int = 5,
    out: str | os.PathLike[str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
    similarity=None,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentResult:
    """Make a bank of ``n`` validated variants of the study's templates.

    Args:
        study: gives the variables, their slots and (unless ``sources``) their templates.
        backend: ``"rules"`` or a chat backend (``OpenAIBackend``, ``TransformersBackend``).
        n: number of variants, the sources included as variant 0.
        sources: variable -> template to paraphrase (default: the study's templates).
        forbidden: cohort values that must never be sent (see ``privacy.cohort_values``).
        min_similarity: MiniLM similarity threshold (None: skip the semantic check).
        max_rounds: LLM requests at most, in this call.
        out: write the bank here (atomically) when complete, then delete the progress file.
        state_path: progress file (default ``<out>.partial.json``); a rerun resumes from it.
        similarity: a ``SentenceSimilarity`` to reuse.
        progress: called with (variants so far, n) after each round.

    Raises:
        PrivacyError: a template holds digits or a cohort value (nothing was sent).
        NotEnoughVariantsError: fewer than ``n`` valid variants after ``max_rounds``; the
            progress is kept for a rerun and ``.report`` says why each candidate failed.
        BackendError: the endpoint or model failed.
    """
    names = [v.name for v in study.variables]
    src = {v.name: v.template for v in study.variables}
    src.update({k: v for k, v in (sources or {}).items() if k in src})
    for var in study.variables:
        check_template(src[var.name], var, where="source template")
    if n < 1:
        raise PromptError(f"n must be at least 1, got {n}")
    if isinstance(backend, str):
        if backend != "rules":
            raise PromptError(f"backend {backend!r}: pass a backend object for LLM backends")
        bank = rules_bank(study, n=n, sources=src, min_similarity=None)
        validator = Validator(study, src, names, min_similarity=min_similarity,
                              similarity=similarity)
        return _checked_rules_bank(bank, validator, n, out)
    line0 = [src[v] for v in names]
    assert_safe_to_send(line0, forbidden)  # before anything is sent
    validator = Validator(study, src, names, min_similarity=min_similarity,
                          similarity=similarity)
    state_file = Path(state_path) if state_path else (
        Path(f"{out}.partial.json") if out is not None else None)
    rounds = _Rounds(line0, validator, _request_key(line0, n, backend, min_similarity),
                     state_file, min_similarity)
    accepted, report = rounds.run(backend, n, max_rounds, forbidden, progress)
    bank = ParaphraseBank.from_lines(
        accepted, study,
        Provenance(backend=backend.name, model=backend.model,
                   instruction=SYSTEM_PROMPT + "\n\n" + build_messages(line0, n - 1)[1]["content"]),
        where=f"{backend.name} backend", sources=src)
    if out is not None:
        save_bank(bank, out)
        if state_file is not None:
            state_file.unlink(missing_ok=True)
    return AugmentResult(bank, report)


def _checked_rules_bank(bank: ParaphraseBank, validator: Validator, n: int,
                        out: str | os.PathLike[str] | None) -> AugmentResult:
    """The offline ``rules`` bank, checked by the same validator as an LLM's."""
    report = validator.validate(bank.lines())
    if len(report.accepted) < n:
        raise NotEnoughVariantsError(
            f"rules backend: {len(report.rejected)} of {n} variants failed validation; "
            "see the report", report)
    if out is not None:
        save_bank(bank, out)
    return AugmentResult(bank, report)


class _Rounds:
    """The LLM request rounds of one ``augment`` call, resumable from a progress file."""

    def __init__(self, line0: list[str], validator: Validator, key: str,
                 state_file: Path | None, min_similarity: float | None) -> None:
        self.line0, self.validator, self.key = line0, validator, key
        self.state_file = state_file
        self.report = ValidationReport(min_similarity=min_similarity)
        self.accepted: list[list[str]] = [line0]
        validator.remember(line0, 0)
        state = _load_state(state_file, key) if state_file else None
        if state:
            for i, line in enumerate(state["accepted"][1:], start=1):
                self.accepted.append(line)
                validator.remember(line, i)
            self.report.results = [LineResult(**r) for r in state["results"]]

    def save_state(self) -> None:
        if self.state_file is not None:
            atomic_write_text(self.state_file, json.dumps(
                {"key": self.key, "accepted": self.accepted,
                 "results": self.report.to_dict()["results"]}, indent=1))

    def one_round(self, backend: ChatBackend, n: int,
                  forbidden: Mapping[str, str] | None) -> None:
        """Ask for the missing variants (and a margin), validate and keep what passes."""
        need = n - len(self.accepted)
        messages = build_messages(self.line0, need + max(2, need // 2))
        assert_safe_to_send([m["content"] for m in messages], forbidden)
        reply = backend.complete(messages)
        candidates = parse_reply(reply.text, reply.truncated, self.report)
        before = len(self.report.results)
        self.validator.validate(candidates, self.report)
        for res in self.report.results[before:]:
            if res.accepted and len(self.accepted) < n:
                self.accepted.append(res.sentences)
        self.save_state()

    def run(self, backend: ChatBackend, n: int, max_rounds: int,
            forbidden: Mapping[str, str] | None,
            progress: Callable[[int, int], None] | None
            ) -> tuple[list[list[str]], ValidationReport]:
        """At most ``max_rounds`` rounds until ``n`` variants passed; raise when they did not."""
        for _ in range(max_rounds):
            if len(self.accepted) >= n:
                break
            self.one_round(backend, n, forbidden)
            if progress:
                progress(len(self.accepted), n)
        if len(self.accepted) < n:
            raise NotEnoughVariantsError(
                f"{backend.name} backend ({backend.model}): only {len(self.accepted)} of {n} "
                f"variants after {max_rounds} round(s); {len(self.report.rejected)} candidates "
                "were rejected (see the report); rerun to continue"
                + (f" from {self.state_file}" if self.state_file else ""), self.report)
        return self.accepted, self.report


def load_templates(source: str | os.PathLike[str], study: Study | None = None
                   ) -> tuple[Study, dict[str, str]]:
    """The study and source templates that ``medimp prompts augment TEMPLATES`` paraphrases.

    ``source`` is ``"default"`` (MEDIMP's templates), a ``study.yaml`` (its variables'
    templates), or a bank file (``.txt``/``.yaml``: its sources).
    """

    if str(source) == "default":
        study = study or default_study()
        return study, {v.name: v.template for v in study.variables}
    path = Path(source)
    if not path.is_file():
        raise PromptError(f"{path}: templates file not found; give 'default', a study.yaml or "
                          "a bank (.txt/.yaml)")
    if path.suffix.lower() in (".yaml", ".yml") and BANK_FORMAT not in path.read_text(
            encoding="utf-8"):
        study = load_study(path)
        return study, {v.name: v.template for v in study.variables}
    study = study or default_study()
    bank = load_bank(path, study)
    return study, dict(bank.sources)
