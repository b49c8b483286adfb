"""Retrieval and zero-shot with a real (bag-of-words) text embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer

from medimp.evaluate.retrieval import gfr_bin_prompts, image_text_recall, zero_shot_gfr
from medimp.study import default_study

_VEC = HashingVectorizer(n_features=256, alternate_sign=False, norm="l2")


def tower(texts: list[str]) -> np.ndarray:
    return _VEC.transform(texts).toarray()


def test_recall_at_k() -> None:
    study = default_study()
    texts = [gfr_bin_prompts(study, e)[1][b] for e in study.exam_names for b in range(5)]
    rng = np.random.default_rng(0)
    aligned = tower(texts) + rng.normal(0, 0.02, (len(texts), 256))
    rec = image_text_recall(aligned, texts, tower)
    assert rec[1] > 0.9 and rec[10] == 1.0
    rand = image_text_recall(rng.normal(size=(len(texts), 256)), texts, tower)
    assert rand[1] < 0.3 and rand[1] <= rand[5] <= rand[10]


def test_zero_shot_gfr_bins() -> None:
    study = default_study()
    exams = pd.DataFrame({"exam": ["D15", "D30", "M3", "M12", "D15"],
                          "egfr": [10.0, 25.0, 40.0, 55.0, 90.0]})
    labels, _ = gfr_bin_prompts(study, "D15")
    truth_bins = ["extremely low", "very low", "low", "medium", "high"]
    images = np.stack([tower([gfr_bin_prompts(study, e)[1][labels.index(b)]])[0]
                       for e, b in zip(exams["exam"], truth_bins, strict=True)])
    acc, bacc, chance, n = zero_shot_gfr(images, exams, study, tower)
    assert acc == 1.0 and bacc == 1.0 and chance == 0.2 and n == 5


def test_zero_shot_embeds_each_checkup_prompt_set_once() -> None:
    study = default_study()
    exams = pd.DataFrame({"exam": ["D15", "D30", "D15", "D15", "D30"],
                          "egfr": [10.0, 25.0, 40.0, 55.0, 90.0]})
    calls: list[list[str]] = []

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return tower(texts)

    images = tower([gfr_bin_prompts(study, e)[1][0] for e in exams["exam"]])
    assert zero_shot_gfr(images, exams, study, counting) == zero_shot_gfr(images, exams, study,
                                                                          tower)
    assert calls == [gfr_bin_prompts(study, "D15")[1], gfr_bin_prompts(study, "D30")[1]]
