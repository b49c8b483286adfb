import json
from pathlib import Path

from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.prompts import load_bank

runner = CliRunner()


def flat(res) -> str:
    """Command output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def test_check_original_bank_passes(gpt_augs: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["prompts", "check", str(gpt_augs), "--report",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "10 of 10 variants valid" in flat(res)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["n_accepted"] == 10 and rep["n_rejected"] == 0


def test_check_reports_rejections_and_bad_files(gpt_augs: Path, tmp_path: Path) -> None:
    lines = gpt_augs.read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([*lines[:3], lines[1],
                              lines[2].replace("{age} years old", "{age} years old, not 40")]))
    res = runner.invoke(app, ["prompts", "check", str(bad)])
    assert res.exit_code == 1
    assert "duplicate of variant 1" in flat(res)
    assert "adds digits" in flat(res) and "adds a negation" in flat(res)
    broken = tmp_path / "broken.txt"
    broken.write_text(lines[0] + "\n The donor was {age}.; Creatinine {adj}.\n")
    res = runner.invoke(app, ["prompts", "check", str(broken)])
    assert res.exit_code == 1
    assert "broken.txt:2: expected 3 sentences" in flat(res)


def test_augment_rules_writes_bank(tmp_path: Path) -> None:
    out = tmp_path / "bank.yaml"
    res = runner.invoke(app, ["prompts", "augment", "default", "--n", "12", "--out", str(out),
                              "--report", str(tmp_path / "rep.json")])
    assert res.exit_code == 0, res.output
    bank = load_bank(out)
    assert bank.n == 12 and bank.provenance.backend == "rules"
    assert json.loads((tmp_path / "rep.json").read_text())["n_accepted"] == 12
    res = runner.invoke(app, ["prompts", "check", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["prompts", "augment", str(tmp_path / "missing.yaml"),
                              "--out", str(tmp_path / "x.yaml")])
    assert res.exit_code == 1 and "not found" in flat(res)
    res = runner.invoke(app, ["prompts", "augment", "--backend", "transformers",
                              "--out", str(tmp_path / "x.yaml")])
    assert res.exit_code == 1 and "--model-path" in flat(res)
    assert not (tmp_path / "x.yaml").exists()
