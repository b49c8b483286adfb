"""From a cohort to model inputs: preprocessing, cache, augmentation, datasets, splits, features.

* :mod:`~medimp.data.pipeline.preprocess` (``PreprocessConfig``, ``load_exam_volume``) and its
  on-disk cache (``cache``, ``cache_dir``, ``_hashing``), checked up front by ``_preflight``;
* :mod:`~medimp.data.pipeline.dataset` (``ExamDataset``), :mod:`~medimp.data.pipeline.augment`
  and :mod:`~medimp.data.pipeline.phases` (how a missing phase reaches an encoder);
* :mod:`~medimp.data.pipeline.splits` (patient-grouped folds) and
  :mod:`~medimp.data.pipeline.features` (clinical features known at each exam).

Most of these import torch, MONAI or scikit-learn; the package itself imports nothing, and
``medimp.data`` loads them on first use.
"""
