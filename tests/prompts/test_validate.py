from pathlib import Path

import pytest

from medimp.prompts import default_bank, load_bank
from medimp.prompts.backends.rules import rules_paraphrases
from medimp.prompts.validate import (
    Validator,
    check_bank,
    normalise_for_duplicates,
    repeated_slot_words,
    sentence_problems,
)
from medimp.study import default_study

AGE, GFR, ADJ = ("The kidney donor was {age} years of age.",
                 "The patient's GFR was found to be {gfr} at the {date} check-up.",
                 "Creatinine levels displayed {adj} fluctuations.")


@pytest.fixture(scope="module")
def validator_factory(study):
    def make(min_similarity=0.6):
        return Validator(study, {"donor_age": AGE, "gfr": GFR, "creatinine_variability": ADJ},
                         ["donor_age", "gfr", "creatinine_variability"],
                         min_similarity=min_similarity)
    return make


def test_original_bank_passes(gpt_augs: Path, study, validator_factory) -> None:
    bank = load_bank(gpt_augs)
    report = validator_factory().validate(bank.lines())
    assert report.ok, [r.reasons for r in report.rejected]
    assert len(report.accepted) == 10
    assert all(min(r.similarity) >= 0.6 for r in report.results)


def test_rules_bank_gives_ten_distinct_valid_variants(validator_factory) -> None:
    bank = default_bank(n=10)
    assert bank.line(0) == [AGE, GFR, ADJ]
    keys = {normalise_for_duplicates(" ".join(line)) for line in bank.lines()}
    assert len(keys) == 10
    report = validator_factory().validate(bank.lines())
    assert report.ok, [r.reasons for r in report.rejected]
    for var_templates in bank.templates.values():
        assert len(set(var_templates)) == 10  # each sentence differs, not only the lines
    assert default_bank(n=10).lines() == bank.lines()  # deterministic
    assert len(rules_paraphrases(GFR, 30)) == 30


@pytest.mark.parametrize(("candidate", "reason"), [
    ("The kidney donor was years of age.", "slots"),
    ("The kidney donor was {age} or {age} years of age.", "slots"),
    ("The kidney donor was {age} years of age at {date}.", "slots"),
    ("The kidney donor was {age} years of age in 2019.", "adds digits"),
    ("The kidney donor was {age}, about sixty years of age.", "number word"),
    ("The kidney donor was not {age} years of age.", "adds a negation"),
    ("The kidney donor wasn't {age} years of age.", "adds a negation"),
    ("The kidney donor was {age years of age.", "malformed"),
    ("", "empty"),
])
def test_sentence_problems(candidate: str, reason: str) -> None:
    problems = sentence_problems(AGE, candidate)
    assert any(reason in p for p in problems), problems


def test_negation_removed_and_kept() -> None:
    src = "No rejection episode was seen before the {date} visit, with {adj} creatinine."
    assert any("removes a negation" in p for p in sentence_problems(
        src, "A rejection episode was seen before the {date} visit, with {adj} creatinine."))
    assert sentence_problems(
        src, "Before the {date} visit, no rejection was seen, with {adj} creatinine.") == []


def test_line_level_rejections_with_reasons(validator_factory) -> None:
    v = validator_factory()
    lines = [
        [AGE, GFR, ADJ],
        ["the kidney donor was {age} years of age!", GFR.upper().replace("{GFR}", "{gfr}")
         .replace("{DATE}", "{date}"), ADJ],  # same as line 0 after normalisation
        [AGE, GFR],  # wrong format
        [AGE, GFR, "Bananas grow {adj} on trees in the market."],  # meaning lost
        [AGE, ADJ, "The recipient's GFR was {gfr} during the {date} visit."],  # other order
        [AGE, GFR, "Creatinine was {mood}."],
    ]
    report = v.validate(lines)
    verdict = [r.accepted for r in report.results]
    assert verdict == [True, False, False, False, True, False]
    reasons = [" ".join(r.reasons) for r in report.results]
    assert "duplicate of variant 0" in reasons[1]
    assert "expected 3 sentences" in reasons[2]
    assert "creatinine_variability: similarity" in reasons[3]
    assert "unknown slot" in reasons[5]
    # accepted variants are put back in variable order
    assert report.results[4].sentences[1].startswith("The recipient's GFR")
    d = report.to_dict()
    assert d["n_accepted"] == 2 and d["n_rejected"] == 4


def test_similarity_threshold_is_a_knob(validator_factory) -> None:
    line = [AGE, "The patient's kidney function was {gfr} at the {date} party.", ADJ]
    sims = validator_factory(min_similarity=0.0).validate([line]).results[0].similarity
    assert 0.0 < sims[1] < 0.99
    strict = validator_factory(min_similarity=min(0.999, sims[1] + 0.01)).validate([line])
    assert not strict.ok
    lax = validator_factory(min_similarity=sims[1] - 0.01).validate([line])
    assert lax.ok


def test_kdigo_study_templates_also_get_ten_rules_variants() -> None:
    bank = default_bank(default_study(gfr_binning="kdigo"), n=10)
    assert bank.n == 10


def test_a_slot_word_repeated_in_its_sentence_is_caught() -> None:
    """The wording MEDIMP's default bins produced ("fluctuating fluctuations")."""
    old = {"adj": ["stable", "steady", "minor", "unstable", "fluctuating", "marked"]}
    assert repeated_slot_words(ADJ, old) == [
        "slot word 'fluctuating' of {adj} repeats 'fluctuations' in its sentence"]
    assert repeated_slot_words("Creatinine levels fluctuated {adj}.", old)
    assert repeated_slot_words("It was {date} at the one-year visit.", {"date": ["first year"]})
    assert repeated_slot_words(AGE, {"age": ["under 65", "65 or more"]}) == []
    assert repeated_slot_words("The donor was {age}.", {"age": ["old", "older"]}) == []
    assert repeated_slot_words("Prices were {adj} at the market.", {"adj": ["marked"]}) == []


def test_every_default_sentence_reads_with_every_word(study) -> None:
    """Each default template and each of its rules paraphrases, filled with each word its slots
    can take, repeats no word (the rule `prompts check` applies) and reads as English."""
    from medimp.prompts.bins import variable_words

    bank = default_bank(n=10)
    dates = [e.phrase for e in study.exams]
    for var in study.variables:
        fills = {var.slot: variable_words(var), "date": dates}
        for template in bank.templates[var.name]:
            assert repeated_slot_words(template, fills) == [], template
    filled = {AGE.format(age=w) for w in variable_words(study.variable("donor_age"))}
    assert filled == {"The kidney donor was under 65 years of age.",
                      "The kidney donor was 65 or more years of age."}
    assert GFR.format(gfr="low", date=dates[0]).endswith("at the two-week check-up.")


def test_prompts_check_rejects_a_repeated_slot_word(tmp_path, study) -> None:
    """`prompts check` with a study whose words repeat the template: rejected, exit 1."""
    import yaml
    from typer.testing import CliRunner

    from medimp.cli.main import app
    from medimp.prompts import save_bank

    raw = study.model_dump(mode="json")
    for var in raw["variables"]:
        if var["name"] == "creatinine_variability":
            var["synonyms"] = {"minor": ["minor", "fluctuating"], "marked": ["marked"]}
    study_yaml = tmp_path / "study.yaml"
    study_yaml.write_text(yaml.safe_dump(raw), encoding="utf-8")
    bank = tmp_path / "bank.yaml"
    save_bank(default_bank(n=3), bank)
    from medimp.study import load_study

    report = check_bank(bank, load_study(study_yaml), min_similarity=None)
    assert not report.ok
    assert all("'fluctuating' of {adj} repeats" in " ".join(r.reasons)
               for r in report.rejected if "fluctuations" in " ".join(r.sentences))
    res = CliRunner().invoke(app, ["prompts", "check", str(bank), "--study", str(study_yaml),
                                   "--min-similarity", "0"])
    assert res.exit_code == 1, res.output
    assert "repeats" in res.output and "'fluctuating'" in res.output
    assert CliRunner().invoke(app, ["prompts", "check", str(bank), "--min-similarity",
                                    "0"]).exit_code == 0


def test_a_study_with_medimps_own_words_still_builds_its_bank(study) -> None:
    """The repetition rule is `prompts check`'s: a study.yaml keeping MEDIMP's words
    ("fluctuating" fluctuations) still gets its 10 rules variants and trains."""
    raw = study.model_dump(mode="json")
    for var in raw["variables"]:
        if var["name"] == "creatinine_variability":
            var["bins"] = [{"label": "stable", "upper": 15.0}, {"label": "unstable"}]
            var["synonyms"] = {"stable": ["stable", "steady", "minor"],
                               "unstable": ["unstable", "fluctuating", "marked"]}
    old = type(study).model_validate(raw)
    bank = default_bank(old, n=10)
    assert bank.n == 10
    assert not check_bank(bank, old, min_similarity=None).ok
