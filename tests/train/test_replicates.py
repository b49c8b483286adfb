"""Several pretraining runs through medimp.train.replicates: the layout, and Ctrl-C in processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from medimp._io import folder_lock
from medimp.train import save_config
from medimp.train.replicates import (
    RunJob,
    method_seed_runs,
    seed_run_dir,
    seed_runs,
    train_runs,
)


def test_seed_run_layout(tmp_path: Path) -> None:
    assert seed_run_dir(tmp_path, 3) == tmp_path / "seed3"
    assert seed_runs(tmp_path, [2, 0]) == [tmp_path / "seed2", tmp_path / "seed0"]
    assert method_seed_runs(tmp_path / "runs", ["medimp", "image_ssl"], [0, 1]) == {
        "medimp": [tmp_path / "runs/medimp/seed0", tmp_path / "runs/medimp/seed1"],
        "image_ssl": [tmp_path / "runs/image_ssl/seed0", tmp_path / "runs/image_ssl/seed1"]}


def test_keep_going_returns_the_failed_run(simulated_cohort, tiny_config, tmp_path) -> None:
    """One broken run does not stop the others when asked; its error names the problem."""
    good = RunJob("good", simulated_cohort, tmp_path / "good",
                  tiny_config("epochs=1", "method=random_init"))
    bad = RunJob("bad", simulated_cohort, tmp_path / "bad", {"batch_size": 10_000})
    lines: list[str] = []
    done = train_runs([bad, good], keep_going=True, log=lines.append)
    assert [(o.job.name, o.ok) for o in done] == [("bad", False), ("good", True)]
    assert "batch_size" in done[0].error and (tmp_path / "good" / "model.json").is_file()
    assert any(line.startswith("[pretrain bad] not trained:") for line in lines)
    with pytest.raises(Exception, match="batch_size"):
        train_runs([bad], log=lines.append)


_CHILD = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pathlib import Path
    from medimp.train.replicates import RunJob, seed_runs, train_runs
    cohort, root, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    jobs = [RunJob(f"seed {s}", cohort, run, config) for s, run in
            zip([0, 1], seed_runs(root, [0, 1]))]
    try:
        train_runs(jobs, jobs=2, threads=1, log=lambda m: print(m, flush=True))
    except KeyboardInterrupt as exc:
        print(exc, file=sys.stderr)
        sys.exit(130)
""")


@pytest.mark.slow
def test_ctrl_c_of_a_two_process_run_leaves_both_runs_resumable(simulated_cohort, tiny_config,
                                                                 tmp_path) -> None:
    epochs = 4
    config = tmp_path / "config.yaml"
    save_config(tiny_config(f"epochs={epochs}"), config)
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(simulated_cohort), str(root),
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 900  # generous: two spawned workers on a loaded machine
    # both workers have finished an epoch (each wrote its resume checkpoint)
    while (len(list(root.glob("seed*/checkpoints/last.ckpt"))) < 2 and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    if len(list(root.glob("seed*/checkpoints/last.ckpt"))) < 2:
        proc.kill()
        pytest.fail(f"the two runs did not both reach a checkpoint: {proc.communicate()}")
    proc.send_signal(signal.SIGINT)  # the parent alone, as `kill -INT`: it stops its workers
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("interrupted during pretraining (0 of 2 runs had "
                                            "finished)")
    runs = seed_runs(root, [0, 1])
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file(), sorted(run.rglob("*"))
        assert not (run / "model.json").exists()  # not exported half-trained
        with folder_lock(run):  # no worker holds it any more
            pass
    # both continue where they stopped and end at the configured epoch count
    done = train_runs([RunJob(f"seed {s}", simulated_cohort, run, None, resume=True)
                       for s, run in zip([0, 1], runs, strict=True)], log=lambda m: None)
    assert [o.ok for o in done] == [True, True]
    for run in runs:
        history = pd.read_csv(run / "history.csv")
        assert history["epoch"].tolist() == list(range(1, epochs + 1)), history
        assert (run / "model.json").is_file()
