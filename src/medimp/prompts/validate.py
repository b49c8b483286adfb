"""Validation of paraphrases: every candidate is accepted or rejected with its reasons.

A candidate variant (one sentence per variable) is accepted only if each sentence, compared with
its source template,

* holds the same slots, each exactly once;
* adds no digits and no number words;
* neither adds nor removes a negation;
* stays close in meaning: MiniLM cosine similarity >= ``min_similarity`` (slots are filled with
  sample words before embedding, so that the encoder reads real sentences);

and the variant is not a duplicate (after lower-casing and removing punctuation) of a variant
accepted before it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from medimp.prompts.bank import ParaphraseBank, load_bank
from medimp.prompts.bins import variable_words
from medimp.prompts.errors import TemplateError
from medimp.prompts.templates import DATE_SLOT, template_slots
from medimp.study import Study, default_study

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "LineResult",
    "ValidationReport",
    "Validator",
    "check_bank",
    "normalise_for_duplicates",
    "sentence_problems",
]

DEFAULT_MIN_SIMILARITY = 0.6

_NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "hundred", "thousand", "million", "dozen", "half", "once", "twice", "first", "second",
    "third", "fourth", "fifth", "percent",
}
_NEGATIONS = {"not", "no", "never", "none", "nor", "neither", "without", "cannot", "nobody",
              "nothing", "absent", "absence", "lack", "lacked", "lacking"}
# Clinical abbreviations the general-domain MiniLM does not know: both sides of a similarity
# comparison are spelled out, so that "GFR" and "glomerular filtration rate" count as the same.
ABBREVIATIONS = {
    "eGFR": "estimated glomerular filtration rate",
    "GFR": "glomerular filtration rate",
    "CKD": "chronic kidney disease",
    "DCE": "dynamic contrast-enhanced",
    "MRI": "magnetic resonance imaging",
}
_ABBREV = re.compile(r"\b(" + "|".join(map(re.escape, ABBREVIATIONS)) + r")\b")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(re.sub(r"\{[^{}]*\}", " ", text.lower()))


def _negations(text: str) -> int:
    return sum(w in _NEGATIONS or w.endswith("n't") for w in _words(text))


def normalise_for_duplicates(text: str) -> str:
    """Lower-case, punctuation removed, whitespace collapsed: equal means duplicate."""
    text = re.sub(r"[^\w{}\s]", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


_SUFFIXES = ("ions", "ion", "ings", "ing", "ed", "es", "s", "ly")


def _stem(word: str) -> str:
    """A crude English stem: one inflectional suffix off ("fluctuations" -> "fluctuat")."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def _same_stem(a: str, b: str) -> bool:
    """Two words of one stem ("fluctuating", "fluctuations"; "year", "years"; not "marked",
    "market")."""
    return _stem(a) == _stem(b)


def repeated_slot_words(sentence: str, fills: dict[str, list[str]]) -> list[str]:
    """Reasons why a slot's words repeat a word of the rest of ``sentence``.

    ``fills`` maps each slot to the words it can be filled with; "Creatinine levels displayed
    {adj} fluctuations." with {adj} = "fluctuating" reads "fluctuating fluctuations". Words
    shorter than 4 letters are not compared.
    """
    try:
        slots = set(template_slots(sentence))
    except TemplateError:
        return []
    rest = [w for w in _words(sentence) if len(w) >= 4]
    reasons = []
    for slot in sorted(slots & set(fills)):
        for filled in fills[slot]:
            hit = next(((part, r) for part in _WORD.findall(filled.lower()) if len(part) >= 4
                        for r in rest if _same_stem(part, r)), None)
            if hit is not None:
                reasons.append(f"slot word {filled!r} of {{{slot}}} repeats {hit[1]!r} in its "
                               "sentence")
    return reasons


def sentence_problems(source: str, candidate: str) -> list[str]:
    """Reasons (cheap, model-free checks) why ``candidate`` is not a valid paraphrase."""
    reasons: list[str] = []
    if not candidate.strip():
        return ["empty sentence"]
    try:
        want = Counter(template_slots(source))
        got = Counter(template_slots(candidate))
    except TemplateError as exc:
        return [f"malformed slots: {exc}"]
    if got != want:
        fmt = lambda c: ", ".join(f"{{{k}}}x{v}" for k, v in sorted(c.items())) or "none"  # noqa: E731
        reasons.append(f"slots {fmt(got)} differ from the source's {fmt(want)} "
                       "(each slot exactly once)")
    if re.search(r"\d", re.sub(r"\{[^{}]*\}", "", candidate)):
        reasons.append("adds digits")
    src_num = Counter(w for w in _words(source) if w in _NUMBER_WORDS)
    added = sorted(Counter(w for w in _words(candidate) if w in _NUMBER_WORDS) - src_num)
    if added:
        reasons.append(f"adds number word(s) {added}")
    ns, nc = _negations(source), _negations(candidate)
    if nc > ns:
        reasons.append("adds a negation")
    elif nc < ns:
        reasons.append("removes a negation")
    return reasons


@dataclass
class LineResult:
    """The verdict on one candidate variant."""

    index: int
    sentences: list[str]
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    similarity: list[float | None] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Every candidate with its verdict; ``accepted`` keeps the order of acceptance."""

    results: list[LineResult] = field(default_factory=list)
    min_similarity: float | None = None

    @property
    def accepted(self) -> list[list[str]]:
        return [r.sentences for r in self.results if r.accepted]

    @property
    def rejected(self) -> list[LineResult]:
        return [r for r in self.results if not r.accepted]

    @property
    def ok(self) -> bool:
        return not self.rejected

    def add_rejection(self, text: str, reason: str) -> None:
        """Record a candidate rejected before it could be split (empty, truncated, format)."""
        self.results.append(LineResult(len(self.results), [text], False, [reason]))

    def extend(self, other: ValidationReport) -> None:
        for r in other.results:
            r.index = len(self.results)
            self.results.append(r)

    def to_dict(self) -> dict:
        return {"min_similarity": self.min_similarity, "n_candidates": len(self.results),
                "n_accepted": len(self.accepted), "n_rejected": len(self.rejected),
                "results": [asdict(r) for r in self.results]}


class Validator:
    """Validates candidate variants against source templates.

    Args:
        study: gives the slots and sample words used to fill them before embedding.
        sources: variable -> source template.
        variables: sentence order of a variant.
        min_similarity: minimum MiniLM cosine similarity to the source; ``None`` skips the
            semantic check (model-free, e.g. for the curated rules backend at build time).
        similarity: a ``SentenceSimilarity`` to reuse (default: the shared bundled MiniLM).
        repeated_words: also reject a sentence whose slot words repeat one of its words
            (:func:`repeated_slot_words`; ``check_bank`` / ``medimp prompts check``). Off when a
            bank is built for training, so that a study.yaml with MEDIMP's own words still
            trains.
    """

    def __init__(self, study: Study, sources: dict[str, str], variables: list[str],
                 min_similarity: float | None = DEFAULT_MIN_SIMILARITY, similarity=None,
                 *, repeated_words: bool = False):
        self.study = study
        self.repeated_words = repeated_words
        self.sources = sources
        self.variables = variables
        self.min_similarity = min_similarity
        self._sim = similarity
        self._seen: dict[str, int] = {}
        self._n_accepted = 0
        self._fill = {DATE_SLOT: study.exams[0].phrase if study.exams else "first month"}
        for var in study.variables:
            words = variable_words(var)
            self._fill[var.slot] = words[-1] if words else var.name.replace("_", " ")

    def _slot_words(self, variable: str) -> dict[str, list[str]]:
        """The words each slot of ``variable``'s sentence can be filled with."""
        var = self.study.variable(variable)
        return {var.slot: variable_words(var),
                DATE_SLOT: [e.phrase for e in self.study.exams if e.phrase]}

    def _similarity(self):
        if self._sim is None:
            from medimp.prompts._similarity import load_similarity

            self._sim = load_similarity()
        return self._sim

    def _sample(self, template: str) -> str:
        """The sentence the encoder reads: slots filled, abbreviations spelled out."""
        text = re.sub(r"\{(\w+)\}", lambda m: self._fill.get(m.group(1), m.group(1)), template)
        return _ABBREV.sub(lambda m: ABBREVIATIONS[m.group(1)], text)

    def remember(self, sentences: list[str], index: int) -> None:
        """Count ``sentences`` as already accepted (for duplicate detection)."""
        key = normalise_for_duplicates(" ".join(sentences))
        if key not in self._seen:
            self._seen[key] = index
            self._n_accepted = max(self._n_accepted, index + 1)

    def validate(self, lines: list[list[str]], report: ValidationReport | None = None
                 ) -> ValidationReport:
        """Validate ``lines`` (each a list of sentences in any order) into ``report``."""
        report = report or ValidationReport(min_similarity=self.min_similarity)
        report.min_similarity = self.min_similarity
        pending: list[tuple[LineResult, list[tuple[str, str]]]] = []
        for sentences in lines:
            res = LineResult(len(report.results), list(sentences), True)
            report.results.append(res)
            ordered, pairs = self._match(sentences, res)
            if ordered is not None:
                res.sentences = ordered
            pending.append((res, pairs))
        if self.min_similarity is not None:
            todo = [(self._sample(s), self._sample(c)) for res, pairs in pending
                    for s, c in pairs if not res.reasons]
            sims = iter(self._similarity().similarities(todo))
            for res, pairs in pending:
                if res.reasons:
                    continue
                res.similarity = [round(next(sims), 4) for _ in pairs]
                for (var, (_, cand)), s in zip(zip(self.variables, pairs, strict=True),
                                               res.similarity, strict=True):
                    if s is not None and s < self.min_similarity:
                        res.reasons.append(f"{var}: similarity {s:.2f} to its source is below "
                                           f"{self.min_similarity:.2f}: {cand!r}")
        for res, _ in pending:
            if not res.reasons:
                key = normalise_for_duplicates(" ".join(res.sentences))
                if key in self._seen:
                    res.reasons.append(f"duplicate of variant {self._seen[key]} after "
                                       "normalisation")
                else:
                    self._seen[key] = self._n_accepted
                    self._n_accepted += 1
            res.accepted = not res.reasons
        return report

    def _match(self, sentences: list[str], res: LineResult
               ) -> tuple[list[str] | None, list[tuple[str, str]]]:
        """Order ``sentences`` like ``self.variables`` (by slot) and run the cheap checks."""
        if len(sentences) != len(self.variables):
            res.reasons.append(f"expected {len(self.variables)} sentences separated by ';', "
                               f"got {len(sentences)}")
            return None, []
        by_var: dict[str, str] = {}
        for sent in sentences:
            try:
                slots = set(template_slots(sent)) - {DATE_SLOT}
            except TemplateError as exc:
                res.reasons.append(f"malformed slots in {sent!r}: {exc}")
                continue
            owners = [v for v in self.variables
                      if self.study.variable(v).slot in slots]
            unknown = slots - {self.study.variable(v).slot for v in self.variables}
            if unknown:
                res.reasons.append(f"unknown slot(s) {sorted(unknown)} in {sent!r}")
            elif len(owners) != 1 or owners[0] in by_var:
                res.reasons.append(f"cannot tell which variable {sent!r} is about "
                                   "(each sentence needs exactly one variable slot)")
            else:
                by_var[owners[0]] = sent
        if res.reasons or len(by_var) != len(self.variables):
            if not res.reasons:
                res.reasons.append("a variable has no sentence")
            return None, []
        ordered = [by_var[v] for v in self.variables]
        pairs = [(self.sources[v], by_var[v]) for v in self.variables]
        for var, (src, cand) in zip(self.variables, pairs, strict=True):
            res.reasons += [f"{var}: {r}: {cand!r}" for r in sentence_problems(src, cand)]
            if self.repeated_words:
                res.reasons += [f"{var}: {r}: {cand!r}"
                                for r in repeated_slot_words(cand, self._slot_words(var))]
        return ordered, pairs


def check_bank(bank, study: Study | None = None,
               min_similarity: float | None = DEFAULT_MIN_SIMILARITY) -> ValidationReport:
    """Validate every variant of an existing bank against its sources, a slot word repeated
    in its sentence included (:func:`repeated_slot_words`).

    Args:
        bank: a ``ParaphraseBank`` or a bank file (``.txt``/``.yaml``).
        study: maps slots to variables (default: MEDIMP's study).
        min_similarity: MiniLM threshold (None: skip the semantic check).
    """

    study = study or default_study()
    if not isinstance(bank, ParaphraseBank):
        bank = load_bank(bank, study)
    validator = Validator(study, bank.sources, bank.variables, min_similarity=min_similarity,
                          repeated_words=True)
    return validator.validate(bank.lines())
