"""End-to-end pretraining on the simulated cohort: outputs, determinism, resume, baselines."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from medimp.train import (
    embed,
    load_image_encoder,
    load_image_tower,
    load_run_info,
    load_text_tower,
    pretrain,
)
from medimp.train.checkpoint import read_checkpoint
from medimp.train.precision import explain_precision


@pytest.fixture(scope="module")
def medimp_run(simulated_cohort, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "medimp"
    return pretrain(simulated_cohort, out, tiny_config(), progress=False)


def test_run_folder_contents(medimp_run) -> None:
    for name in ("config.yaml", "model.safetensors", "model.json", "history.csv",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt", "logs/csv/metrics.csv"):
        assert (medimp_run / name).is_file(), name
    assert list((medimp_run / "logs" / "tb").glob("events.out.tfevents.*"))
    hist = pd.read_csv(medimp_run / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert np.isfinite(hist["train_loss"]).all() and np.isfinite(hist["val_loss"]).all()
    assert hist["lr"].iloc[-1] < hist["lr"].iloc[0]  # cosine decay after warm-up
    info = load_run_info(medimp_run)
    assert info["method"] == "medimp" and info["in_channels"] == 3 and info["embed_dim"] == 16
    assert info["image_encoder"]["name"] == "tiny_cnn_3d"
    assert info["preprocess"]["shape"] == [16, 16, 16]
    assert not set(info["train_patients"]) & set(info["val_patients"])
    assert info["epochs_trained"] == 2 and np.isfinite(info["best_val_loss"])
    # precision "auto": what this machine's flags give, recorded with the reason, and logged
    chosen, why = explain_precision("auto", "auto")
    assert (info["precision"], info["precision_reason"]) == (chosen, why)
    assert f"precision {chosen}: {why}" in (medimp_run / "logs" / "run.log").read_text()
    state = load_file(medimp_run / "model.safetensors")
    prefixes = {k.split(".")[0] for k in state}
    assert {"image_encoder", "image_proj", "text_proj", "text_encoder", "loss_fn"} <= prefixes
    # only the trainable (last) text layer is exported; the frozen prefix is the pretrained model
    text_keys = [k for k in state if k.startswith("text_encoder.")]
    assert text_keys and all("layer.0." not in k for k in text_keys)
    # the resume checkpoint loads without unpickling code
    ckpt = read_checkpoint(medimp_run / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 1 and "optimizer_states" in ckpt and "medimp_rng" in ckpt


def test_exported_weights_are_trained(medimp_run, simulated_cohort, tiny_config, tmp_path) -> None:
    rand = pretrain(simulated_cohort, tmp_path / "rand", tiny_config("method=random_init"),
                    progress=False)
    a = load_file(medimp_run / "model.safetensors")
    b = load_file(rand / "model.safetensors")
    enc = [k for k in a if k.startswith("image_encoder.") and a[k].is_floating_point()]
    assert any(not torch.equal(a[k], b[k]) for k in enc)
    hist = pd.read_csv(rand / "history.csv")
    assert len(hist) == 0 and "val_loss" in hist.columns


def test_embed_tables(medimp_run, simulated_cohort, tmp_path) -> None:
    enc, prep = load_image_encoder(medimp_run)
    assert tuple(prep.shape) == (16, 16, 16)
    x = torch.randn(2, 3, 16, 16, 16)
    assert enc(x).shape == (2, enc.num_features)
    out = tmp_path / "emb.parquet"
    df = embed(medimp_run, simulated_cohort, out=out, batch_size=4)
    assert out.is_file()
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, df)
    cols = [c for c in df.columns if re.fullmatch(r"e\d+", c)]
    assert len(cols) == enc.num_features
    exams = pd.read_csv(simulated_cohort / "exams.csv", dtype={"patient_id": str})
    ex = df[df["level"] == "exam"]
    assert len(ex) == len(exams)
    pat = df[df["level"] == "patient"].set_index("patient_id")
    assert set(pat.index) == set(exams["patient_id"])
    # patient = mean of its exams
    p0 = pat.index[0]
    np.testing.assert_allclose(pat.loc[p0, cols].to_numpy(float),
                               ex[ex["patient_id"] == p0][cols].mean().to_numpy(float), rtol=1e-5)
    latest = df[df["level"] == "patient_latest"].set_index("patient_id")
    days = exams.set_index(["patient_id", "exam"])["days_post_transplant"]
    last_exam = exams.loc[exams.groupby("patient_id")["days_post_transplant"].idxmax()]
    for row in last_exam.itertuples():
        assert latest.loc[row.patient_id, "exam"] == row.exam
        assert days[(row.patient_id, row.exam)] == row.days_post_transplant
    assert np.isfinite(df[cols].to_numpy()).all()
    # projected embeddings are unit vectors of size embed_dim
    dfp = embed(medimp_run, simulated_cohort, projected=True)
    pcols = [c for c in dfp.columns if re.fullmatch(r"e\d+", c)]
    assert len(pcols) == 16
    norms = np.linalg.norm(dfp[dfp["level"] == "exam"][pcols].to_numpy(), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_text_tower_matches_training_space(medimp_run) -> None:
    tower = load_text_tower(medimp_run)
    z = tower(["The kidney donor was high years of age.", "The patient's GFR was low."])
    assert z.shape == (2, 16)
    np.testing.assert_allclose(z.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    assert not torch.allclose(z[0], z[1])
    img, _ = load_image_tower(medimp_run)
    sims = img(torch.randn(3, 3, 16, 16, 16)) @ z.T
    assert sims.shape == (3, 2) and torch.all(sims.abs() <= 1.0 + 1e-5)


@pytest.mark.parametrize("method", ["tabular_clip", pytest.param("medimp",
                                                                 marks=pytest.mark.slow)])
def test_same_seed_same_weights_and_exact_resume(method, simulated_cohort, tiny_config,
                                                 tmp_path) -> None:
    # fp32: the exactness checked here is fp32's (under precision "auto" an AMX CPU trains in
    # bf16, whose rounding turns the text cache's ~1e-8 differences into larger ones)
    cfg = tiny_config(f"method={method}", "precision=32")
    a = pretrain(simulated_cohort, tmp_path / "a", cfg, progress=False)
    a2 = pretrain(simulated_cohort, tmp_path / "a2", cfg, progress=False)
    wa, wa2 = load_file(a / "model.safetensors"), load_file(a2 / "model.safetensors")
    assert all(torch.equal(wa[k], wa2[k]) for k in wa)
    other = pretrain(simulated_cohort, tmp_path / "s1",
                     tiny_config(f"method={method}", "precision=32", "seed=1"), progress=False)
    wo = load_file(other / "model.safetensors")
    assert any(not torch.equal(wa[k], wo[k]) for k in wa if wa[k].is_floating_point())
    # 1 epoch, stop, resume for the second: the same weights as 2 epochs in one go
    b = pretrain(simulated_cohort, tmp_path / "b",
                 tiny_config(f"method={method}", "precision=32", "stop_after_epochs=1"),
                 progress=False)
    assert json.loads((b / "model.json").read_text())["epochs_trained"] == 1
    assert len(pd.read_csv(b / "history.csv")) == 1
    b = pretrain(simulated_cohort, b, cfg, resume=True, progress=False)
    assert json.loads((b / "model.json").read_text())["epochs_trained"] == 2
    wb = load_file(b / "model.safetensors")
    # bitwise without text; with text, the resumed process recomputes the frozen-prefix cache
    # on differently padded batches, which moves the last float bits (~1e-8)
    atol = 0.0 if method == "tabular_clip" else 1e-6
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=atol, msg=k)
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    np.testing.assert_allclose(ha["train_loss"], hb["train_loss"], rtol=1e-6)


@pytest.mark.parametrize("method", ["image_ssl", "tabular_clip"])
def test_baselines_train_and_embed(method, simulated_cohort, tiny_config, tmp_path) -> None:
    over = ["epochs=1"]
    if method == "image_ssl":
        over.append("augment={}")
    run = pretrain(simulated_cohort, tmp_path / method, tiny_config(f"method={method}", *over),
                   progress=False)
    info = load_run_info(run)
    assert info["method"] == method
    hist = pd.read_csv(run / "history.csv")
    assert len(hist) == 1 and np.isfinite(hist["train_loss"]).all()
    if method == "tabular_clip":
        # one standardised column + a missing indicator per numeric variable of the prompts
        assert "donor_age" in info["tabular"]["columns"]
        assert "donor_age:missing" in info["tabular"]["columns"]
        assert any(k.startswith("tabular_encoder.") for k in load_file(run / "model.safetensors"))
    df = embed(run, simulated_cohort)
    assert (df["level"] == "exam").sum() > 0
    with pytest.raises(ValueError, match="no text tower"):
        load_text_tower(run)


def test_same_content_mask_ids_follow_prompt_words(simulated_cohort, tiny_config,
                                                   tmp_path) -> None:
    from medimp.data import read_cohort
    from medimp.prompts import exam_words
    from medimp.train.datamodule import PretrainDataModule

    cfg = tiny_config("loss.same_content_mask=true", "epochs=1")
    dm = PretrainDataModule(simulated_cohort, cfg)
    cohort = read_cohort(simulated_cohort)
    content = dm.objective.content
    keys = list(content)
    assert len(set(content.values())) < len(keys)  # coarse bins: exams share descriptions
    for k1 in keys[:15]:
        for k2 in keys[:15]:
            same_words = exam_words(cohort, *k1) == exam_words(cohort, *k2)
            assert (content[k1] == content[k2]) == same_words
    run = pretrain(simulated_cohort, tmp_path / "run", cfg, progress=False)
    assert (run / "model.safetensors").is_file()


def test_tabular_features_obey_the_prompts_leakage_guard(simulated_cohort, tmp_path) -> None:
    # A variable known only at follow-up must not reach tabular_clip's tower either: it is
    # missing (indicator 1, value 0) for every exam, exactly as the prompts drop it.
    import shutil

    from medimp.data import read_cohort
    from medimp.study import Bin, TextVariable, load_study, save_study
    from medimp.train.datamodule import TabularFeaturizer

    cohort_dir = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, cohort_dir)
    study = load_study(cohort_dir / "study.yaml")
    late = TextVariable(name="late_age", table="patients", column="recipient_age",
                        known_at="followup", bins=[Bin(label="young", upper=50), Bin(label="old")],
                        slot="late", template="The recipient was {late}.")
    save_study(study.model_copy(update={"variables": [*study.variables, late]}),
               cohort_dir / "study.yaml")
    cohort = read_cohort(cohort_dir)
    keys = cohort.exam_keys()
    feat = TabularFeaturizer().fit(cohort, keys)
    x = feat.transform(cohort, keys)
    col = feat.columns_.index("late_age")
    assert np.all(x[:, col] == 0.0)
    assert np.all(x[:, feat.columns_.index("late_age:missing")] == 1.0)
    # the guard does not blank the legitimate variables
    assert np.any(x[:, feat.columns_.index("gfr")] != 0.0)


@pytest.mark.slow  # two 2-epoch runs, one with 2 loader processes: ~30 s on 2 shared cores
def test_persistent_workers_and_memory_layer_change_nothing(simulated_cohort, tiny_config,
                                                            tmp_path) -> None:
    """Loader workers that outlive the epoch still augment epoch 2 as epoch 2 (the epoch
    reaches them through shared memory), and the in-memory layer serves the same exams: the
    weights are bitwise those of one process reading the disk cache every time."""
    over = ("method=image_ssl", "augment={}", "precision=32")
    a = pretrain(simulated_cohort, tmp_path / "a", tiny_config(*over, "in_memory=false"),
                 progress=False)
    b = pretrain(simulated_cohort, tmp_path / "b",
                 tiny_config(*over, "num_workers=2", "in_memory=true"), progress=False)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    assert list(ha["train_loss"]) == list(hb["train_loss"])
