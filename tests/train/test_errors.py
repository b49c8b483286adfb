"""Bad input stops pretraining before the first step, with a message that says what to do."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pytest

from medimp.data.cohort._values import CohortWarning
from medimp.errors import MedimpError
from medimp.train import ConfigError, TrainError, pretrain


def test_one_patient_cohort(one_patient_cohort, tiny_config, tmp_path) -> None:
    with pytest.raises(TrainError, match="1 patient"):
        pretrain(one_patient_cohort, tmp_path / "run", tiny_config(), progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batch_larger_than_training_split(simulated_cohort, tiny_config, tmp_path) -> None:
    with pytest.raises(TrainError, match="batch_size 10000 is larger than the training split"):
        pretrain(simulated_cohort, tmp_path / "run", tiny_config("batch_size=10000"),
                 progress=False)


def test_text_path_not_a_model(simulated_cohort, tiny_config, tmp_path) -> None:
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "readme.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        pretrain(simulated_cohort, tmp_path / "run",
                 tiny_config(f"text.path={tmp_path / 'notamodel'}"), progress=False)


def test_config_errors_through_pretrain(simulated_cohort, tmp_path) -> None:
    with pytest.raises(ConfigError, match="lr_max"):
        pretrain(simulated_cohort, tmp_path / "run", {"optim": {"lr_max": 1.0}}, progress=False)
    with pytest.raises(ConfigError, match="epochs"):
        pretrain(simulated_cohort, tmp_path / "run", {"epochs": "ten"}, progress=False)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CPU-only check")
def test_fp16_needs_a_gpu(simulated_cohort, tiny_config, tmp_path) -> None:
    with pytest.raises(ConfigError, match="16-mixed"):
        pretrain(simulated_cohort, tmp_path / "run", tiny_config("precision='16-mixed'"),
                 progress=False)


def test_resume_checks(simulated_cohort, tiny_config, tmp_path) -> None:
    run = tmp_path / "run"
    with pytest.raises(TrainError, match="nothing to resume"):
        pretrain(simulated_cohort, run, tiny_config(), resume=True, progress=False)
    pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", "epochs=1"),
             progress=False)
    with pytest.raises(TrainError, match="already holds a run"):
        pretrain(simulated_cohort, run, tiny_config("method=tabular_clip"), progress=False)
    # a checkpoint of another architecture is refused before training
    with pytest.raises(TrainError, match=r"another architecture.*embed_dim"):
        pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", "embed_dim=32"),
                 resume=True, progress=False)
    with pytest.raises(TrainError, match=r"another architecture.*method"):
        pretrain(simulated_cohort, run, tiny_config("method=image_ssl"), resume=True,
                 progress=False)
    # a damaged checkpoint is a clear error, not an unpickling crash
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="cannot read this checkpoint safely"):
        pretrain(simulated_cohort, run, tiny_config("method=tabular_clip"), resume=True,
                 progress=False)
    # a failing --overwrite (bad config) leaves the old run as it was; a good one replaces it
    with pytest.raises(TrainError, match="batch_size"):
        pretrain(simulated_cohort, run, tiny_config("batch_size=10000"), progress=False,
                 overwrite=True)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"not a checkpoint"
    pretrain(simulated_cohort, run, tiny_config("method=image_ssl", "augment={}", "epochs=1"),
             progress=False, overwrite=True)
    from medimp.train import load_run_info
    from medimp.train.checkpoint import read_checkpoint

    assert load_run_info(run)["method"] == "image_ssl"
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0


def test_resume_refuses_a_changed_configuration(simulated_cohort, tiny_config, tmp_path
                                                ) -> None:
    """--resume continues the run it was started as: another number of epochs, learning rate
    or batch is refused in one line naming the change; run-time options may change; another
    number of processes is refused before training (the global batch and the schedule)."""
    from medimp.train.checkpoint import read_checkpoint

    run = pretrain(simulated_cohort, tmp_path / "run",
                   tiny_config("method=tabular_clip", "stop_after_epochs=1"), progress=False)
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["medimp_world"]["world_size"] == 1
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    config_before = (run / "config.yaml").read_bytes()
    for change, shown in (("epochs=3", "epochs: 2 -> 3"),
                          ("optim.lr=0.5", "optim.lr: 0.001 -> 0.5"),
                          ("batch_size=2", "batch_size: 4 -> 2")):
        with pytest.raises(TrainError, match=r"--resume with a changed configuration \(" +
                           re.escape(shown)) as err:
            pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", change),
                     resume=True, progress=False)
        assert "\n" not in str(err.value)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before  # nothing trained
    with pytest.raises(TrainError, match=r"trained on 1 process\(es\).*this resume runs 2"):
        pretrain(simulated_cohort, run, tiny_config(
            "method=tabular_clip", "strategy=ddp_spawn", "accelerator=cpu", "devices=2"),
            resume=True, progress=False)
    # the refused world is not written into config.yaml (a plain --resume would repeat it)
    assert (run / "config.yaml").read_bytes() == config_before
    # run-time options may change (stop_after_epochs, num_workers, log interval)
    pretrain(simulated_cohort, run, tiny_config("method=tabular_clip", "num_workers=1",
                                                "log_every_n_steps=5"),
             resume=True, progress=False)
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    log = (run / "logs" / "run.log").read_text()
    assert "precision 32" in log or "precision bf16-mixed" in log
    assert "global batch 4" in log


def test_exported_weights_of_another_architecture(simulated_cohort, tiny_config, tmp_path
                                                  ) -> None:
    import json

    from medimp.train import load_image_encoder

    run = pretrain(simulated_cohort, tmp_path / "r", tiny_config("method=random_init"),
                   progress=False)
    info = json.loads((run / "model.json").read_text())
    info["config"]["image_encoder"]["kwargs"]["widths"] = [8, 8, 8]
    (run / "model.json").write_text(json.dumps(info))
    with pytest.raises(TrainError, match="do not fit the architecture"):
        load_image_encoder(run)


def _text_model_copy(dst):
    import shutil

    from medimp._textmodel import default_text_model_path

    shutil.copytree(default_text_model_path(), dst)
    return dst


def _cli_one_line(args: list[str]) -> str:
    from typer.testing import CliRunner

    from medimp.cli.main import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_text_path_with_a_pickled_pytorch_model_bin(simulated_cohort, tiny_config,
                                                    tmp_path) -> None:
    import pickle

    model = _text_model_copy(tmp_path / "model")
    (model / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"

    class Payload:  # what a malicious pytorch_model.bin holds: code run on unpickling
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    (model / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(MedimpError, match="holds pickled objects"):
        pretrain(simulated_cohort, tmp_path / "run", tiny_config(f"text.path={model}"),
                 progress=False)
    line = _cli_one_line(["pretrain", "--cohort", str(simulated_cohort), "--out",
                          str(tmp_path / "run2"), "--no-progress", "--set", f"text.path={model}",
                          "--set", "preprocess.shape=[16,16,16]",
                          "--set", "image_encoder.name=tiny_cnn_3d"])
    assert str(model) in line and "refused" in line
    assert not marker.exists()  # never unpickled


def test_text_path_with_a_truncated_weights_file(simulated_cohort, tiny_config,
                                                 tmp_path) -> None:
    model = _text_model_copy(tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])  # an interrupted copy
    with pytest.raises(MedimpError, match=r"cannot load a text model.*damaged or truncated"):
        pretrain(simulated_cohort, tmp_path / "run", tiny_config(f"text.path={model}"),
                 progress=False)


def test_damaged_model_safetensors(simulated_cohort, tiny_config, tmp_path) -> None:
    from medimp.train import embed

    run = pretrain(simulated_cohort, tmp_path / "run", tiny_config("method=random_init"),
                   progress=False)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TrainError, match="damaged model file"):
        embed(run, simulated_cohort)
    line = _cli_one_line(["embed", "--run", str(run), "--cohort", str(simulated_cohort), "--out",
                          str(tmp_path / "e.parquet")])
    assert str(weights) in line and "copy the run folder again" in line
    assert not (tmp_path / "e.parquet").exists()


@contextlib.contextmanager
def _read_only_cohort(src: Path, at: Path):
    """``src`` seen read-only: a chmod'ed copy for a normal user; for root (which chmod does not
    stop) a read-only bind mount, or a skip where mounting is not allowed."""
    if os.geteuid() != 0:
        shutil.copytree(src, at)
        dirs = [at, *(p for p in at.rglob("*") if p.is_dir())]
        for d in dirs:
            d.chmod(0o555)
        try:
            yield at
        finally:
            for d in dirs:
                d.chmod(0o755)
        return
    from tests._fs import read_only_view

    with read_only_view(src, at) as ro:
        yield ro


def test_read_only_cohort_trains_with_the_user_cache(simulated_cohort, tiny_config, tmp_path,
                                                     monkeypatch) -> None:
    """A cohort on a read-only share trains and embeds: its exams are cached in the user's
    cache folder, and a warning says where; nothing is written into the cohort."""
    from typer.testing import CliRunner

    from medimp.cli.main import app
    from medimp.data.pipeline.cache import user_cache_dir

    src = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, src, ignore=shutil.ignore_patterns(".medimp_cache"))
    monkeypatch.setenv("MEDIMP_CACHE_DIR", str(tmp_path / "user-cache"))
    with _read_only_cohort(src, tmp_path / "ro") as ro:
        before = sorted(p.relative_to(ro) for p in ro.rglob("*"))
        config = tiny_config("method=image_ssl", "augment={}", "epochs=1").model_copy(
            update={"cache_dir": None})
        with pytest.warns(CohortWarning, match=r"cannot be written.*cached in"):
            run = pretrain(ro, tmp_path / "run", config, progress=False)
        assert (run / "model.json").is_file()
        cache = user_cache_dir(ro)
        assert cache.is_relative_to(tmp_path / "user-cache") and any(cache.rglob("*"))
        with pytest.warns(CohortWarning, match=f"cached in {re.escape(str(cache))}"):
            res = CliRunner().invoke(app, ["embed", "--run", str(run), "--cohort", str(ro),
                                           "--out", str(tmp_path / "e.parquet")])
        assert res.exit_code == 0, res.output
        assert sorted(p.relative_to(ro) for p in ro.rglob("*")) == before


def test_unwritable_cache_dir_names_the_folder_not_the_images(simulated_cohort, tiny_config,
                                                              tmp_path) -> None:
    """A cache_dir that cannot be written is one error naming it and the setting; the images
    are not blamed (nothing says 'exam' or 'export them again')."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"
    with pytest.raises(MedimpError, match="cache folder cannot be written") as err:
        pretrain(simulated_cohort, tmp_path / "run", tiny_config(
            "method=image_ssl", "augment={}").model_copy(update={"cache_dir": str(cache)}),
            progress=False)
    assert str(cache) in str(err.value) and "cache_dir" in str(err.value)
    line = _cli_one_line(["pretrain", "--cohort", str(simulated_cohort), "--out",
                          str(tmp_path / "run2"), "--no-progress", "--set", f"cache_dir={cache}",
                          "--set", "preprocess.shape=[16,16,16]", "--method", "image_ssl",
                          "--set", "image_encoder.name=tiny_cnn_3d"])
    assert str(cache) in line and "cache_dir=DIR" in line and "--cache DIR" in line
    assert "exam" not in line and "export" not in line
    assert not (tmp_path / "run2" / "model.json").exists()


def test_full_disk_says_so_and_where(simulated_cohort, train_cache, tmp_path) -> None:
    from tests._fs import tiny_disk

    with tiny_disk(tmp_path / "disk", "300k") as disk:
        line = _cli_one_line([
            "pretrain", "--cohort", str(simulated_cohort), "--out", str(disk / "run"),
            "--no-progress", "--method", "tabular_clip", "--epochs", "1", "--batch-size", "4",
            "--set", "image_encoder.name=tiny_cnn_3d", "--set", "preprocess.shape=[16,16,16]",
            "--set", "augment=null", "--set", f"cache_dir={train_cache}"])
        assert line.startswith("error: no space left on device while writing "
                               f"{disk / 'run'}"), line
        assert "the disk is full" in line
        assert not list((disk / "run").rglob(".*.tmp*"))  # no half-written file left behind


def test_resume_may_change_precision_after_a_non_finite_stop(simulated_cohort, tiny_config,
                                                               tmp_path) -> None:
    """A bf16 run stopped by non-finite steps is told to resume with precision 32: that
    resume (and a smaller micro-batch, the same gradient) continues instead of being refused
    as a changed configuration."""
    from medimp.train.checkpoint import read_checkpoint

    run = pretrain(simulated_cohort, tmp_path / "run",
                   tiny_config("method=image_ssl", "augment={}", "precision=bf16-mixed",
                               "stop_after_epochs=1"), progress=False)
    pretrain(simulated_cohort, run, tiny_config("method=image_ssl", "augment={}",
                                                "precision=32", "micro_batch_size=2"),
             resume=True, progress=False)
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 1
