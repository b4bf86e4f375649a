"""The package's shape holds: a public surface that resolves, rooms that import only downward, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dsembed

SRC = Path(dsembed.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"

# A room may import the rooms listed for it (and the shared leaf modules), nothing else.
LEAVES = {"errors", "artifacts", "tasks", "utils", "config", "bases"}
ALLOWED = {
    "data": set(),
    "bases": set(),
    "training": {"evaluation", "data"},
    "evaluation": {"data"},
    "teacher": {"data", "evaluation", "training", "student"},  # student.loss: the score scale of a logit
    "student": {"data", "evaluation", "training"},
    "retrieval": {"student", "data"},
    "serve": {"retrieval", "student", "data"},
    "export": {"student", "retrieval"},  # retrieval: the source student's store fingerprint in the export record
    "bench": {"retrieval", "student", "teacher", "data", "evaluation", "export"},
    "pipeline": {"data", "teacher", "student", "evaluation", "training", "augment"},
    "scale": {"teacher", "student", "retrieval", "data"},  # Ray jobs over the single-process writers
    "augment": {"data", "teacher", "student"},  # mined pairs scored by the teacher; student: encoder, scores
    "cli": {"*"},
}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _imports() -> dict[str, set[str]]:
    """dsembed module -> the dsembed modules it imports (at any depth in the file, lazy imports too)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        name = ".".join(parts)
        package = parts if rel.name == "__init__" else parts[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if target.startswith("dsembed"):
                    found.add(target)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("dsembed")}
        graph[name] = found
    return graph


def test_rooms_import_only_downward() -> None:
    problems = []
    for module, targets in _imports().items():
        room = _room(module)
        allowed = ALLOWED.get(room, set())
        for target in targets:
            other = _room(target)
            if other in (room, "dsembed") or other in LEAVES or "*" in allowed or other in allowed:
                continue
            problems.append(f"{module} imports {target}")
    assert not problems, problems


def test_the_model_never_imports_the_store() -> None:
    graph = _imports()
    assert not {t for m, ts in graph.items() if m.startswith("dsembed.student") for t in ts
                if t.startswith(("dsembed.retrieval", "dsembed.cli", "dsembed.serve"))}


def test_no_import_cycles_between_rooms() -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        edges.setdefault(_room(module), set()).update(_room(t) for t in targets if _room(t) != _room(module))
    edges.pop("dsembed", None)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in edges.get(start, ()))

    assert not [room for room in edges if room != "dsembed" and reaches(room, room, {room})]


def test_public_surface_resolves() -> None:
    for name in dsembed.__all__:
        assert getattr(dsembed, name) is not None, name


def test_readme_python_example_imports_what_exists() -> None:
    block = re.search(r"```python\n(from dsembed import \(.*?\))", README.read_text(), flags=re.S)
    assert block is not None
    names = re.findall(r"\w+", block.group(1).split("import", 1)[1])
    assert names and all(name in dsembed.__all__ for name in names), names


def test_artefact_names_are_spelled_once() -> None:
    """Every file name dsembed writes lives in artifacts.py; no other module spells one of them."""
    from dsembed import artifacts

    names = {v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, str) and "." in v}
    names |= {v for v in artifacts.STORE_COPIES.values()}
    spelled = []
    for path in SRC.rglob("*.py"):
        if path.name == "artifacts.py":
            continue
        text = path.read_text()
        spelled += [f"{path.relative_to(SRC)}: {n}" for n in names if f'"{n}"' in text or f"'{n}'" in text]
    assert not spelled, spelled


def test_every_import_in_the_readme_resolves() -> None:
    """Each ``from dsembed… import …`` in the README's Python blocks names something that exists there."""
    import importlib

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = []
    for block in blocks:
        for module, names in re.findall(r"^from (dsembed[\w.]*) import \(?([^)\n]*(?:\n[^)\n]*)*?)\)?$", block,
                                        flags=re.M):
            for name in re.findall(r"\w+", names.split("#")[0]):
                found.append((module, name))
                assert hasattr(importlib.import_module(module), name), f"README: from {module} import {name}"
    assert len(found) > 5, found
