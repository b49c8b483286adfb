"""The ``rules`` backend: offline, deterministic paraphrases of sentence templates.

Paraphrases are made by curated synonym substitution ("check-up" -> "follow-up visit", "GFR" ->
"glomerular filtration rate", "displayed" -> "showed" …) and sentence-frame variation (moving
"at the {date} check-up" to the front; "It was noted that …"). Of all combinations, the variants
kept are chosen greedily to be as different from each other as possible (word-set Jaccard
distance), starting from the source itself, so that variant 0 is always the source template.
"""

from __future__ import annotations

import functools
import itertools
import re

from medimp.prompts.backends._registry import register_backend
from medimp.prompts.templates import normalise_space
from medimp.prompts.validate import sentence_problems

__all__ = ["BACKEND_NAME", "MODEL_NAME", "rules_paraphrases"]

BACKEND_NAME = "rules"
MODEL_NAME = "medimp-rules/1"

# (pattern, alternatives): the first alternative that matches the text is the source wording.
_LEXICON: list[tuple[str, list[str]]] = [
    (r"was found to be", ["was found to be", "was", "was measured as", "was determined to be",
                          "was assessed as", "was evaluated as"]),
    (r"check-up", ["check-up", "follow-up", "follow-up visit", "examination", "visit",
                   "assessment"]),
    (r"at the \{date\}", ["at the {date}", "during the {date}"]),
    (r"the patient's", ["the patient's", "the recipient's", "the transplant recipient's"]),
    (r"GFR", ["GFR", "glomerular filtration rate"]),
    (r"kidney donor", ["kidney donor", "donor of the kidney", "organ donor"]),
    (r"years of age", ["years of age", "years old"]),
    (r"displayed", ["displayed", "showed", "exhibited", "demonstrated"]),
    (r"fluctuations", ["fluctuations", "variations", "changes"]),
    (r"creatinine levels", ["creatinine levels", "serum creatinine levels",
                            "creatinine values"]),
]
_FRAMES = ["It was noted that {s}", "It was observed that {s}", "It was recorded that {s}",
           "Records show that {s}", "Of note, {s}", "As documented, {s}"]
_FRONTABLE = re.compile(r"^(?P<main>.+?) (?P<pp>(?:at|during) the \{date\} [^,.;]+)\.$")


def _lower_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    if first[:1].isupper() and not (len(first) > 1 and first[1:2].isupper()):
        return s[0].lower() + s[1:]
    return s


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _substitutions(template: str) -> list[str]:
    """Every lexicon combination of ``template`` (the source first)."""
    groups: list[tuple[re.Pattern[str], list[str]]] = []
    for pat, alts in _LEXICON:
        rx = re.compile(r"(?<![\w{-])" + pat + r"(?![\w}-])", re.IGNORECASE)
        if rx.search(template):
            groups.append((rx, alts))
    out = []
    for choice in itertools.product(*[range(len(a)) for _, a in groups]):
        text = template
        for (rx, alts), k in zip(groups, choice, strict=True):
            def repl(m: re.Match[str], alt: str = alts[k]) -> str:
                return _upper_first(alt) if m.start() == 0 else alt

            text = rx.sub(repl, text)
        out.append(normalise_space(text))
    return list(dict.fromkeys(out))


def _frames(sentence: str) -> list[str]:
    body = sentence.rstrip(".")
    out = [sentence]
    m = _FRONTABLE.match(sentence)
    if m:
        out.append(f"{_upper_first(m.group('pp'))}, {_lower_first(m.group('main'))}.")
    out += [f.format(s=_lower_first(body)) + "." for f in _FRAMES]
    return out


def _jaccard_distance(a: set[str], b: set[str]) -> float:
    return 1.0 - len(a & b) / max(1, len(a | b))


def rules_paraphrases(template: str, n: int) -> list[str]:
    """Up to ``n`` distinct paraphrases of ``template``; the first is ``template`` itself.

    Deterministic. Every result passes the model-free checks of
    ``medimp.prompts.validate.sentence_problems`` (same slots, no numbers, same negation).
    Fewer than ``n`` come back only when the template offers too few variations.
    """
    return list(_rules_paraphrases(normalise_space(template), n))


@functools.lru_cache(maxsize=256)
def _rules_paraphrases(template: str, n: int) -> tuple[str, ...]:
    plain, framed = [], []
    for sub in _substitutions(template):
        kinds = _frames(sub)
        plain += kinds[: len(kinds) - len(_FRAMES)]
        framed += kinds[len(kinds) - len(_FRAMES) :]
    ok = lambda c: not sentence_problems(template, c)  # noqa: E731
    plain = [c for c in dict.fromkeys(plain) if ok(c)]
    framed = [c for c in dict.fromkeys(framed) if ok(c) and c not in plain]
    # at most a third of the variants use a sentence frame, the rest reword the sentence itself
    n_plain = max(1, n - n // 3)
    chosen = _farthest([template], plain, n_plain)
    return tuple(_farthest(chosen, framed, n))


def _farthest(chosen: list[str], pool: list[str], n: int) -> list[str]:
    """Grow ``chosen`` to ``n`` items from ``pool``, each time the one farthest from the set."""
    tokens = lambda c: set(re.findall(r"[\w{}']+", c.lower()))  # noqa: E731
    chosen = list(chosen)
    pool = [c for c in pool if c not in chosen]
    words = [tokens(c) for c in pool]
    mind = [min(_jaccard_distance(tokens(c), w) for c in chosen) for w in words]
    while len(chosen) < n and pool:
        best = max(range(len(pool)), key=lambda i: (mind[i], -i))
        chosen.append(pool.pop(best))
        new = words.pop(best)
        mind.pop(best)
        mind = [min(d, _jaccard_distance(new, w)) for d, w in zip(mind, words, strict=True)]
    return chosen


@register_backend(name="rules")
def _rules_backend(*, forbidden: object = None, no_cohort: bool = False) -> str:
    """The offline rules: nothing leaves the machine, so the privacy arguments are not used."""
    return BACKEND_NAME
