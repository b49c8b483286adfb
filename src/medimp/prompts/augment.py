"""Paraphrase-bank augmentation: source templates -> N validated variants, any backend.

``rules`` is offline and deterministic. ``openai`` and ``transformers`` ask a language model for
paraphrases of the whole template line (sentences separated by ``;``, as in ``gpt_augs.txt``),
validate every candidate (``medimp.prompts.validate``) and ask again until N variants pass or
``max_rounds`` is reached. Before any text leaves the process, the privacy guard refuses digits
and any value present in the cohort tables.
"""

from __future__ import annotations

from medimp.prompts.backends.rules import BACKEND_NAME, MODEL_NAME, rules_paraphrases
from medimp.prompts.bank import ParaphraseBank, Provenance
from medimp.prompts.errors import PromptError
from medimp.prompts.validate import ValidationReport, Validator
from medimp.study import Study

__all__ = ["rules_bank", "rules_candidates"]

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


def _unused(report: ValidationReport) -> None:  # pragma: no cover - placeholder for typing
    return None
