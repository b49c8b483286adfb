import numpy as np
import pandas as pd
import pytest

from medimp.prompts import PromptError, TemplateError
from medimp.prompts.bins import is_missing, value_to_word, variable_words
from medimp.prompts.templates import check_prompt, fill_template, known_slots, template_slots
from medimp.study import Study, default_study


@pytest.mark.parametrize("bad", [
    "The GFR was nan at the first month check-up.",
    "The GFR was NaN.",
    "The donor was None years of age.",
    "The GFR was high at the False check-up.",
    "The GFR was {gfr}.",
    "The GFR was high.  Creatinine was stable.",
    " The GFR was high.",
    "The GFR was <NA>.",
])
def test_check_prompt_refuses(bad: str) -> None:
    with pytest.raises(PromptError):
        check_prompt(bad, "patient P1 exam D15")


def test_check_prompt_accepts_words_containing_forbidden_letters() -> None:
    text = "The financial nanny was Falsetto."  # only whole words are refused
    assert check_prompt(text) == text


def test_fill_template() -> None:
    assert fill_template("The GFR was {gfr} at the {date} check-up .",
                         {"gfr": "very low", "date": "first month"}) == (
        "The GFR was very low at the first month check-up.")
    for bad in (None, "", "  ", np.nan, False):
        with pytest.raises(TemplateError, match=r"no words for slot \{gfr\}"):
            fill_template("The GFR was {gfr}.", {"gfr": bad})
    with pytest.raises(TemplateError, match="not a name"):
        template_slots("GFR {} and {0}")
    with pytest.raises(TemplateError, match="format spec"):
        template_slots("GFR {gfr:>5}")


def test_bins_edges_and_missing() -> None:
    study = default_study()
    gfr = study.variable("gfr")
    got = [value_to_word(gfr, v) for v in (0, 14.99, 15, 29.9, 30, 44, 45, 59.9, 60, 300)]
    assert got == ["extremely low", "extremely low", "very low", "very low", "low", "low",
                   "medium", "medium", "high", "high"]
    for missing in (None, np.nan, pd.NA, pd.NaT, "", " ", float("inf")):
        assert value_to_word(gfr, missing) is None
    assert is_missing(np.nan) and not is_missing(0)
    assert value_to_word(gfr, "22") == "very low"  # text read from a CSV
    with pytest.raises(PromptError, match=r"patient P1 exam D15: .*'gfr'.*'abc'"):
        value_to_word(gfr, "abc", where="patient P1 exam D15")
    adj = study.variable("creatinine_variability")
    rng = np.random.default_rng(0)
    draws = {value_to_word(adj, 30.0, rng=rng) for _ in range(50)}
    assert draws == {"marked", "large", "strong"}
    assert "slight" in variable_words(adj)


def test_shared_or_reserved_slots_are_refused() -> None:
    raw = default_study().model_dump()
    raw["variables"][2]["slot"] = "gfr"
    raw["variables"][2]["template"] = "Creatinine {gfr}."
    with pytest.raises(TemplateError, match="share the slot"):
        known_slots(Study.model_validate(raw))
    raw = default_study().model_dump()
    raw["variables"][2]["slot"] = "date"
    raw["variables"][2]["template"] = "Creatinine {date}."
    with pytest.raises(TemplateError, match="reserved"):
        known_slots(Study.model_validate(raw))
