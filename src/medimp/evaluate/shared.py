"""Work the probes would otherwise repeat identically, done once.

An evaluation fits many probes on the same numbers: the logistic and the k-NN probe of one
task, method and level scale the same inner training folds; every run of every image method's
``clinical+NAME`` model scales the same clinical columns of the same patients, and with k = 0
image components fits the same logistic regressions on them. This module keeps those results,
keyed by the **content** of the arrays (their values, shape, dtype and memory layout) and the
settings, so a repeat gets back the very arrays the first computation returned: the results are
bit-identical to computing again, only faster. The layout is part of the key because the last
bits of a column mean or of a prediction depend on it (a scaler's output and a logistic
regression's probabilities for an F-ordered table, as pandas hands it out, and for a C-ordered
copy differ in most random problems).
Each process keeps its own bounded store (with ``--jobs N`` every worker has one; results do
not depend on which worker computes).

The returned arrays are read-only: they may be handed to several callers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from medimp.evaluate.fastlogit import logistic_proba
from medimp.evaluate.models import make_preprocessor

__all__ = ["clear", "combined_split", "logistic_scores", "scaled_split"]

#: Entries kept per store (oldest dropped first). An entry is reused within one task: the
#: scaled folds by the next probe of the same table (45 entries later with 5x3 folds and 3
#: inner folds), the clinical part and the k = 0 fits by the next image method's model (45 and
#: 720 entries later). Scaled folds are the large entries (tens of kB), fits' scores small.
MAX_ENTRIES = {"scaled": 256, "clinical": 256, "logistic": 8192}
#: ... and at most this many bytes of arrays per store, whatever the number of entries: a large
#: cohort with wide embeddings (thousands of rows x 768 features: megabytes per scaled fold)
#: keeps fewer entries instead of gigabytes in every worker.
MAX_BYTES = 256 * 2**20

_STORES: dict[str, OrderedDict[bytes, Any]] = {}
_SIZES: dict[str, int] = {}


def clear() -> None:
    """Forget every stored result (each process's stores are independent)."""
    _STORES.clear()
    _SIZES.clear()


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return sum(_nbytes(v) for v in value) if isinstance(value, tuple) else 0


def _digest(*parts: Any) -> bytes:
    """A key for arrays (values, dtype, shape and strides: results depend on the layout in their
    last bits) and plain settings."""
    h = hashlib.blake2b(digest_size=20)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(repr((p.dtype.str, p.shape, p.strides)).encode())
            h.update(np.ascontiguousarray(p).view(np.uint8).data)
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.digest()


def _frozen(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple):
        for v in value:
            _frozen(v)
    return value


def _memo(store: str, key: bytes, compute: Callable[[], Any]) -> Any:
    cache = _STORES.setdefault(store, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = _frozen(compute())
    cache[key] = value
    _SIZES[store] = _SIZES.get(store, 0) + _nbytes(value)
    while len(cache) > 1 and (len(cache) > MAX_ENTRIES[store] or _SIZES[store] > MAX_BYTES):
        _SIZES[store] -= _nbytes(cache.popitem(last=False)[1])
    return value


def scaled_split(x_train: np.ndarray, x_test: np.ndarray, impute: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The probes' inner-fold features: ``[SimpleImputer(median)] + StandardScaler`` fitted on
    ``x_train``, applied to both (:class:`medimp.evaluate.probes.LogisticProbe`,
    :class:`~medimp.evaluate.probes.KNNProbe`)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        prep = make_preprocessor("clinical" if impute else "embedding").fit(x_train)
        return prep.transform(x_train), prep.transform(x_test)

    return _memo("scaled", _digest(x_train, x_test, bool(impute)), compute)


def combined_split(x_train: np.ndarray, x_test: np.ndarray, n_clinical: int, k: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``make_preprocessor("combined", n_clinical=, k=, seed=)``'s ``fit_transform(x_train)``
    and ``transform(x_test)``, bit for bit, with the clinical part computed once for every
    image method sharing it.

    The ``ColumnTransformer`` fits each part on its column slice and stacks the outputs side
    by side; this does the same with the same two parts, so only the shared clinical part
    (imputer + scaler on the same patients) is looked up instead of fitted again.
    """
    pre = make_preprocessor("combined", n_clinical=n_clinical, k=k, seed=seed)
    (_, clinical, cols_c), (_, image, cols_i) = pre.transformers

    def clinical_part() -> tuple[np.ndarray, np.ndarray]:
        z_tr = clinical.fit_transform(x_train[:, cols_c])
        return z_tr, clinical.transform(x_test[:, cols_c])

    c_tr, c_te = _memo("clinical", _digest(x_train[:, cols_c], x_test[:, cols_c]),
                       clinical_part)
    if isinstance(image, str):  # "drop": k == 0
        return np.hstack([c_tr]), np.hstack([c_te])
    i_tr = image.fit_transform(x_train[:, cols_i])
    i_te = image.transform(x_test[:, cols_i])
    return np.hstack([c_tr, i_tr]), np.hstack([c_te, i_te])


def logistic_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, C: float,
                    max_iter: int) -> np.ndarray:
    """``LogisticRegression(C=C, max_iter=max_iter).fit(x_train, y_train)``'s probability of
    class 1 for ``x_test``."""

    def compute() -> np.ndarray:
        return logistic_proba(x_train, y_train, x_test, float(C), max_iter)

    return _memo("logistic", _digest(x_train, y_train, x_test, float(C), int(max_iter)),
                 compute)
