"""``medimp export`` (TorchScript, ONNX, MONAI bundle) against medimp's own embeddings, the
learning rate in the loggers, and ``embed --tensorboard``'s projector files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.train import TrainError, embed, pretrain
from medimp.train.export import export_run


@pytest.fixture(scope="module")
def run(simulated_cohort: Path, tiny_config, tmp_path_factory) -> Path:
    """A tiny tabular_clip run whose encoder sees the phase mask as channels (the harder
    input to export), 2 epochs."""
    out = tmp_path_factory.mktemp("export") / "run"
    return pretrain(simulated_cohort, out, tiny_config("method=tabular_clip",
                                                       "phase_mask=channels"), progress=False)


@pytest.fixture(scope="module")
def medimp_embeddings(run: Path, simulated_cohort: Path, train_cache: Path) -> pd.DataFrame:
    df = embed(run, simulated_cohort, cache_dir=train_cache)
    return df[df["level"] == "exam"].reset_index(drop=True)


def _exams(cohort: Path, run: Path, cache: Path) -> list[tuple[tuple[str, str], np.ndarray,
                                                               np.ndarray]]:
    """Every exam of the cohort preprocessed as the run's model.json says (the exported
    model's input): (key, image [C, D, H, W], phase mask [C] as 0/1)."""
    from medimp.data import ExamDataset, read_cohort
    from medimp.train import load_image_encoder

    _, prep = load_image_encoder(run)
    c = read_cohort(cohort)
    ds = ExamDataset(c, prep, cache_dir=cache, augment=None, seed=0)
    out = []
    for i in range(len(ds)):
        item = ds[i]
        out.append(((item["patient_id"], item["exam"]), np.asarray(item["image"], np.float32),
                    np.asarray(item["phase_mask"], np.float32)))
    return out


def _want(df: pd.DataFrame, key: tuple[str, str]) -> np.ndarray:
    row = df[(df["patient_id"] == key[0]) & (df["exam"] == key[1])]
    cols = [c for c in df.columns if c.startswith("e") and c[1:].isdigit()]
    return row[cols].to_numpy(np.float32)[0]


def test_torchscript_export_gives_medimps_embeddings(run, simulated_cohort, train_cache,
                                                     medimp_embeddings, tmp_path) -> None:
    record = export_run(run, tmp_path / "ts", "torchscript", cohort=simulated_cohort,
                        cache_dir=train_cache)
    assert record["check"]["exams"] == len(medimp_embeddings) and \
        record["check"]["max_abs_diff"] <= 1e-5
    assert record["phase_mask_mode"] == "channels"
    # reloaded here, independently of the export's own check, with batch sizes 1 and 5
    model = torch.jit.load(str(tmp_path / "ts" / "model.ts"))
    exams = _exams(simulated_cohort, run, train_cache)
    with torch.no_grad():
        for chunk in (exams[:1], exams[1:6]):
            got = model(torch.from_numpy(np.stack([x for _, x, _ in chunk])),
                        torch.from_numpy(np.stack([m for _, _, m in chunk]))).numpy()
            want = np.stack([_want(medimp_embeddings, k) for k, _, _ in chunk])
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert any(m.min() == 0 for _, _, m in exams)  # a missing phase was among them
    saved = json.loads((tmp_path / "ts" / "medimp_export.json").read_text())
    assert saved["preprocess"]["shape"] == [16, 16, 16]
    assert saved["inputs"]["image"]["channels"] == ["pre", "arterial", "tubular"]
    card = (tmp_path / "ts" / "MODEL_CARD.md").read_text()
    assert "tabular_clip" in card and "[6.0, 6.0, 6.0] mm" in card and "33 exams" not in card
    assert f"{record['check']['exams']} exams" in card and "(`medimp embed`) on" in card


@pytest.mark.slow
def test_onnx_export_gives_medimps_embeddings(run, simulated_cohort, train_cache,
                                              medimp_embeddings, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    record = export_run(run, tmp_path / "onnx", "onnx", cohort=simulated_cohort,
                        cache_dir=train_cache, projected=True)
    assert record["check"]["max_abs_diff"] <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    projected = embed(run, simulated_cohort, cache_dir=train_cache, projected=True)
    projected = projected[projected["level"] == "exam"]
    exams = _exams(simulated_cohort, run, train_cache)[:3]
    got = session.run(None, {"image": np.stack([x for _, x, _ in exams]),
                             "phase_mask": np.stack([m for _, _, m in exams])})[0]
    want = np.stack([_want(projected, k) for k, _, _ in exams])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_monai_bundle_loads_and_runs_with_monais_tools(run, simulated_cohort, train_cache,
                                                       medimp_embeddings, tmp_path) -> None:
    from monai.bundle import ConfigParser
    from monai.bundle import run as bundle_run

    out = tmp_path / "bundle"
    export_run(run, out, "bundle", cohort=simulated_cohort, cache_dir=train_cache)
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 3
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == \
        medimp_embeddings.shape[1] - 3
    parser = ConfigParser()
    parser.read_meta(str(out / "configs" / "metadata.json"))
    parser.read_config(str(out / "configs" / "inference.json"))
    parser["bundle_root"] = str(out)
    network = parser.get_parsed_content("network")
    key, x, m = _exams(simulated_cohort, run, train_cache)[4]
    with torch.no_grad():
        got = network(torch.from_numpy(x)[None], torch.from_numpy(m)[None]).numpy()[0]
    np.testing.assert_allclose(got, _want(medimp_embeddings, key), atol=1e-5, rtol=0)
    # MONAI's own runner: embeds the bundle's sample exams into output_dir
    bundle_run(run_id="run", init_id="initialize", config_file=str(out / "configs" /
               "inference.json"), meta_file=str(out / "configs" / "metadata.json"),
               bundle_root=str(out), output_dir=str(tmp_path / "eval"))
    assert torch.is_grad_enabled()  # running the bundle leaves the caller's autograd as it was
    written = sorted((tmp_path / "eval").glob("*.npy"))
    samples = sorted((out / "sample").glob("*.npz"))
    assert [f.stem for f in written] == [f.stem for f in samples] == ["sample0", "sample1"]
    for f, s in zip(written, samples, strict=True):
        d = np.load(s)
        with torch.no_grad():
            want = network(torch.from_numpy(d["image"])[None],
                           torch.from_numpy(d["phase_mask"])[None]).numpy()[0]
        np.testing.assert_allclose(np.load(f), want, atol=1e-6, rtol=0)
    assert np.load(samples[1])["phase_mask"].tolist() == [1.0, 1.0, 0.0]
    # a bundle is made to be shared: no patient's ID in a file name and no exam of the cohort
    ids = set(medimp_embeddings["patient_id"])
    assert not any(pid in p.name for p in out.rglob("*") for pid in ids)
    exams = [x for _, x, _ in _exams(simulated_cohort, run, train_cache)]
    for s in samples:
        assert not any(np.array_equal(np.load(s)["image"], x) for x in exams)
    assert (out / "docs" / "README.md").read_text() == (out / "MODEL_CARD.md").read_text()


def test_export_refuses_and_writes_nothing(run, simulated_cohort, train_cache,
                                           tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(TrainError, match="not empty"):
        export_run(run, mine, "torchscript")
    with pytest.raises(TrainError, match=r"holds .*notes\.txt"):
        export_run(run, mine, "torchscript", overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(TrainError, match="an input of this command"):
        export_run(run, run, "torchscript", overwrite=True)
    assert (run / "model.safetensors").is_file()
    with pytest.raises(TrainError, match="inside the run folder"):
        export_run(run, run / "export", "torchscript")
    assert not (run / "export").exists()
    # without a cohort the check runs on random inputs (a missing phase among them)
    record = export_run(run, tmp_path / "random", "torchscript")
    assert record["check"]["on"] == "random inputs" and record["check"]["exams"] == 5
    assert record["check"]["max_abs_diff"] <= 1e-5
    card = (tmp_path / "random" / "MODEL_CARD.md").read_text()
    assert "medimp embed`) on" not in card and "5 inputs (random inputs)" in card
    with pytest.raises(TrainError, match="unknown export format"):
        export_run(run, tmp_path / "x", "pickle")


def test_an_export_outside_the_tolerance_is_not_written(run, tmp_path) -> None:
    """ONNX Runtime's kernels round differently from torch's (a few 1e-8): under an absurdly
    strict tolerance the check fails, and nothing is left behind."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    with pytest.raises(TrainError, match="differs from medimp's embeddings by up to"):
        export_run(run, tmp_path / "strict", "onnx", atol=1e-15)
    assert list(tmp_path.iterdir()) == []


def test_export_command(run, simulated_cohort, train_cache, tmp_path) -> None:
    res = CliRunner().invoke(app, ["export", "--run", str(run), "--format", "torchscript", "--out",
                                   str(tmp_path / "ts"), "--cohort", str(simulated_cohort),
                                   "--cache", str(train_cache)])
    assert res.exit_code == 0, res.output
    assert "equal medimp's on" in res.output and (tmp_path / "ts" / "model.ts").is_file()
    res = CliRunner().invoke(app, ["export", "--run", str(run), "--format", "tflite", "--out",
                                   str(tmp_path / "x")])
    assert res.exit_code == 2 and "'tflite' is not one of" in res.output, res.output


def test_learning_rate_reaches_csv_and_tensorboard(run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = pd.read_csv(run / "logs" / "csv" / "metrics.csv")
    lr_cols = [c for c in metrics.columns if c.startswith("lr-")]
    assert lr_cols, list(metrics.columns)
    lr = metrics[lr_cols[0]].dropna().to_numpy()
    history = pd.read_csv(run / "history.csv")
    assert len(lr) >= int(history["step"].iloc[-1]) - 1 and lr.max() > lr[-1] > 0
    acc = EventAccumulator(str(run / "logs" / "tb"))
    acc.Reload()
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("lr-")]
    assert tags
    values = np.array([e.value for e in acc.Scalars(tags[0])])
    np.testing.assert_allclose(values, lr, rtol=1e-6)
    # warm-up then cosine decay: the peak is the configured lr (tiny config: 1e-3)
    assert values.max() == pytest.approx(1e-3, rel=1e-6)  # float32 in the event file
    assert int(np.argmax(values)) not in (0, len(values) - 1)


def test_embed_writes_the_tensorboard_projector(run, simulated_cohort, train_cache,
                                                tmp_path) -> None:
    tb = tmp_path / "tb"
    args = ["embed", "--run", str(run), "--cohort", str(simulated_cohort), "--cache",
            str(train_cache), "--tensorboard", str(tb)]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "e.parquet")])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(tmp_path / "e.parquet")
    config = (tb / "projector_config.pbtxt").read_text()
    assert "tensors.tsv" in config and "metadata.tsv" in config
    folder = next(p.parent for p in tb.rglob("tensors.tsv"))
    meta = pd.read_csv(folder / "metadata.tsv", sep="\t", dtype=str)
    assert list(meta.columns) == ["patient_id", "exam", "level"]
    assert list(meta["patient_id"]) == list(df["patient_id"])
    assert list(meta["level"]) == list(df["level"])
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t", dtype=np.float32)
    cols = [c for c in df.columns if c.startswith("e") and c[1:].isdigit()]
    np.testing.assert_allclose(tensors, df[cols].to_numpy(np.float32), rtol=1e-5, atol=1e-6)
    # a second write into the same folder is refused (the projector would list both)
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "e2.parquet")])
    assert res.exit_code != 0 and "not an empty folder" in res.output
    # refused before embedding anything: no table written either (it used to be written first)
    assert not (tmp_path / "e2.parquet").exists()
