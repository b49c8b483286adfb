"""Registry of paraphrasing backends, created by name (the image-encoder registry's mechanism).

Each builder is a function ``builder(*, forbidden=None, no_cohort=False, **options)`` registered
with :func:`register_backend`; it returns what :func:`medimp.prompts.paraphrase.augment` takes
(``"rules"`` or a chat backend with ``name``, ``model`` and ``complete(messages)``). Every
builder receives the privacy arguments: ``forbidden`` (the cohort values that must never leave
the machine, see :func:`medimp.prompts.privacy.cohort_values`) and ``no_cohort`` (an explicit
statement that there is no cohort to protect). A backend that sends text off the machine must
refuse to send without one of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from medimp._registry import Registry
from medimp.prompts.errors import BackendError

__all__ = ["create_backend", "list_backends", "register_backend"]


def _load_builtin() -> None:
    # Importing the modules registers the built-in backends (they use the decorator); none of
    # them loads a model or opens a connection at import time.
    import medimp.prompts.backends.openai
    import medimp.prompts.backends.rules
    import medimp.prompts.backends.transformers_backend  # noqa: F401


_BACKENDS: Registry[Callable[..., Any]] = Registry("paraphrase backend", BackendError,
                                                   load=_load_builtin)


def register_backend(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Register a backend builder under ``name`` (default: the function's name).

    Usable as ``@register_backend`` or ``@register_backend(name="...")``.
    """
    return _BACKENDS.decorator(fn, name=name)


def list_backends() -> list[str]:
    """Names accepted by :func:`create_backend`, sorted."""
    return _BACKENDS.names()


def create_backend(name: str, *, forbidden: Mapping[str, str] | None = None,
                   no_cohort: bool = False, **options: Any) -> Any:
    """Build the paraphrasing backend ``name``.

    Args:
        name: a registered name, see :func:`list_backends`.
        forbidden: cohort values that must never be sent (value -> where it comes from).
        no_cohort: say explicitly that there is no cohort whose values need protecting.
        **options: backend-specific options (``base_url``, ``model``, ``model_path``...).

    Raises:
        BackendError: unknown name (the message lists the known ones) or an option the backend
            does not take.
    """
    builder = _BACKENDS.lookup(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            takes = sorted(set(params) - {"forbidden", "no_cohort"})
            raise BackendError(f"paraphrase backend {name!r} takes no option "
                               f"{', '.join(unknown)} (it takes: {', '.join(takes) or 'none'})")
    try:
        return builder(forbidden=forbidden, no_cohort=no_cohort, **options)
    except TypeError as exc:  # an option this backend does not take
        raise BackendError(f"paraphrase backend {name!r}: {exc}") from exc
