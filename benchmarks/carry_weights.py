"""Move a model's weights to a machine that only accepts small uploads (the lent GPU machine).

``pack`` byte-plane-shuffles the float32 data of a safetensors file (sign/exponent bytes compress
well once grouped), xz-compresses it and cuts it into parts below a size limit; ``unpack``
reverses that and refuses the result unless its sha256 is the pinned one. Exact, not lossy:
the GPU teacher then starts from the very weights that were verified here.

    python benchmarks/carry_weights.py pack MODEL.safetensors OUT_DIR --part-mib 62 --first-part-mib 44
    python benchmarks/carry_weights.py unpack PART_DIR MODEL.safetensors --sha256 HEX
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import struct
import sys
from pathlib import Path

import numpy as np

MIB = 1 << 20


def _shuffle(raw: bytes) -> bytes:
    header_len = struct.unpack("<Q", raw[:8])[0]
    head, data = raw[: 8 + header_len], np.frombuffer(raw[8 + header_len:], dtype=np.uint8)
    if len(data) % 4:
        raise ValueError("data section is not a whole number of 4-byte words")
    return head + data.reshape(-1, 4).T.tobytes()


def _unshuffle(blob: bytes) -> bytes:
    header_len = struct.unpack("<Q", blob[:8])[0]
    head, planes = blob[: 8 + header_len], np.frombuffer(blob[8 + header_len:], dtype=np.uint8)
    return head + planes.reshape(4, -1).T.tobytes()


def pack(model: Path, out: Path, part_mib: float, first_part_mib: float) -> None:
    raw = model.read_bytes()
    blob = lzma.compress(_shuffle(raw), preset=3)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(first_part_mib * MIB)]
    while sum(sizes) < len(blob):
        sizes.append(int(part_mib * MIB))
    start = 0
    for i, size in enumerate(sizes):
        (out / f"part{i + 1}").mkdir(exist_ok=True)
        (out / f"part{i + 1}" / "blob").write_bytes(blob[start:start + size])
        start += size
    print(f"{model}: {len(raw)} bytes -> {len(blob)} compressed, {len(sizes)} parts; "
          f"sha256 {hashlib.sha256(raw).hexdigest()}")


def unpack(parts: Path, model: Path, sha256: str) -> None:
    files = sorted(parts.glob("part*/blob"), key=lambda p: int(p.parent.name.removeprefix("part")))
    raw = _unshuffle(lzma.decompress(b"".join(f.read_bytes() for f in files)))
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        sys.exit(f"sha256 mismatch after unpacking {len(files)} parts: {digest} != {sha256}")
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(raw)
    print(f"{model}: {len(raw)} bytes from {len(files)} parts, sha256 verified")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("model", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part-mib", type=float, default=62)
    p.add_argument("--first-part-mib", type=float, default=62)
    u = sub.add_parser("unpack")
    u.add_argument("parts", type=Path)
    u.add_argument("model", type=Path)
    u.add_argument("--sha256", required=True)
    args = parser.parse_args()
    if args.cmd == "pack":
        pack(args.model, args.out, args.part_mib, args.first_part_mib)
    else:
        unpack(args.parts, args.model, args.sha256)


if __name__ == "__main__":
    main()
