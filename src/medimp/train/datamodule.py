"""Data for pretraining: patient-grouped split, the objective's item fields, patient-aware order.

Batches are dicts (see :mod:`medimp.train.module`); what an objective adds to each item (prompts,
clinical features, a second view) comes from its ``item_fields`` (``medimp.train.objectives``).
The training order is drawn by :class:`PatientInterleavedSampler`: each epoch, every patient's
exams are shuffled and dealt round by round (one exam of each patient per round, patients
shuffled per round), so a batch rarely holds two exams of one patient; the loss masks those
that remain.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from medimp.data import holdout_split, read_cohort
from medimp.data.pipeline.features import ClinicalFeatures
from medimp.data.pipeline.phases import drop_phases, encoder_channels, encoder_input
from medimp.train.config import ConfigError, PretrainConfig, TrainError
from medimp.train.objectives import ItemFields, Objective, PretrainData, create_objective

__all__ = [
    "PatientInterleavedSampler",
    "PretrainDataModule",
    "TabularFeaturizer",
    "collate",
    "earliest_exams",
    "split_patients",
]


def earliest_exams(cohort: Any, keys: Sequence[tuple[str, str]], k: int
                   ) -> list[tuple[str, str]]:
    """Each patient's first ``k`` exams of ``keys``, in the cohort's exam order (days after
    transplant, then study order: ``Cohort.sort_exams``); ``keys``' order is kept."""
    count: dict[str, int] = {}
    keep = set()
    for key in cohort.sort_exams(keys):
        count[key[0]] = count.get(key[0], 0) + 1
        if count[key[0]] <= k:
            keep.add(key)
    return [(str(p), str(e)) for p, e in keys if (str(p), str(e)) in keep]


def split_patients(patients: Sequence[str], val_fraction: float, seed: int
                   ) -> tuple[list[str], list[str]]:
    """Seeded patient-level hold-out: (train patients, validation patients).

    The draw is ``medimp.data.holdout_split``'s; at least 2 patients always stay in training
    (a contrastive loss needs negatives).
    """

    patients = sorted(set(patients))
    if len(patients) < 2:
        raise TrainError(f"the cohort has {len(patients)} patient(s) with images; contrastive "
                         "pretraining needs at least 2 (negatives come from other patients)")
    if val_fraction <= 0 or len(patients) < 3:
        return patients, []
    _, val_idx = holdout_split(patients, test_size=val_fraction, seed=seed)
    val = sorted(patients[i] for i in val_idx)
    while len(patients) - len(val) < 2:
        val.pop()
    val_set = set(val)
    return [p for p in patients if p not in val_set], val


class PatientInterleavedSampler(Sampler[int]):
    """Indices ordered so that consecutive items come from different patients.

    Per epoch (``set_epoch``), seeded by (seed, epoch): shuffle each patient's items, then deal
    rounds — round k holds the k-th item of every patient that has one, patients shuffled.
    ``fixed=True`` keeps epoch 0's order (validation).
    """

    def __init__(self, groups: Sequence[int], seed: int = 0, fixed: bool = False,
                 epoch_source: Callable[[], int] | None = None) -> None:
        self.groups = np.asarray(groups)
        self.seed = int(seed)
        self.fixed = fixed
        self.epoch = 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def current_epoch(self) -> int:
        """The epoch whose order ``__iter__`` draws.

        ``epoch_source`` (the trainer's epoch counter) wins over ``set_epoch``: Lightning builds
        the first iterator of a (resumed) run before it calls ``set_epoch``.
        """
        return int(self.epoch_source()) if self.epoch_source is not None else self.epoch

    def order(self) -> list[int]:
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.current_epoch()])
        by_patient: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups.tolist()):
            by_patient.setdefault(g, []).append(i)
        lists = [list(rng.permutation(v)) for _, v in sorted(by_patient.items())]
        out: list[int] = []
        for k in range(max((len(v) for v in lists), default=0)):
            rnd = [v[k] for v in lists if len(v) > k]
            out.extend(int(rnd[j]) for j in rng.permutation(len(rnd)))
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return len(self.groups)


class TabularFeaturizer:
    """The prompts' clinical variables as numbers, for the ``tabular_clip`` baseline.

    The values known at each exam come from :class:`medimp.data.pipeline.features.ClinicalFeatures`
    (the one clinical feature builder; a value not known at an exam is missing there).
    Numeric variables are standardised with training-patient statistics, categorical ones
    one-hot encoded; a missing value is 0 plus a 0/1 indicator column. Follows scikit-learn's
    contract (``fit`` returns self, learned state ends in ``_``).
    """

    def __init__(self, missing_indicator: bool = True) -> None:
        self.missing_indicator = missing_indicator

    def fit(self, cohort: Any, keys: Sequence[tuple[str, str]]) -> TabularFeaturizer:

        self.features_ = ClinicalFeatures("variables", sep="=").fit(cohort, keys)
        table = self.features_.transform(cohort, keys)
        self.columns_: list[str] = []
        self.stats_: dict[str, dict[str, Any]] = {}
        for f, (name, cols) in zip(self.features_.features_, self.features_.groups_,
                                   strict=True):
            if f.kind == "numeric":
                x = table[name]
                mean = float(np.nanmean(x)) if x.notna().any() else 0.0
                std = float(np.nanstd(x)) if x.notna().sum() > 1 else 1.0
                self.stats_[name] = {"kind": "numeric", "mean": mean, "std": std or 1.0}
            else:
                self.stats_[name] = {"kind": "categorical", "categories": list(f.categories)}
            self.columns_.extend(cols)
            if self.missing_indicator:
                self.columns_.append(f"{name}:missing")
        return self

    def transform(self, cohort: Any, keys: Sequence[tuple[str, str]]) -> np.ndarray:
        table = self.features_.transform(cohort, keys)
        cols = []
        for name, group in self.features_.groups_:
            st = self.stats_[name]
            x = table[group].to_numpy(dtype=float)
            miss = np.isnan(x).all(axis=1)
            if st["kind"] == "numeric":
                cols.append(np.where(miss, 0.0, (x[:, 0] - st["mean"]) / st["std"]))
            else:
                cols.extend(np.nan_to_num(x[:, k], nan=0.0) for k in range(x.shape[1]))
            if self.missing_indicator:
                cols.append(miss.astype(float))
        return np.stack(cols, axis=1).astype(np.float32)

    @property
    def n_features(self) -> int:
        return len(self.columns_)


class _Items(Dataset):
    """The items of ``medimp.data.ExamDataset`` plus the objective's fields."""

    def __init__(self, base: Any, patient_index: dict[str, int], fields: ItemFields, *,
                 phase_mask: str = "zero", phase_dropout: float = 0.0, seed: int = 0) -> None:
        self.base = base
        self.patient_index = patient_index
        self.fields = fields
        self.phase_mask, self.phase_dropout, self.seed = phase_mask, phase_dropout, seed
        self.epoch = 0
        # the epoch as the main process set it, read by DataLoader workers that outlive an
        # epoch (persistent workers): shared memory, so their augmentation follows the epoch
        self._shared_epoch = torch.zeros(1, dtype=torch.long).share_memory_()

    def __len__(self) -> int:
        return len(self.base)

    def patient_ids(self) -> list[str]:
        """Patient of every item (items are exams, or exam phases in 'single' mode)."""
        items = getattr(self.base, "items", None)
        if items is not None:
            return [str(it[0]) for it in items]
        return [str(k[0]) for k in self.base.keys]

    def set_epoch(self, epoch: int) -> None:
        self._shared_epoch[0] = int(epoch)
        self._apply_epoch(int(epoch))

    def _apply_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)
        self.fields.set_epoch(epoch)

    def _mask(self, item: dict[str, Any], i: int) -> torch.Tensor:
        """The exam's phase mask, with this epoch's phase dropout (training set only)."""

        mask = torch.as_tensor(item["phase_mask"], dtype=torch.bool)
        if self.phase_dropout > 0:
            rng = np.random.default_rng([self.seed, self.epoch, i, 0x9D])
            mask = drop_phases(mask, self.phase_dropout, rng)
        return mask

    def __getitem__(self, i: int) -> dict[str, Any]:

        if int(self._shared_epoch[0]) != self.epoch:  # a persistent worker, at a new epoch
            self._apply_epoch(int(self._shared_epoch[0]))
        item = self.base[i]
        pid, exam = str(item["patient_id"]), str(item["exam"])
        out: dict[str, Any] = {"image": torch.as_tensor(item["image"]),
                               "patient_idx": self.patient_index[pid], "index": i,
                               "patient_id": pid, "exam": exam}
        out.update(self.fields(i, pid, exam))
        # every volume of the item (the image, an objective's second view) shows missing and
        # dropped phases the same way, as embed() will (medimp.data.pipeline.phases)
        mask = self._mask(item, i)
        for key, value in out.items():
            if (isinstance(value, torch.Tensor) and value.ndim == 4
                    and value.shape[0] == mask.shape[0] and value.is_floating_point()):
                out[key] = encoder_input(value, mask, self.phase_mask)
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep strings and prompt lists as lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(vals[0], int):
            out[key] = torch.tensor(vals, dtype=torch.long)
        else:
            out[key] = vals
    return out


def _available_memory() -> int:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), else 0."""
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as 2**63 rounded down to a page


def _cgroup_room(proc: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
                 ) -> int | None:
    """Bytes this process's memory cgroup still allows (a SLURM job's ``--mem``, a container's
    limit), or None without a limit. ``MemAvailable`` counts the whole node, not the job."""
    try:
        lines = proc.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":  # cgroup v2
            base, files = root, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):  # cgroup v1
            base, files = root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for folder in (base / path.strip().lstrip("/"), base):  # the path, or a namespaced root
            try:
                limit = (folder / files[0]).read_text(encoding="utf-8").strip()
                used = int((folder / files[1]).read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < _NO_LIMIT:
                rooms.append(max(int(limit) - used, 0))
            break
    return min(rooms) if rooms else None


def _local_processes(config: PretrainConfig) -> int:
    """Training processes on this machine: torchrun's LOCAL_WORLD_SIZE, srun's tasks per node,
    or the devices Lightning will start itself (before it starts them)."""
    counts = [int(os.environ.get(name, "") or 0) if os.environ.get(name, "").isdigit() else 0
              for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE")]
    if isinstance(config.devices, int):
        counts.append(config.devices)
    return max([1, *counts])


def _fits_in_memory(n_exams: int, n_phases: int, preprocess: Any, config: PretrainConfig
                    ) -> bool:
    """``config.in_memory``, or (None) whether the preprocessed exams, one copy per loader
    process of every training process on this machine, fit in a quarter of the memory
    available (to this process's cgroup, when it has a limit)."""
    if config.in_memory is not None:
        return bool(config.in_memory)
    size = n_exams * n_phases * int(np.prod(preprocess.shape)) * 4
    copies = (1 + config.num_workers) * _local_processes(config)
    room = _available_memory()
    cgroup = _cgroup_room()
    if cgroup is not None:
        room = min(room, cgroup) if room else cgroup
    return size * copies < room // 4


class PretrainDataModule(LightningDataModule):
    """Reads the cohort once, splits patients, and serves the objective's batches.

    All checks that can fail (cohort, split sizes, the objective's data: prompts, variables)
    run in ``__init__``, so a bad input stops the run before a model is built.

    Args:
        cohort_path: cohort folder.
        config: the run's config.
        cache_dir: preprocessed-volume cache (None: the data stage's default).
        objective: the run's objective (default: a new one of ``config.method``); its data-side
            hooks run here.
    """

    def __init__(self, cohort_path: str | os.PathLike[str], config: PretrainConfig,
                 cache_dir: str | os.PathLike[str] | None = None,
                 objective: Objective | None = None) -> None:
        super().__init__()

        self.cfg = config
        self.objective = objective or create_objective(config.method, config)
        self.cohort_path = Path(cohort_path)
        self.cohort = read_cohort(self.cohort_path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.preprocess = config.preprocess_config()
        self.augment = config.augment_config()
        keys = [(str(p), str(e)) for p, e in self.cohort.exam_keys()]
        patients = sorted({p for p, _ in keys})
        self.patient_index = {p: i for i, p in enumerate(patients)}
        train_p, val_p = split_patients(patients, config.val_fraction, config.seed)
        self.train_patients, self.val_patients = train_p, val_p
        val_set = set(val_p)
        if 0 < sum(p in val_set for p, _ in keys) < 2:
            # one exam cannot give a contrastive loss: validate nothing rather than fail later
            warnings.warn(f"{self.cohort_path}: the validation patients {val_p} have a single "
                          "exam between them; training without validation loss", stacklevel=2)
            train_p, val_p, val_set = sorted(patients), [], set()
            self.train_patients, self.val_patients = train_p, val_p
        if config.exams_per_patient is not None:
            keys = earliest_exams(self.cohort, keys, config.exams_per_patient)
        self.train_keys = [k for k in keys if k[0] not in val_set]
        self.val_keys = [k for k in keys if k[0] in val_set]
        if self.objective.trains and config.batch_size > len(self.train_keys):
            raise TrainError(
                f"{self.cohort_path}: batch_size {config.batch_size} is larger than the "
                f"training split ({len(self.train_keys)} exams of {len(train_p)} patients after "
                f"holding out {len(val_p)} for validation); lower batch_size or val_fraction")
        why = self.objective.needs_augmentation
        if why and self.augment is None:
            raise ConfigError(f"{config.method} needs augmentation ({why}); "
                              "set augment to a mapping, e.g. augment: {}")
        self.in_memory = _fits_in_memory(len(keys), len(self.cohort.study.phases),
                                         self.preprocess, config)
        self.data = PretrainData(cohort=self.cohort, cohort_path=self.cohort_path, keys=keys,
                                 train_keys=self.train_keys, preprocess=self.preprocess,
                                 augment=self.augment, cache_dir=self.cache_dir,
                                 seed=config.seed, memory={} if self.in_memory else None)
        self.objective.prepare(self.data)

        self.in_channels = encoder_channels(
            len(self.cohort.study.phases)
            if getattr(self.preprocess, "phase_mode", "stack") == "stack" else 1,
            config.phase_mask)

    def _dataset(self, keys: list[tuple[str, str]], augment: bool, train: bool) -> _Items:
        base = self.data.exam_dataset(keys, augment=augment, seed=self.cfg.seed)
        return _Items(base, self.patient_index, self.objective.item_fields(self.data, keys),
                      phase_mask=self.cfg.phase_mask,
                      phase_dropout=self.cfg.phase_dropout if train else 0.0,
                      seed=self.cfg.seed)

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is None:
            # an objective that needs augmentation sees augmented validation batches too
            needs = bool(self.objective.needs_augmentation)
            self.train_set = self._dataset(self.train_keys, augment=True, train=True)
            self.val_set = self._dataset(self.val_keys, augment=needs, train=False)

    def _epoch(self) -> int:
        return int(self.trainer.current_epoch) if self.trainer is not None else 0

    def set_epoch(self, epoch: int) -> None:
        """Make this epoch's augmentation a function of (seed, epoch, item) only."""
        if getattr(self, "train_set", None) is not None:
            self.train_set.set_epoch(epoch)

    def _loader(self, ds: _Items, train: bool) -> DataLoader:
        groups = [self.patient_index[p] for p in ds.patient_ids()]
        distributed = self.trainer is not None and self.trainer.world_size > 1
        sampler = None
        if not distributed:  # under DDP Lightning installs a seeded DistributedSampler
            sampler = PatientInterleavedSampler(groups, self.cfg.seed, fixed=not train,
                                                epoch_source=self._epoch if train else None)
        bs = self.cfg.batch_size
        return DataLoader(ds, batch_size=bs, sampler=sampler,
                          shuffle=(sampler is None and train), collate_fn=collate,
                          num_workers=self.cfg.num_workers, drop_last=train and len(ds) > bs,
                          # workers outlive the epoch (no start-up per epoch); the epoch reaches
                          # them through _Items' shared memory
                          persistent_workers=self.cfg.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        # set before Lightning creates the first iterator (and its workers)
        self.set_epoch(self._epoch())
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_keys:
            return []
        self.val_set.set_epoch(0)
        return self._loader(self.val_set, train=False)
