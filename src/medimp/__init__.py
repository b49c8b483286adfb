"""medimp: multi-modal representation learning on 3D medical images with clinical text prompts.

Stages (each a subpackage; data flows one way, a stage imports only stages before it):
``study`` (schema) -> ``simulate`` -> ``data`` -> ``prompts`` -> ``models`` -> ``train``
-> ``evaluate`` -> ``prognosis`` -> ``report``; ``cli`` imports everything and nothing imports it.

Importing :mod:`medimp` does no work: import the stage you need. Every stage's errors inherit
:class:`MedimpError` (a ``ValueError``), re-exported here.
"""

from medimp.errors import MedimpError

__version__ = "0.1.0"

__all__ = ["MedimpError", "__version__", "predict"]


def predict(model_dir, cohort, out=None, **kw):
    """Apply a prognosis model folder to a cohort: :func:`medimp.prognosis.predict`
    (imported on first use, so that ``import medimp`` stays free)."""
    from medimp.prognosis import predict as _predict

    return _predict(model_dir, cohort, out, **kw)
