"""Pretraining objectives, one per file, created by name (the config's ``method``).

Built in: ``medimp`` (image vs text prompts), ``image_ssl`` (two augmented views),
``tabular_clip`` (image vs clinical variables), ``random_init`` (untrained encoder). A new
objective is one file in this package (or anywhere, imported before use) with a class::

    @register_objective
    class MyObjective(ContrastiveObjective):
        name = "my_objective"
        partner = "other"
        ...

See :class:`Objective` for the hooks, and ``docs/train.md`` for a worked example.
"""

from medimp.train.objectives._base import (
    ContrastiveObjective,
    ItemFields,
    NoOptions,
    Objective,
    PretrainData,
    make_contrastive_loss,
)
from medimp.train.objectives._registry import (
    create_objective,
    get_objective,
    list_objectives,
    register_objective,
)

__all__ = [
    "ContrastiveObjective",
    "ItemFields",
    "NoOptions",
    "Objective",
    "PretrainData",
    "create_objective",
    "get_objective",
    "list_objectives",
    "make_contrastive_loss",
    "register_objective",
]
