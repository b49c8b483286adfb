"""Save fitted scikit-learn models as JSON + arrays, and load them back, without pickles.

Only the exact component types of :func:`medimp.evaluate.models.make_model` are accepted
(:data:`ALLOWED`): ``Pipeline``, ``ColumnTransformer``, ``SimpleImputer``, ``StandardScaler``,
``PCA``, ``LogisticRegression`` and ``Ridge``. An estimator is written as its class name and its
instance attributes (constructor parameters and fitted state); each attribute must be plain data
(None, bool, int, float, str, a numeric numpy array or scalar, a numpy dtype, a slice, or a
list / tuple / str-keyed dict of those) or a nested allowed estimator. Anything else (another
class, an object array, a callable) is refused when saving, so nothing that cannot be loaded
safely is ever written; loading rebuilds only the allowed classes from that data.

Arrays go to a separate mapping (``name -> ndarray``) that the caller stores in a safetensors
file; the JSON refers to them by name. The scikit-learn version is recorded: the fitted state
of these classes is an implementation detail, so a model is loaded only by the same
scikit-learn minor version (:func:`check_sklearn_version`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from medimp.errors import MedimpError

__all__ = ["ALLOWED", "SerializationError", "check_sklearn_version", "dump_estimator",
           "load_estimator"]

#: The only classes written and rebuilt (class name -> class).
ALLOWED: dict[str, type] = {c.__name__: c for c in (
    Pipeline, ColumnTransformer, SimpleImputer, StandardScaler, PCA, LogisticRegression, Ridge)}

_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float


class SerializationError(MedimpError):
    """A model that cannot be saved or loaded safely (a type outside the allowed set)."""


def _encode_plain(value: Any) -> tuple[bool, Any]:
    """(True, JSON) for None, bool, str, int and float (non-finite floats tagged)."""
    if value is None or isinstance(value, bool | str):
        return True, value
    if isinstance(value, int | float) and not isinstance(value, np.generic):
        if isinstance(value, float) and not np.isfinite(value):
            return True, {"__float__": repr(value)}
        return True, value
    return False, None


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    plain, out = _encode_plain(value)
    if plain:
        return out
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise SerializationError(f"{where}: array of dtype {arr.dtype} cannot be saved "
                                     "(only numeric arrays)")
        arrays[where] = np.ascontiguousarray(arr)
        return {"__array__": where, "scalar": isinstance(value, np.generic)}
    if isinstance(value, np.dtype):
        if value.kind not in _NUMERIC_KINDS:
            raise SerializationError(f"{where}: dtype {value} cannot be saved")
        return {"__dtype__": value.str}
    if isinstance(value, slice):
        parts = (value.start, value.stop, value.step)
        if not all(p is None or isinstance(p, int) for p in parts):
            raise SerializationError(f"{where}: slice with non-integer bounds")
        return {"__slice__": list(parts)}
    if isinstance(value, list | tuple):
        items = [_encode(v, arrays, f"{where}.{i}") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise SerializationError(f"{where}: dict keys must be strings")
        return {"__dict__": {k: _encode(v, arrays, f"{where}.{k}") for k, v in value.items()}}
    if type(value).__name__ in ALLOWED and type(value) is ALLOWED[type(value).__name__]:
        return _encode_estimator(value, arrays, where)
    raise SerializationError(
        f"{where}: a {type(value).__module__}.{type(value).__name__} cannot be saved; a "
        f"prognosis model may hold only {sorted(ALLOWED)} and plain data")


def _encode_estimator(est: Any, arrays: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    name = type(est).__name__
    if ALLOWED.get(name) is not type(est):
        raise SerializationError(f"{where}: {type(est).__module__}.{name} is not one of the "
                                 f"savable components {sorted(ALLOWED)}")
    state = {k: _encode(v, arrays, f"{where}/{k}") for k, v in vars(est).items()}
    return {"__estimator__": name, "state": state}


def dump_estimator(est: Any, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(spec, arrays)`` of a fitted estimator: JSON-able spec, arrays named ``prefix/...``.

    Raises:
        SerializationError: a component or attribute outside the allowed set (names it).
    """
    arrays: dict[str, np.ndarray] = {}
    return _encode_estimator(est, arrays, prefix), arrays


def _decode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays, where) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise SerializationError(f"{where}: unexpected entry {str(value)[:80]!r}")
    if "__float__" in value:
        return float(value["__float__"])
    if "__array__" in value:
        key = value["__array__"]
        if key not in arrays:
            raise SerializationError(f"{where}: array {key!r} is missing from the arrays file")
        arr = arrays[key]
        return arr[()] if value.get("scalar") else arr
    if "__dtype__" in value:
        return np.dtype(str(value["__dtype__"]))
    if "__slice__" in value:
        return slice(*value["__slice__"])
    if "__tuple__" in value:
        return tuple(_decode(v, arrays, where) for v in value["__tuple__"])
    if "__dict__" in value:
        return {str(k): _decode(v, arrays, where) for k, v in value["__dict__"].items()}
    if "__estimator__" in value:
        return _decode_estimator(value, arrays, where)
    raise SerializationError(f"{where}: unexpected entry {sorted(value)}")


def _decode_estimator(spec: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> Any:
    name = spec.get("__estimator__")
    cls = ALLOWED.get(str(name))
    if cls is None:
        raise SerializationError(f"{where}: component {name!r} is not one of {sorted(ALLOWED)}; "
                                 "the model folder was not written by medimp fit-prognosis")
    state = spec.get("state")
    if not isinstance(state, dict):
        raise SerializationError(f"{where}: component {name} has no state")
    est = cls.__new__(cls)
    for key, val in state.items():
        est.__dict__[str(key)] = _decode(val, arrays, f"{where}/{key}")
    return est


def load_estimator(spec: dict[str, Any], arrays: dict[str, np.ndarray],
                   where: str = "model") -> Any:
    """Rebuild an estimator written by :func:`dump_estimator` (allowed classes only)."""
    return _decode_estimator(spec, arrays, where)


def check_sklearn_version(saved: str, where: str) -> None:
    """Refuse a model saved by another scikit-learn minor version (its fitted state may differ)."""
    have = ".".join(sklearn.__version__.split(".")[:2])
    if ".".join(str(saved).split(".")[:2]) != have:
        raise SerializationError(
            f"{where}: fitted with scikit-learn {saved}, this is {sklearn.__version__}; "
            f"install scikit-learn {saved} or refit with medimp fit-prognosis")
