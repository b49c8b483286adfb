"""The benchmark harness, shared by every script in benchmarks/.

- :func:`timeit` (warm-up calls, then timed repeats: best, median, mean, every time) and
  :class:`Timer` (one timed block);
- :func:`environment`: what the figures depend on (machine, CPUs, load, library versions,
  threads, commit), recorded in every result;
- :func:`write_result`: ``benchmarks/results/<name>.json`` written atomically, with the
  environment, and printed as an aligned table.

Each script also says, as module constants read by ``benchmarks/run_all.py`` (``make bench``)
without importing it: ``BENCH_MINUTES`` (about how long a run without arguments takes on the
2-core machine; None: it does not run without arguments, ``BENCH_SKIP`` says why) and
``BENCH_SMALL`` (the arguments of its smallest configuration, ``run_all.py --smallest``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medimp._io import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    """Seconds of the timed calls (warm-up calls excluded)."""

    seconds: list[float]
    warmup: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.seconds)

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"best_s": round(self.best, digits), "median_s": round(self.median, digits),
                "mean_s": round(self.mean, digits), "repeats": len(self.seconds),
                "warmup": self.warmup, "all_s": [round(x, digits) for x in self.seconds]}


def timeit(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1,
           setup: Callable[[], Any] | None = None) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``setup`` before
    each call, untimed). The best time is the least disturbed by other load."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    out = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return Timing(out, warmup)


@dataclass
class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0
    _t0: float = field(default=0.0, repr=False)

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False, cwd=Path(__file__).parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What a benchmark's figures depend on, recorded beside them."""
    import numpy

    import medimp

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    env: dict[str, Any] = {
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": _cpu_model(), "cpus": cpus,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
        "medimp": medimp.__version__, "commit": _git_commit(), "numpy": numpy.__version__,
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "MEDIMP_THREADS") if k in os.environ},
        "argv": sys.argv[1:],
    }
    if "torch" in sys.modules:  # only when the script uses it (importing torch takes seconds)
        import torch

        env.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available()})
    return env


def write_result(name: str, result: dict[str, Any], out: Path | None = None, *,
                 show: bool = True) -> Path:
    """Write ``result`` (plus its ``environment``) to ``results/<name>.json`` (or ``out``),
    atomically, and print it as an aligned key/value table."""
    path = Path(out) if out is not None else RESULTS / f"{name}.json"
    record = {**result, "environment": result.get("environment") or environment()}
    atomic_write_text(path, json.dumps(record, indent=2, default=_jsonable) + "\n")
    if show:
        width = max(map(len, result), default=0)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
    print(f"-> {path}")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Timing):
        return value.to_dict()
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def bert_folder(out: Path, layers: int = 12) -> Path:
    """A BERT-base-sized encoder (hidden 768, 12 heads) with random weights, saved as a local
    model folder; nothing is downloaded (the tokenizer is MiniLM's packaged one: the same
    uncased BERT vocabulary). MEDIMP's text encoder had this shape (Bio_ClinicalBERT)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from medimp._textmodel import default_text_model_path

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                     intermediate_size=3072)
    BertModel(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_text_model_path()).save_pretrained(out)
    return out


def add_setup_args(ap: Any, patients: int = 16, work: str = "medimp-bf16") -> None:
    """The options shared by the training-step benchmarks (bf16_nan.py, versus_original.py)."""
    import tempfile

    ap.add_argument("--patients", type=int, default=patients)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / work)


def bert_and_cohort(work: Path, patients: int, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    """The BERT-sized text encoder folder and a simulated cohort in ``work``, both kept there
    and reused by the next run (the cohort's name holds its size and shape)."""
    from medimp.simulate import simulate_cohort

    work.mkdir(parents=True, exist_ok=True)
    cohort = work / f"cohort{patients}_{'x'.join(map(str, shape))}"
    if not (cohort / "manifest.csv").is_file():
        simulate_cohort(cohort, patients, shape=tuple(shape), seed=0, overwrite=True, workers=1,
                        progress=False)
    return bert_folder(work / "bert12"), cohort
