"""How well does the default text encoder tell the distinct clinical descriptions apart?

For each wording of the prompts (MEDIMP's templates with the rules paraphrase bank, MEDIMP's own
``gpt_augs.txt``, the clinician wording, the clinician wording with finer bins), the distinct
descriptions (sets of binned facts) of the demo cohort's exams are written in N paraphrase
variants and embedded with the frozen all-MiniLM-L6-v2 (mean pooling, as in training). The
score is the nearest-description accuracy (``medimp.prompts.wording.
nearest_description_accuracy``): a variant is right when its embedding is closest to its own
description's centroid (centroids computed without that variant). Chance is 1 / K.

Writes benchmarks/results/prompt_separation.json and docs/figures/prompt_separation.png.

    PYTHONPATH=src python benchmarks/prompt_separation.py [--patients 80]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_result

from medimp.data import read_cohort
from medimp.prompts import build_prompts_from_tables, exam_words
from medimp.prompts.wording import nearest_description_accuracy, study_for
from medimp.simulate import simulate_cohort

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 2
BENCH_SMALL = ['--patients', '10']

ROOT = Path(__file__).resolve().parents[1]
GPT_AUGS = ROOT / "tests" / "fixtures" / "medimp_original" / "dummy_dataframes" / "gpt_augs.txt"
FIGURE = ROOT / "docs" / "figures" / "prompt_separation.png"

WORDINGS = {
    "original (rules bank)": ("original", None),
    "original (gpt_augs.txt)": ("original", GPT_AUGS),
    "clinician": ("clinician", None),
    "clinician, fine bins": ("clinician_fine", None),
}


def descriptions(cohort, wording: str, bank) -> tuple[list[tuple], list[list[str]]]:
    """Distinct fact sets of the cohort's exams and their N prompt variants."""
    study = study_for(cohort.study, wording)
    keys = [(str(p), str(e)) for p, e in cohort.exam_keys()]
    df = build_prompts_from_tables(study, cohort.exams, cohort.patients, bank=bank, seed=0,
                                   keys=keys)
    by_key = {k: list(g.sort_values("variant")["prompt"])
              for k, g in df.groupby(["patient_id", "exam"])}
    seen: dict[tuple, list[str]] = {}
    for key in keys:
        facts = tuple(sorted(exam_words(study, cohort.exams, cohort.patients, *key).items(),
                             key=lambda kv: kv[0]))
        seen.setdefault(facts, by_key[key])
    return list(seen), list(seen.values())


@torch.no_grad()
def embed_texts(encoder, texts: list[str]) -> np.ndarray:
    out = [encoder(texts[i:i + 64]).float().numpy() for i in range(0, len(texts), 64)]
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cohort", type=Path, default=None, help="Use this cohort instead.")
    args = ap.parse_args()

    from medimp.models import create_text_encoder

    cohort_dir = args.cohort
    if cohort_dir is None:
        cohort_dir = Path(tempfile.mkdtemp(prefix="medimp-sep-")) / "cohort"
        simulate_cohort(cohort_dir, args.patients, shape=(16, 16, 16), seed=args.seed,
                        progress=False)
    cohort = read_cohort(cohort_dir)
    encoder = create_text_encoder(None, freeze="all", cache=False).eval()
    result: dict[str, dict] = {}
    t0 = time.perf_counter()
    for label, (wording, bank) in WORDINGS.items():
        _facts, variants = descriptions(cohort, wording, bank)
        n = min(len(v) for v in variants)
        texts = [t for v in variants for t in v[:n]]
        emb = embed_texts(encoder, texts).reshape(len(variants), n, -1)
        acc = nearest_description_accuracy(emb)
        unit = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
        cent = unit.mean(1)
        cent /= np.linalg.norm(cent, axis=-1, keepdims=True)
        sims = cent @ cent.T
        off = sims[~np.eye(len(sims), dtype=bool)]
        result[label] = {"descriptions": len(variants), "variants": n,
                         "accuracy": round(acc, 4), "chance": round(1 / len(variants), 4),
                         "mean_centroid_cosine_between_descriptions": round(float(off.mean()),
                                                                            4),
                         "example": variants[0][0]}
        print(f"{label:<26} K={len(variants):3d} N={n} accuracy {acc:.3f} "
              f"(chance {1 / len(variants):.3f}); between-description cosine "
              f"{off.mean():.3f}", flush=True)
    _figure(result)
    write_result("prompt_separation", {"cohort": {"patients": args.patients,
                                                   "seed": args.seed},
                                       "encoder": "all-MiniLM-L6-v2, frozen, mean pooling",
                                       "seconds": round(time.perf_counter() - t0, 1),
                                       "wordings": result})


def _figure(result: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result)
    acc = [result[k]["accuracy"] for k in labels]
    chance = [result[k]["chance"] for k in labels]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    x = np.arange(len(labels))
    ax.bar(x, acc, color="#4c72b0", label="nearest-description accuracy")
    ax.scatter(x, chance, color="#c44e52", marker="_", s=600, label="chance (1/K)", zorder=3)
    for i, k in enumerate(labels):
        ax.text(i, acc[i] + 0.02, f"{acc[i]:.2f}\nK={result[k]['descriptions']}",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [k.replace(" (", "\n(") for k in labels], fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy")
    ax.set_title("Frozen MiniLM: does each paraphrase land nearest its own description?",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
