"""Bad input stops pretraining before the first step, with a message that says what to do."""

from __future__ import annotations

import pytest

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
