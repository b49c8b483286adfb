from pathlib import Path

import pytest

from medimp.prompts import BankError, ParaphraseBank, default_bank, load_bank, save_bank
from medimp.prompts.bank import bank_to_txt
from medimp.study import default_study


def test_load_original_gpt_augs(gpt_augs: Path) -> None:
    bank = load_bank(gpt_augs)
    assert bank.n == 10
    assert bank.variables == ["donor_age", "gfr", "creatinine_variability"]
    assert bank.templates["gfr"][1] == ("The patient's glomerular filtration rate was {gfr} at "
                                        "the {date} follow-up.")
    assert bank.provenance.source_file == "gpt_augs.txt"


def test_roundtrip_yaml_and_txt(tmp_path: Path, gpt_augs: Path) -> None:
    bank = load_bank(gpt_augs)
    save_bank(bank, tmp_path / "bank.yaml")
    again = load_bank(tmp_path / "bank.yaml")
    assert again.lines() == bank.lines() and again.sources == bank.sources
    save_bank(again, tmp_path / "bank.txt")
    assert (tmp_path / "bank.txt").read_text() == gpt_augs.read_text()
    rules = default_bank(n=10)
    save_bank(rules, tmp_path / "rules.yaml")
    loaded = load_bank(tmp_path / "rules.yaml")
    assert loaded.provenance.backend == "rules" and loaded.lines() == rules.lines()
    assert loaded.provenance.instruction


@pytest.mark.parametrize(("line", "match"), [
    (" The kidney donor was {age} years of age.; Creatinine levels displayed {adj}.",
     r"bank\.txt:2: expected 3 sentences separated by ';', found 2"),
    (" The donor was {age}.; GFR {gfr} at {date}.; Creatinine {adj}.; Weight {weight}.",
     r"bank\.txt:2: expected 3 sentences"),
    (" The donor was {age}.; GFR {gfr} at {date}.; Creatinine {mood}.",
     r"bank\.txt:2: unknown slot\(s\) \{mood\}"),
    (" The donor was {age}.; GFR {gfr} at {date} and {date}.; Creatinine {adj}.",
     r"bank\.txt:2: .*repeats \{date\}"),
    (" The donor was {age} and {age}.; GFR {gfr}.; Creatinine {adj}.", r"exactly once"),
    (" The donor was {age}.; GFR {gfr}.; Creatinine {adj.", r"bank\.txt:2: .*malformed"),
    (" The donor was {age}.; GFR {gfr}.; Creatinine.", r"exactly one variable slot"),
    (" The donor was {age}.; GFR {gfr}.; Creatinine {adj};", r"empty sentence"),
])
def test_malformed_bank_lines(tmp_path: Path, gpt_augs: Path, line: str, match: str) -> None:
    good = gpt_augs.read_text().splitlines()[0]
    path = tmp_path / "bank.txt"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(BankError, match=match):
        load_bank(path)


def test_bank_errors(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not found"):
        load_bank(tmp_path / "none.txt")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(BankError, match="unknown bank format"):
        load_bank(tmp_path / "b.json")
    (tmp_path / "b.yaml").write_text("a: 1\n")
    with pytest.raises(BankError, match="not a medimp paraphrase bank"):
        load_bank(tmp_path / "b.yaml")
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(BankError, match="empty"):
        load_bank(tmp_path / "e.txt")


def test_bank_must_fit_the_study(gpt_augs: Path) -> None:
    raw = default_study().model_dump()
    raw["variables"].append({"name": "rec_age", "table": "patients", "column": "recipient_age",
                             "known_at": "transplant", "bins": [{"label": "young", "upper": 50},
                                                                {"label": "old"}],
                             "slot": "rage", "template": "The recipient was {rage}."})
    from medimp.study import Study

    with pytest.raises(BankError, match=r"no templates for variable\(s\) \['rec_age'\]"):
        load_bank(gpt_augs).check_fits(Study.model_validate(raw))


def test_save_is_atomic(tmp_path: Path, gpt_augs: Path) -> None:
    bank = load_bank(gpt_augs)
    target = tmp_path / "bank.txt"
    target.write_text("old")
    with pytest.raises(BankError):
        save_bank(bank, tmp_path / "bank.csv")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.txt"]
    assert bank_to_txt(bank).startswith(" The kidney donor")
    with pytest.raises(BankError, match="same number of variants"):
        ParaphraseBank(variables=["a", "b"], slots={"a": "x", "b": "y"}, sources={},
                       templates={"a": ["{x}"], "b": ["{y}", "{y}."]})
