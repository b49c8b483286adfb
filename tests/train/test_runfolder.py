"""The run folder is never lost or mixed: --overwrite swaps only on success, a folder of the
user's own files is refused, and a second process on the same --out fails at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medimp.train import TrainError, load_run_info, pretrain
from tests._proc import MAIN_WITH_SIGINT


def _finished_run(cohort: Path, tiny_config, out: Path) -> tuple[Path, bytes, bytes]:
    run = pretrain(cohort, out, tiny_config("method=image_ssl", "augment={}", "epochs=1"),
                   progress=False)
    return run, (run / "model.safetensors").read_bytes(), (run / "model.json").read_bytes()


def _truncate_one_image(cohort: Path) -> str:
    rel = pd.read_csv(cohort / "manifest.csv")["path"].iloc[-1]
    data = (cohort / rel).read_bytes()
    (cohort / rel).write_bytes(data[: len(data) // 3])
    return rel


def test_failed_overwrite_keeps_the_old_run(simulated_cohort, tiny_config, tmp_path) -> None:
    """An image error in the new run leaves the old finished run exactly as it was."""
    cohort = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, cohort, ignore=shutil.ignore_patterns(".medimp_cache"))
    run, weights, info = _finished_run(cohort, tiny_config, tmp_path / "run")
    _truncate_one_image(cohort)
    with pytest.raises(ValueError, match="patient"):
        pretrain(cohort, run, tiny_config("method=image_ssl", "augment={}", "epochs=1",
                                          "cache_dir=null"), progress=False, overwrite=True)
    assert (run / "model.safetensors").read_bytes() == weights
    assert (run / "model.json").read_bytes() == info
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")], \
        "the half-built replacement and the lock files are removed"


def test_failed_overwrite_during_training_keeps_the_old_run(simulated_cohort, tiny_config,
                                                             tmp_path) -> None:
    """A failure inside epoch 1 (a diverging loss) leaves the old run; a good one replaces it."""
    run, weights, _ = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    with pytest.raises(TrainError, match="non-finite training loss"):
        pretrain(simulated_cohort, run, tiny_config("method=image_ssl", "augment={}",
                                                    "epochs=2", "optim.lr=1e30",
                                                    "optim.warmup_epochs=0"),
                 progress=False, overwrite=True)
    assert (run / "model.safetensors").read_bytes() == weights
    pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", "epochs=1"),
             progress=False, overwrite=True)
    assert load_run_info(run)["method"] == "tabular_clip"
    assert not (tmp_path / ".run.overwrite.tmp").exists()


def test_out_folder_of_other_files_is_refused(simulated_cohort, tiny_config, tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my own settings\n")
    (out / "history.csv").write_text("my,own\n1,2\n")
    for overwrite in (False, True):
        with pytest.raises(TrainError, match=r"mine is not empty and is not a medimp run.*"
                                             r"config\.yaml.*new or empty folder"):
            pretrain(simulated_cohort, out, tiny_config("epochs=1"), progress=False,
                     overwrite=overwrite)
    assert (out / "config.yaml").read_text() == "my own settings\n"
    assert (out / "history.csv").read_text() == "my,own\n1,2\n"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "history.csv"]


def test_overwrite_refuses_a_run_holding_user_files(simulated_cohort, tiny_config,
                                                    tmp_path) -> None:
    run, weights, _ = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    (run / "notes.txt").write_text("keep me")
    with pytest.raises(TrainError, match=r"notes\.txt"):
        pretrain(simulated_cohort, run, tiny_config("epochs=1"), progress=False, overwrite=True)
    assert (run / "notes.txt").read_text() == "keep me"
    assert (run / "model.safetensors").read_bytes() == weights


def test_overwrite_refuses_a_run_holding_hidden_user_files(simulated_cohort, tiny_config,
                                                           tmp_path) -> None:
    """A run folder that is also the user's git checkout (``.git``, ``.env``) is refused, not
    deleted (found by the review: hidden names were left out of the check)."""
    run, weights, _ = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    (run / ".git" / "objects").mkdir(parents=True)
    (run / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (run / ".env").write_text("TOKEN=mine\n")
    with pytest.raises(TrainError, match=r"\.env, \.git"):
        pretrain(simulated_cohort, run, tiny_config("epochs=1"), progress=False, overwrite=True)
    assert (run / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (run / ".env").read_text() == "TOKEN=mine\n"
    assert (run / "model.safetensors").read_bytes() == weights
    # a folder holding only hidden files of the user is not an empty folder either
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    for overwrite in (False, True):
        with pytest.raises(TrainError, match=r"not a medimp run folder \(it holds \.git\)"):
            pretrain(simulated_cohort, repo, tiny_config("epochs=1"), progress=False,
                     overwrite=overwrite)
    assert [p.name for p in repo.iterdir()] == [".git"]


def test_own_temporaries_do_not_block_an_overwrite(simulated_cohort, tiny_config,
                                                   tmp_path) -> None:
    """What a killed writer of ours leaves in a run (an atomic write's temporary) is ours."""
    run, _, _ = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    (run / ".history.k2j4_x9a.tmp.csv").write_text("half")
    pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", "epochs=1"),
             progress=False, overwrite=True)
    assert load_run_info(run)["method"] == "tabular_clip"
    assert not (run / ".history.k2j4_x9a.tmp.csv").exists()


def test_resume_with_overwrite_is_refused(simulated_cohort, tiny_config, tmp_path) -> None:
    """--resume continues a run, --overwrite replaces it: both at once is refused, in one line
    and before anything is touched (the review found the pair trained on with the best
    checkpoint's tracking lost)."""
    from typer.testing import CliRunner

    from medimp.cli.main import app

    run, weights, info = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    listing = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(TrainError, match=r"--resume continues.*--overwrite replaces.*only one"):
        pretrain(simulated_cohort, run, tiny_config("method=image_ssl", "augment={}",
                                                    "epochs=2"),
                 progress=False, resume=True, overwrite=True)
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(run), "--resume", "--overwrite", "--epochs", "2"])
    assert res.exit_code == 1, res.output
    assert res.output.count("\n") == 1 and "only one of them" in res.output
    assert (run / "model.safetensors").read_bytes() == weights
    assert (run / "model.json").read_bytes() == info
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == listing


def test_resume_keeps_the_best_checkpoint_of_the_last_epoch(simulated_cohort, tiny_config,
                                                            tmp_path) -> None:
    """last.ckpt carries the best-checkpoint state of its own epoch: a resumed run still knows
    the best validation loss so far (it held the previous epoch's, so a worse epoch after the
    resume replaced best.ckpt)."""
    from medimp.train.checkpoint import read_checkpoint

    cfg = ("method=image_ssl", "augment={}", "epochs=4")
    run = pretrain(simulated_cohort, tmp_path / "run", tiny_config(*cfg, "stop_after_epochs=2"),
                   progress=False)
    val = pd.read_csv(run / "history.csv")["val_loss"].tolist()
    assert len(val) == 2
    state = read_checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]
    (best,) = [s for k, s in state.items() if "'monitor': 'val_loss'" in k]
    assert float(best["best_model_score"]) == pytest.approx(min(val), rel=1e-6)
    pretrain(simulated_cohort, run, tiny_config(*cfg), progress=False, resume=True)
    val = pd.read_csv(run / "history.csv")["val_loss"].tolist()
    assert len(val) == 4
    assert load_run_info(run)["best_val_loss"] == pytest.approx(min(val), rel=1e-6)
    saved = read_checkpoint(run / "checkpoints" / "best.ckpt")
    assert saved["epoch"] == val.index(min(val))


_SECOND = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # see tests/_proc.py
from medimp.train import pretrain, load_config
cfg = load_config(sys.argv[3])
pretrain(sys.argv[1], sys.argv[2], cfg, progress=False)
"""


def test_second_process_on_the_same_out_fails_at_once(simulated_cohort, tiny_config,
                                                      tmp_path) -> None:
    """Two real processes: the second fails within seconds naming the folder and the holder;
    the first, stopped with Ctrl-C once it has a checkpoint, leaves a run that resumes."""
    import signal

    from medimp.train import save_config
    from medimp.train.checkpoint import read_checkpoint

    # more epochs than it ever trains: the first holds the lock until it is interrupted, on a
    # quiet machine (3 epochs ended before the second had imported torch) or a loaded one (60
    # epochs outlasted a 10-minute timeout during a full test run)
    cfg = tiny_config("method=image_ssl", "augment={}", "epochs=1000")
    save_config(cfg, tmp_path / "cfg.yaml")
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", _SECOND, str(simulated_cohort), str(out),
           str(tmp_path / "cfg.yaml")]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".run.medimp-lock.json").is_file():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode != 0
        assert "in use by process" in second.stderr and str(first.pid) in second.stderr
        assert str(out) in second.stderr
        assert "Epoch" not in second.stdout + second.stderr  # refused before any step
        last = out / "checkpoints" / "last.ckpt"
        while not last.is_file():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline + 600
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=300)
    assert "resume with --resume" in err, err[-2000:]
    assert not (tmp_path / ".run.medimp-lock.json").exists()
    assert not (tmp_path / ".run.medimp-lock").exists(), "the lock file is removed on release"
    # the run is whole: it resumes, here for one more epoch (the same config, stopped early)
    done = int(read_checkpoint(out / "checkpoints" / "last.ckpt")["epoch"]) + 1
    pretrain(simulated_cohort, out, tiny_config("method=image_ssl", "augment={}", "epochs=1000",
                                                f"stop_after_epochs={done + 1}"),
             progress=False, resume=True)
    assert load_run_info(out)["epochs_trained"] == done + 1


def test_cli_second_pretrain_message(simulated_cohort, tmp_path) -> None:
    """The lock message reaches the CLI as one clear line (exit 2)."""
    from typer.testing import CliRunner

    from medimp._io import folder_lock
    from medimp.cli.main import app

    out = tmp_path / "run"
    with folder_lock(out, "run folder"):
        res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                       str(out), "--epochs", "1", "--no-progress"])
    assert res.exit_code == 1
    assert "in use by process" in res.output and "Traceback" not in res.output


@pytest.mark.slow  # a subprocess that trains until its first checkpoint
def test_ctrl_c_during_overwrite_keeps_the_old_run(simulated_cohort, tiny_config, train_cache,
                                                   tmp_path) -> None:
    import signal

    run, weights, _ = _finished_run(simulated_cohort, tiny_config, tmp_path / "run")
    cmd = [sys.executable, "-c", MAIN_WITH_SIGINT, "pretrain", "--cohort",
           str(simulated_cohort), "--out", str(run), "--overwrite", "--no-progress",
           "--method", "tabular_clip", "--epochs", "500", "--batch-size", "4",
           "--set", "image_encoder.name=tiny_cnn_3d", "--set", "preprocess.shape=[16,16,16]",
           "--set", "augment=null", "--set", f"cache_dir={train_cache}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    new_last = tmp_path / ".run.overwrite.tmp" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not new_last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert new_last.is_file(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "still holds the previous run" in err and "--overwrite again" in err
    assert (run / "model.safetensors").read_bytes() == weights
    assert not (tmp_path / ".run.overwrite.tmp").exists()
