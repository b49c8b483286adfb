"""``ExamDataset``: a torch Dataset of preprocessed (and optionally augmented) exams.

In ``"stack"`` mode (default) one item is one (patient, exam): the phases are channels and a
boolean ``phase_mask`` says which were acquired (a missing phase is a zero channel). In
``"single"`` mode one item is one volume (the original MEDIMP mode), with ``C = 1``.

Preprocessed exams come from a :class:`medimp.data.PreprocessCache` (default
``<cohort>/.medimp_cache``), so only the first epoch reads and resamples images.

Augmentation is random but reproducible. Each item draws from its own seed:

* after ``set_epoch(e)``: ``(seed, e, index)`` — the same whatever the number of workers or the
  order of the sampler;
* otherwise: ``(seed, index, a draw from torch's generator)`` — new augmentations every epoch,
  reproducible under ``torch.manual_seed`` / Lightning's ``seed_everything`` for a given
  ``num_workers`` (torch seeds each worker from the main generator).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from torch.utils.data import Dataset

from medimp.data.pipeline.augment import AugmentConfig, Reseeder, build_augment
from medimp.data.pipeline.cache import PreprocessCache
from medimp.data.pipeline.cache_dir import resolve_cache_dir
from medimp.data.pipeline.preprocess import (
    PreprocessConfig,
    PreprocessError,
    exam_phases,
    load_exam_volume,
)

__all__ = ["ExamDataset"]


class ExamDataset(Dataset):
    """Preprocessed exams of a cohort as ``{"image", "phase_mask", "patient_id", "exam", ...}``.

    Args:
        cohort: a ``Cohort`` (from ``medimp.data.read_cohort``) or the path of a cohort folder.
        preprocess: the preprocessing parameters (default ``PreprocessConfig()``).
        cache_dir: where preprocessed exams are cached; ``None`` = ``<cohort>/.medimp_cache``,
            or the user's cache folder when the cohort cannot be written (a warning says so;
            :func:`medimp.data.pipeline.cache.resolve_cache_dir`);
            ``False`` = no cache (every item is read and preprocessed again).
        augment: an :class:`AugmentConfig` (or ``None`` for no augmentation).
        seed: base seed of the augmentations.
        keys: the (patient_id, exam) pairs to use, e.g. one side of a split; default all exams
            with at least one image (``cohort.exam_keys()``).
        memory: a dict used as an in-memory layer above the disk cache: each exam read once
            is kept there (preprocessed, un-augmented), and datasets given the same dict share
            it (e.g. a run's two augmented views). ``None``: every read goes to the cache.

    The cache keys of the exams are computed once per dataset (``PreprocessCache``'s
    ``remember_keys``): a DICOM folder is walked once per run, not at every read.

    Items: ``image`` float32 ``[C, D, H, W]``, ``phase_mask`` bool ``[C]``, ``patient_id`` str,
    ``exam`` str, ``index`` int, and in "single" mode ``phase`` str. The default collate of a
    ``DataLoader`` batches them; the dataset pickles to workers (``num_workers > 0``).
    """

    def __init__(  # noqa: PLR0917 - positional order is the documented contract
        self,
        cohort: Any,
        preprocess: PreprocessConfig | None = None,
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        keys: Sequence[tuple[str, str]] | None = None,
        memory: dict[Any, Any] | None = None,
    ) -> None:
        if isinstance(cohort, str | os.PathLike):
            from medimp.data.cohort import read_cohort

            cohort = read_cohort(cohort)
        self.cohort = cohort
        self.preprocess = preprocess or PreprocessConfig()
        self.phases = exam_phases(self.preprocess, cohort.study.phase_names)
        available = [(str(p), str(e)) for p, e in cohort.exam_keys()]
        if keys is None:
            self.keys = available
        else:
            known = set(available)
            self.keys = [(str(p), str(e)) for p, e in keys]
            unknown = [k for k in self.keys if k not in known]
            if unknown:
                shown = ", ".join(f"patient {p} exam {e}" for p, e in unknown[:5])
                raise PreprocessError(
                    f"{len(unknown)} requested exam(s) have no image in {cohort.root}: {shown}; "
                    "pass keys from cohort.exam_keys()"
                )
        if self.preprocess.phase_mode == "stack":
            self.items: list[tuple[str, str, str | None]] = [(p, e, None) for p, e in self.keys]
        else:
            self.items = [
                (p, e, ph)
                for p, e in self.keys
                for ph in self.phases
                if cohort.volume_path(p, e, ph) is not None
            ]
        if cache_dir is False:
            self.cache: PreprocessCache | None = None
        else:
            self.cache = PreprocessCache(resolve_cache_dir(cohort.root, cache_dir),
                                         remember_keys=True)
        self.memory = memory
        self.augment = augment
        self._augment = build_augment(augment) if augment is not None else None
        self._reseed = Reseeder(self._augment) if self._augment is not None else None
        self.seed = int(seed)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Make the augmentations of this epoch a function of (seed, epoch, index) only.

        Call it in the main process before creating the epoch's DataLoader iterator (with
        ``persistent_workers=False``, the default) for augmentations that do not depend on
        the number of workers.
        """
        self._epoch = int(epoch)

    def _item_seed(self, index: int) -> int:
        if self._epoch is not None:
            entropy = [self.seed, self._epoch, index]
        else:
            entropy = [self.seed, index, int(torch.randint(0, 2**31 - 1, (1,)).item())]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The preprocessed, un-augmented ``(image, phase_mask)`` of item ``index``."""
        pid, exam, phase = self.items[index]
        hit = None if self.memory is None else self.memory.get((pid, exam))
        if hit is None:
            hit = load_exam_volume(self.cohort, pid, exam, self.preprocess, cache=self.cache)
            if self.memory is not None:
                image, mask = hit
                image.setflags(write=False)  # shared by every later read: never changed
                self.memory[(pid, exam)] = hit
        image, mask = hit
        if phase is not None:
            c = self.phases.index(phase)
            image, mask = image[c : c + 1], np.ones(1, dtype=bool)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        image, mask = self.load(index)
        tensor = torch.tensor(image, dtype=torch.float32)  # a writable copy
        mask_t = torch.from_numpy(np.array(mask, dtype=bool))
        if self._augment is not None:
            self._reseed(self._item_seed(index))  # = set_random_state(seed=...), cheaper
            # plain tensors, no MetaTensor bookkeeping: ~2x faster flips and blurs, and the
            # default collate gets ordinary tensors
            previous = get_track_meta()
            set_track_meta(False)
            try:
                out = self._augment({"image": tensor})["image"]
            finally:
                set_track_meta(previous)
            tensor = torch.as_tensor(out, dtype=torch.float32).contiguous()
            tensor[~mask_t] = 0.0  # a missing phase stays an all-zero channel
        pid, exam, phase = self.items[index]
        item: dict[str, Any] = {
            "image": tensor,
            "phase_mask": mask_t,
            "patient_id": pid,
            "exam": exam,
            "index": index,
        }
        if phase is not None:
            item["phase"] = phase
        return item

    def precompute(self, progress: bool = False) -> int:
        """Fill the cache for every exam (e.g. before training); return the number computed."""
        if self.cache is None:
            return 0
        before = self.cache.misses
        todo = list(dict.fromkeys((p, e) for p, e, _ in self.items))
        if progress:
            from rich.progress import track

            todo_iter = track(todo, description="Preprocessing exams")
        else:
            todo_iter = todo
        for pid, exam in todo_iter:
            load_exam_volume(self.cohort, pid, exam, self.preprocess, cache=self.cache)
        self.cache.flush()
        return self.cache.misses - before
