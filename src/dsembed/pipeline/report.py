"""What a run prints and writes about itself: the teacher in one line, the dev table, the test line."""

from __future__ import annotations

from typing import Any

# How each row of a run is named in the printed tables.
ROW_LABELS = {"teacher": "teacher (cross-encoder)", "dse_student": "DSE student (alpha>0)",
              "label_only_student": "label-only student (alpha=0)", "pretrained_cosine": "pretrained encoder + cosine",
              "dse_mined_student": "DSE student + mined pairs", "augsbert_student": "AugSBERT student (mined pairs)"}


def _bundle_base(member: dict[str, Any]) -> str:
    """The teacher's base model, and its epochs where the bundle's teacher record has them."""
    recipe = (member.get("teacher_info") or {}).get("recipe") or {}
    base = member.get("base_name") or recipe.get("base") or "?"
    return f"{base} ({recipe['epochs']:g} epoch{'s' if recipe['epochs'] != 1 else ''})" \
        if "base_name" not in member and "epochs" in recipe else base


def _bundle_device(member: dict[str, Any]) -> str:
    if "environment" not in member:
        return "a device the bundle does not record"
    return member["environment"].get("cuda") or "CPU"


def teacher_description(info: dict[str, Any]) -> str:
    """One line saying which teacher a run used (printed with the table, written into model cards)."""
    source = info.get("source")
    if source == "logits bundle":
        members = info.get("bundle", {}).get("members") or [info.get("bundle", {})]
        names = sorted({_bundle_base(m) for m in members})
        devices = sorted({_bundle_device(m) for m in members})
        what = f"ensemble (mean logits) of {len(members)} {', '.join(names)} cross-encoders" if len(members) > 1 \
            else f"{', '.join(names)} cross-encoder"
        return f"{what}, trained on {', '.join(devices)}; logits carried as bundles ({info.get('path')})"
    if source == "given":
        return f"the cross-encoder {info.get('path')}"
    recipe = info.get("recipe") or {}
    return (f"{recipe.get('base', '?')} cross-encoder fine-tuned by dsembed ({recipe.get('epochs', '?')} epochs, "
            f"lr {recipe.get('learning_rate', '?')})")


def format_table(record: dict[str, Any]) -> str:
    """The dev-set comparison table printed at the end of a pipeline run."""
    metrics = sorted({m for r in record["results"].values() for m in r})
    rows = [["model", *metrics, f"rel. degr. {record['main_metric']} %"]]
    for name, values in record["results"].items():
        deg = record["relative_degradation_pct"].get(name)
        rows.append([ROW_LABELS.get(name, name), *(f"{values[m]:.2f}" if m in values else "-" for m in metrics),
                     "-" if deg is None else f"{deg:+.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    head = f"{record['task']} dev ({record['dev_pairs']} pairs), trained on {record['train_pairs']} pairs, " \
           f"profile={record['profile']}"
    teacher = f"Teacher: {teacher_description(record['stages']['teacher'])}"
    return "\n".join([head, teacher, *lines, *_test_lines(record)])


def _test_lines(record: dict[str, Any]) -> list[str]:
    """The main metric on the labelled test split, where there is one (reported, never selected on)."""
    tests = record.get("test_results")
    if not tests:
        return []
    main = record["main_metric"]
    cells = ", ".join(f"{name} {values[main]:.2f}" for name, values in tests.items() if main in values)
    return [f"test ({record['test_pairs']} pairs) {main}: {cells}"]
