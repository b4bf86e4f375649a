"""Tests for dsembed.data.glue: the shared GLUE copy, finding it, and hub-style loading (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _data_files import HEADER, write

from dsembed.data import PairDataset, default_glue_dir, load_glue, load_hf_pairs, read_pairs
from dsembed.data import glue as glue_module
from dsembed.errors import ConfigError, DataFormatError, DsembedError, InputNotFoundError
from dsembed.tasks import custom_task, get_task

MRPC = get_task("mrpc")
RTE = get_task("rte")
QNLI = get_task("qnli")


def shared_glue() -> Path:
    try:
        root = default_glue_dir()
    except FileNotFoundError:
        pytest.skip("shared GLUE data not available")
    if not (root / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"shared GLUE data not available under {root}")
    return root



# ---------------------------------------------------------------------------------------------
# The real shared GLUE files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "split", "rows"),
    [
        ("mrpc", "train", 3668),
        ("mrpc", "dev", 408),
        ("mrpc", "test", 1725),
        ("stsb", "train", 5749),
        ("stsb", "dev", 1500),
        ("stsb", "test", 1379),
        ("rte", "train", 2490),
        ("rte", "dev", 277),
        ("qnli", "dev", 5463),
    ],
)
def test_shared_glue_row_counts(task: str, split: str, rows: int) -> None:
    ds = load_glue(task, split, data_dir=shared_glue(), source="local")
    assert len(ds) == rows
    assert ds.labels is not None
    assert ds.labels.dtype == np.float32
    assert ds.labels.shape == (rows,)
    assert ds.skipped == 0
    assert ds.problems == []
    assert all(ds.sentence1) and all(ds.sentence2)


def test_shared_glue_label_balance() -> None:
    root = shared_glue()
    mrpc = load_glue("mrpc", "train", data_dir=root, source="local")
    assert int(mrpc.labels.sum()) == 2474
    assert set(np.unique(mrpc.labels).tolist()) == {0.0, 1.0}
    # RTE/QNLI: index 1 = entailment.
    assert int(load_glue("rte", "train", data_dir=root, source="local").labels.sum()) == 1249
    assert int(load_glue("rte", "dev", data_dir=root, source="local").labels.sum()) == 146
    assert int(load_glue("qnli", "dev", data_dir=root, source="local").labels.sum()) == 2702
    stsb = load_glue("stsb", "dev", data_dir=root, source="local")
    assert stsb.labels.min() == 0.0
    assert stsb.labels.max() == 5.0


def test_shared_mrpc_quotes_read_intact() -> None:
    ds = load_glue("mrpc", "train", data_dir=shared_glue(), source="local")
    assert ds.sentence1[0] == (
        'Amrozi accused his brother , whom he called " the witness " , '
        "of deliberately distorting his evidence ."
    )
    assert ds.sentence2[0] == (
        'Referring to him as only " the witness " , Amrozi accused his brother of deliberately distorting '
        "his evidence ."
    )
    assert ds.labels[0] == 1.0
    brandeis = [i for i, s in enumerate(ds.sentence1) if '" extremely heartrending "' in s]
    assert len(brandeis) == 1
    assert ds.labels[brandeis[0]] == 1.0
    assert sum('"' in s for s in ds.sentence1 + ds.sentence2) > 100


def test_shared_glue_auto_prefers_local(monkeypatch: pytest.MonkeyPatch) -> None:
    root = shared_glue()

    def no_hub(*args: object, **kwargs: object) -> PairDataset:
        raise AssertionError("must not touch the hub when the local file exists")

    monkeypatch.setattr(glue_module, "load_hf_pairs", no_hub)
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(root))
    ds = load_glue(RTE, "dev")
    assert len(ds) == 277
    assert ds.source == str(root / "RTE" / "dev.tsv")


# ---------------------------------------------------------------------------------------------
# default_glue_dir / load_glue
# ---------------------------------------------------------------------------------------------


def make_glue(root: Path) -> Path:
    (root / "MRPC").mkdir(parents=True)
    write(root / "MRPC" / "dev.tsv", HEADER + "a\tb\t1\nc\td\t0\n")
    (root / "MNLI").mkdir()
    write(root / "MNLI" / "dev_mismatched.tsv", HEADER + "p\th\tneutral\n")
    return root


def test_default_glue_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(tmp_path / "env"))
    assert default_glue_dir() == tmp_path / "env"
    monkeypatch.delenv("DSEMBED_GLUE_DIR")
    (tmp_path / "shared" / "data" / "glue").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert default_glue_dir() == tmp_path / "shared" / "data" / "glue"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_glue_dir() == tmp_path / "shared" / "data" / "glue"


def test_default_glue_dir_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shared" / "data" / "glue").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(tmp_path / "env"))
    assert default_glue_dir() == tmp_path / "env"  # over the cwd fallback, even when that exists
    assert default_glue_dir(tmp_path / "explicit") == tmp_path / "explicit"  # an explicit folder wins over both
    assert default_glue_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    monkeypatch.setenv("DSEMBED_GLUE_DIR", "")  # set but empty counts as unset
    assert default_glue_dir() == tmp_path / "shared" / "data" / "glue"


def test_default_glue_dir_cwd_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable: ./shared/data/glue first, then ../shared/data/glue (a checkout beside shared/)."""
    monkeypatch.delenv("DSEMBED_GLUE_DIR", raising=False)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    beside = make_glue(tmp_path / "shared" / "data" / "glue")
    monkeypatch.chdir(checkout)
    assert default_glue_dir() == beside
    assert load_glue("mrpc", "dev", source="local").source == str(beside / "MRPC" / "dev.tsv")
    own = checkout / "shared" / "data" / "glue"
    own.mkdir(parents=True)
    assert default_glue_dir() == own  # ./shared before ../shared


def test_default_glue_dir_not_found_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing beside the cwd: an InputNotFoundError, whatever lies next to the installed package."""
    monkeypatch.delenv("DSEMBED_GLUE_DIR", raising=False)
    empty = tmp_path / "a" / "b"
    empty.mkdir(parents=True)
    monkeypatch.chdir(empty)
    with pytest.raises(InputNotFoundError) as info:
        default_glue_dir()
    err = info.value
    assert isinstance(err, DsembedError) and isinstance(err, FileNotFoundError)
    message = str(err)
    assert "\n" not in message
    assert "DSEMBED_GLUE_DIR" in message and "--data-dir" in message
    assert str(empty / "shared" / "data" / "glue") in message
    assert str(tmp_path / "a" / "shared" / "data" / "glue") in message
    # load_glue without a folder passes the reason on (offline: source="local").
    with pytest.raises(InputNotFoundError, match="DSEMBED_GLUE_DIR") as load_info:
        load_glue("mrpc", "dev", source="local")
    assert "GLUE mrpc dev" in str(load_info.value)


def test_load_glue_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    ds = load_glue("MRPC", "dev", data_dir=root, source="local")
    assert ds.pairs() == [("a", "b"), ("c", "d")]
    assert ds.source == str(root / "MRPC" / "dev.tsv")
    mm = load_glue("mnli", "dev_mismatched", data_dir=root)
    assert mm.labels.tolist() == [1.0]
    monkeypatch.setenv("DSEMBED_GLUE_DIR", str(root))
    assert len(load_glue(MRPC, "dev")) == 2


def test_load_glue_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    with pytest.raises(FileNotFoundError) as info:
        load_glue("mrpc", "train", data_dir=root, source="local")
    message = str(info.value)
    assert str(root / "MRPC" / "train.tsv") in message
    assert "source='hub'" in message
    assert "network" in message
    assert isinstance(info.value, InputNotFoundError)
    with pytest.raises(ValueError, match="unknown split") as bad:
        load_glue("mrpc", "validation", data_dir=root)
    assert isinstance(bad.value, ConfigError)
    with pytest.raises(ValueError, match="unknown split") as bad:
        load_glue("mrpc", "dev_mismatched", data_dir=root)
    assert isinstance(bad.value, ConfigError)
    with pytest.raises(ValueError, match="source") as bad:
        load_glue("mrpc", "dev", data_dir=root, source="web")
    assert isinstance(bad.value, ConfigError)
    # An unknown task name is a bad argument: ConfigError (a ValueError), with get_task's message.
    with pytest.raises(ConfigError, match="unknown task 'nosuchtask'; known tasks: .*mrpc"):
        load_glue("nosuchtask", "dev", data_dir=root)
    with pytest.raises(ConfigError, match="unknown task"):
        load_hf_pairs("nosuchtask", "dev")


def test_load_glue_auto_falls_back_to_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_glue(tmp_path / "glue")
    calls: list[tuple[str, str]] = []

    def fake_hub(task: object, split: str, **kwargs: object) -> PairDataset:
        calls.append((task.name, split))  # type: ignore[attr-defined]
        return PairDataset(["h"], ["i"], np.ones(1, dtype=np.float32), source="hub:fake")

    monkeypatch.setattr(glue_module, "load_hf_pairs", fake_hub)
    assert load_glue("mrpc", "train", data_dir=root).source == "hub:fake"
    assert load_glue("rte", "dev", data_dir=root, source="hub").source == "hub:fake"
    assert calls == [("mrpc", "train"), ("rte", "dev")]

    def offline(task: object, split: str, **kwargs: object) -> PairDataset:
        raise ConnectionError("no network")

    monkeypatch.setattr(glue_module, "load_hf_pairs", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_glue("mrpc", "train", data_dir=root)
    assert str(root / "MRPC" / "train.tsv") in str(info.value)
    assert "no network" in str(info.value)
    assert isinstance(info.value, InputNotFoundError)


def test_load_glue_local_skip_bad(tmp_path: Path) -> None:
    (tmp_path / "RTE").mkdir()
    write(tmp_path / "RTE" / "dev.tsv", HEADER + "a\tb\tentailment\nc\td\tyes\n")
    with pytest.raises(DataFormatError):
        load_glue("rte", "dev", data_dir=tmp_path)
    ds = load_glue("rte", "dev", data_dir=tmp_path, skip_bad=True)
    assert len(ds) == 1
    assert ds.skipped == 1


# ---------------------------------------------------------------------------------------------
# load_hf_pairs on local, hub-shaped data (never the network)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_parquet_folder_rte(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({
        "sentence1": datasets.Value("string"),
        "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
        "idx": datasets.Value("int32"),
    })
    folder = tmp_path / "rte"
    folder.mkdir()
    train = {"sentence1": ["p1", "p2", "p3"], "sentence2": ["h1", "h2", "h3"],
             "label": [0, 1, 0], "idx": [0, 1, 2]}
    datasets.Dataset.from_dict(train, features=features).to_parquet(str(folder / "train.parquet"))
    dev = {"sentence1": [" q1 "], "sentence2": ["k1"], "label": [1], "idx": [0]}
    datasets.Dataset.from_dict(dev, features=features).to_parquet(str(folder / "validation.parquet"))
    ds = load_hf_pairs("rte", "train", path=str(folder), cache_dir=str(tmp_path / "cache"))
    # hub 0 = entailment -> our index 1 (entailment is the positive class)
    assert ds.labels.tolist() == [1.0, 0.0, 1.0]
    assert ds.pairs() == [("p1", "h1"), ("p2", "h2"), ("p3", "h3")]
    assert ds.source.startswith("hub:")
    # our "dev" is the hub's "validation" split
    dev_ds = load_hf_pairs(RTE, "dev", path=str(folder), cache_dir=str(tmp_path / "cache"))
    assert dev_ds.pairs() == [("q1", "k1")]
    assert dev_ds.labels.tolist() == [0.0]


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_json_mrpc_and_test_split(tmp_path: Path) -> None:
    dev = tmp_path / "dev.jsonl"
    rows = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 2, "idx": i} for i in range(5)]
    write(dev, "".join(json.dumps(row) + "\n" for row in rows))
    test = tmp_path / "test.jsonl"
    write(test, "".join(json.dumps({"sentence1": f"t{i}", "sentence2": f"u{i}", "label": -1}) + "\n"
                        for i in range(3)))
    files = {"validation": str(dev), "test": str(test)}
    cache = str(tmp_path / "cache")
    ds = load_hf_pairs("mrpc", "dev", path="json", data_files=files, cache_dir=cache)
    assert ds.labels.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert ds.sentence1 == [f"a{i}" for i in range(5)]
    test_ds = load_hf_pairs(MRPC, "test", path="json", data_files=files, cache_dir=cache)
    assert test_ds.labels is None
    assert len(test_ds) == 3
    # the same rows read from a local file give the same fingerprint (cache keys agree)
    assert ds.fingerprint() == read_pairs(dev, MRPC).fingerprint()


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_qnli_stsb_columns(tmp_path: Path) -> None:
    qnli = tmp_path / "qnli.jsonl"
    write(qnli, json.dumps({"question": "Q?", "sentence": "S.", "label": 1}) + "\n"
          + json.dumps({"question": "R?", "sentence": "T.", "label": 0}) + "\n")
    cache = str(tmp_path / "cache")
    ds = load_hf_pairs(QNLI, "train", path="json", data_files=str(qnli), cache_dir=cache)
    assert ds.pairs() == [("Q?", "S."), ("R?", "T.")]
    assert ds.labels.tolist() == [0.0, 1.0]  # hub 1 = not_entailment -> our 0
    stsb = tmp_path / "stsb.jsonl"
    write(stsb, json.dumps({"sentence1": "a", "sentence2": "b", "label": 3.8}) + "\n"
          + json.dumps({"sentence1": "c", "sentence2": "d", "label": 0.0}) + "\n")
    st = load_hf_pairs("stsb", "train", path="json", data_files=str(stsb), cache_dir=cache)
    assert st.labels.tolist() == [pytest.approx(3.8), 0.0]
    with pytest.raises(ValueError, match="no column") as info:
        load_hf_pairs("rte", "train", path="json", data_files=str(qnli), cache_dir=cache)
    assert isinstance(info.value, ConfigError)
    renamed = load_hf_pairs("rte", "train", path="json", data_files=str(qnli), cache_dir=cache,
                            columns=("question", "sentence", "label"))
    assert renamed.labels.tolist() == [0.0, 1.0]


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_bad_labels(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    write(mixed, json.dumps({"sentence1": "a", "sentence2": "b", "label": 1}) + "\n"
          + json.dumps({"sentence1": "c", "sentence2": "d", "label": -1}) + "\n")
    with pytest.raises(ValueError, match="row 1") as info:
        load_hf_pairs("mrpc", "train", path="json", data_files=str(mixed), cache_dir=str(tmp_path / "c"))
    err = info.value
    assert isinstance(err, DataFormatError)
    assert err.path == "hub:json/train" and err.line == 2  # lines count from 1, hub rows from 0
    assert "label -1 (unlabelled)" in err.problem and "row 1" in err.problem
    out_of_range = tmp_path / "oor.jsonl"
    write(out_of_range, json.dumps({"sentence1": "a", "sentence2": "b", "label": 2}) + "\n")
    with pytest.raises(ValueError, match="class id 2") as info:
        load_hf_pairs("rte", "train", path="json", data_files=str(out_of_range),
                      cache_dir=str(tmp_path / "c"))
    assert isinstance(info.value, DataFormatError) and info.value.line == 1


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_applies_the_file_checks(tmp_path: Path) -> None:
    """The hub loader refuses what read_pairs refuses: NUL in a text, a label that is not finite as float32."""
    nul = write(tmp_path / "nul.jsonl", json.dumps({"sentence1": "a", "sentence2": "b", "label": 1}) + "\n"
                + json.dumps({"sentence1": "c\u0000", "sentence2": "d", "label": 0}) + "\n")
    with pytest.raises(DataFormatError, match="NUL character") as info:
        load_hf_pairs("mrpc", "train", path="json", data_files=str(nul), cache_dir=str(tmp_path / "c"))
    assert info.value.line == 2 and "row 1" in info.value.problem
    big = write(tmp_path / "big.jsonl", json.dumps({"sentence1": "a", "sentence2": "b", "label": 1e39}) + "\n")
    reg = custom_task("score", "regression")
    with pytest.raises(DataFormatError, match="float32") as info:
        load_hf_pairs(reg, "train", path="json", data_files=str(big), cache_dir=str(tmp_path / "c"))
    assert info.value.line == 1


@pytest.mark.usefixtures("hf_offline")
def test_load_hf_pairs_missing_data_is_input_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputNotFoundError, match="nope.jsonl") as info:
        load_hf_pairs("mrpc", "train", path="json", data_files=str(missing), cache_dir=str(tmp_path / "c"))
    assert info.value.args[0].startswith("hub:json/train: ")
    with pytest.raises(InputNotFoundError, match="no-such-folder"):
        load_hf_pairs("mrpc", "train", path=str(tmp_path / "no-such-folder"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="no Hugging Face dataset"):
        load_hf_pairs(custom_task("toy", "binary", labels=("no", "yes")), "train")
