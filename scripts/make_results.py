#!/usr/bin/env python
"""Generate RESULTS.md from the records under results/ (never edit RESULTS.md by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from dsembed.artifacts import RETRIEVAL_QNLI_SPLIT, RUN_PLOT, RUN_RECORD, SPEED_RECORD
from dsembed.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
PAPER_AVG_DEGRADATION = 4.6  # Barkan et al. 2020, average over five GLUE pair tasks
CLEAR_MARGIN = 1.0  # points of the main metric a teacher must gain over the best embedding baseline

NAMES = {
    "teacher": "teacher (cross-encoder)",
    "dse_student": "DSE student",
    "label_only_student": "label-only student (α=0)",
    "pretrained_cosine": "pretrained encoder + cosine",
    "dse_mined_student": "DSE student + mined pairs",
    "augsbert_student": "AugSBERT student (mined pairs)",
}


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


SECTIONS = {
    "full": ("Full-size runs", "All training pairs, default hyper-parameters, metrics on the GLUE dev set (in %). "
             "The teacher is the one named under each table."),
    "full_minilm_teacher": ("Full-size runs with the earlier MiniLM cross-encoder teacher",
                            "Same students and baselines, distilled from an all-MiniLM-L6-v2 cross-encoder "
                            "fine-tuned on this CPU (kept for comparison of teacher routes)."),
    "full_seed43": ("Full-size DSE students, seed 43, with test metrics", "All training pairs, default "
                    "hyper-parameters, the ensemble teacher of the full-size runs above; the seed-43 DSE students "
                    "of the 8-epoch sweep rows below (`epochs-8-seed-43`), trained again from scratch for the "
                    "deployment benchmark (`results/export/`), so their test metrics can be reported (no "
                    "label-only student here). Retrained, MRPC gives the sweep's dev F1 to the last digit and "
                    "STS-B its dev Spearman within 0.02. Dev and test metrics in %."),
    "quick": ("Pipeline runs: profile `quick`, one seed", "Reduced configuration (the main job before the "
              "augmentation stage); indicative only."),
}


def _teacher_text(rec: dict[str, Any]) -> str:
    """Which teacher a record used, and where and how long it trained."""
    info = rec.get("stages", {}).get("teacher", {})
    if info.get("source") == "logits bundle":
        bundle = info["bundle"]
        members = bundle.get("members", [bundle])
        devices = sorted({(m.get("environment") or {}).get("cuda") or "CPU" for m in members})
        seconds = [m.get("teacher_train_wall_seconds") for m in members if m.get("teacher_train_wall_seconds")]
        bases = sorted({m.get("base_name", "?") for m in members})
        what = (f"ensemble (mean logits) of {len(members)} {', '.join(bases)} cross-encoders" if len(members) > 1
                else f"{', '.join(bases)} cross-encoder")
        took = f", {sum(seconds):.0f} s of teacher training in all" if seconds else ""
        return (f"Teacher: {what}, trained on {', '.join(devices)}{took}; its logits were carried here as "
                f"bundles (`{info['path']}`).")
    recipe = info.get("recipe") or {}
    base = recipe.get("base") or _settings(rec["config"]).teacher.base
    return f"Teacher: {base} cross-encoder ({info.get('source', '?')}), fine-tuned on this machine."


def _stage_times(rec: dict[str, Any]) -> str:
    parts = [f"{k} {v:.0f}" for k, v in rec["stage_seconds"].items()]
    for name, info in rec.get("stages", {}).items():
        if info.get("source") == "reused" and "training" in info and f"{name}_train" not in rec["stage_seconds"]:
            parts.append(f"{name}_train {info['training'].get('train_seconds', float('nan')):.0f} (trained by an "
                         "earlier run with the same settings and reused)")
    return ", ".join(parts)


def pipeline_section(kind: str, records: list[dict[str, Any]]) -> list[str]:
    """One section of pipeline runs: per task its table, fidelity and provenance; then the targets."""
    title, blurb = SECTIONS[kind]
    lines = [f"## {title}", "", blurb, ""]
    degradations = []
    checks = []
    for rec in records:
        task = rec["task"]
        lines += _results_table(rec)
        if "dse_student" in rec["results"]:
            degradations.append(rec["relative_degradation_pct"]["dse_student"])
        checks += _task_checks(rec)
        lines += _fidelity_text(rec)
        lines += _provenance(rec)
        plot = Path(f"results/{kind}/{task}/{RUN_PLOT}")
        if (ROOT / plot).is_file():
            lines += [f"![{task} student vs teacher]({plot.as_posix()})", ""]
    if degradations:
        avg = sum(degradations) / len(degradations)
        verdict = "meets" if avg <= PAPER_AVG_DEGRADATION else "MISSES"
        caveat = (" Not meaningful here: on at least one task the student beats its teacher, i.e. the teacher was "
                  "too weak." if min(degradations) < 0 else "")
        checks.append(f"- Average relative degradation of the DSE student vs its teacher over {len(degradations)} "
                      f"task(s): {_fmt(avg)}% — {verdict} the paper's {PAPER_AVG_DEGRADATION}% target.{caveat}")
    if checks:
        lines += ["### Targets", "", *checks, ""]
    return lines


def _in_row_order(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """A results table's rows in the order of NAMES (teacher, students, baselines), unknown rows last."""
    return sorted(table.items(), key=lambda kv: list(NAMES).index(kv[0]) if kv[0] in NAMES else 99)


def _machine(rec: dict[str, Any]) -> str:
    env = rec["environment"]
    return f"machine: {env['platform']}, {env['cpu_count']} CPUs, torch {env['torch']}. Finished {rec['finished_at']}."


def _results_table(rec: dict[str, Any]) -> list[str]:
    """A task's heading and its table: every model's dev metrics and relative degradation vs the teacher."""
    task, main = rec["task"], rec["main_metric"]
    metrics = sorted({m for r in rec["results"].values() for m in r})
    lines = [f"### {task.upper()} ({rec['train_pairs']} train pairs, {rec['dev_pairs']} dev pairs)", ""]
    lines.append("| model | " + " | ".join(metrics) + f" | rel. degradation of {main} vs teacher (%) |")
    lines.append("|---|" + "---:|" * (len(metrics) + 1))
    ordered = _in_row_order(rec["results"])
    for name, values in ordered:
        deg = rec["relative_degradation_pct"].get(name)
        lines.append(f"| {NAMES.get(name, name)} | " + " | ".join(_fmt(values.get(m)) for m in metrics)
                     + f" | {_fmt(deg, signed=True)} |")
    test = rec.get("test_results") or {}
    if test:  # reported where labels exist, never selected on
        lines += ["", f"Test split ({rec['test_pairs']} pairs; checkpoints were selected on dev):", "",
                  "| model (test) | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        for name, values in _in_row_order(test):
            lines.append(f"| {NAMES.get(name, name)} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")
    return lines


def _task_checks(rec: dict[str, Any]) -> list[str]:
    """A task's target verdicts: DSE vs label-only, teacher vs the best embedding baseline, main job time."""
    task, main, res = rec["task"], rec["main_metric"], rec["results"]
    checks = []
    if "dse_student" in res and "label_only_student" in res:
        ok = res["dse_student"][main] > res["label_only_student"][main]
        checks.append(f"- {task}: DSE student {'beats' if ok else 'does NOT beat'} the label-only student on "
                      f"{main} ({_fmt(res['dse_student'][main])} vs {_fmt(res['label_only_student'][main])}).")
    baselines = {k: v[main] for k, v in res.items() if k in ("label_only_student", "pretrained_cosine")}
    if baselines and "teacher" in res:
        best_name = max(baselines, key=baselines.get)
        margin = res["teacher"][main] - baselines[best_name]
        verdict = "clearly beats" if margin >= CLEAR_MARGIN else "does NOT clearly beat"
        checks.append(f"- {task}: teacher {verdict} the best embedding baseline ({NAMES[best_name]}) on {main}: "
                      f"{_fmt(res['teacher'][main])} vs {_fmt(baselines[best_name])} (margin "
                      f"{_fmt(margin, signed=True)}; 'clear' = at least {CLEAR_MARGIN} point).")
    if "main_job_wall_seconds" in rec:
        wall = rec["main_job_wall_seconds"]
        checks.append(f"- {task}: the main job took {wall} s end to end "
                      f"({'within' if wall < 600 else 'OVER'} the 10-minute target).")
    return checks


def _fidelity_text(rec: dict[str, Any]) -> list[str]:
    """How close each student's dev scores are to the teacher's (none for records made before fidelity)."""
    fidelity = rec.get("teacher_fidelity_dev")
    if not fidelity:
        return []
    parts = []
    for name, f in fidelity.items():
        agree = f", same decision as the teacher on {_fmt(f['decision_agreement'])}% of pairs" \
            if "decision_agreement" in f else ""
        parts.append(f"{NAMES.get(name, name)}: Spearman {_fmt(f.get('spearman'))}, logit MSE "
                     f"{f['logit_mse']:.2f}{agree}")
    return ["", "Fidelity to the teacher on the dev pairs (student score vs teacher score): " + "; ".join(parts) + "."]


def _provenance(rec: dict[str, Any]) -> list[str]:
    """Which teacher, stage wall times and load, machine and versions, and the command of one run."""
    times = _stage_times(rec)
    env = rec["environment"]
    load = rec.get("stage_load_average_after")
    load_text = (" Load average (1/5/15 min) after each stage: "
                 + ", ".join(f"{k} {'/'.join(f'{x:.1f}' for x in v)}" for k, v in load.items()) + "."
                 if load else " (This record predates per-stage load averages.)")
    return ["", _teacher_text(rec), "",
            f"Stage wall times (s): {times}.{load_text} Wall times are wall-clock on a shared 2-core "
            "machine; stages that overlapped other jobs (benchmarks, test runs) or were paused ran longer.", "",
            f"Machine: {env['platform']}, {env['cpu_count']} CPUs, torch threads {env['torch_threads']}, "
            f"GPU: {env['cuda'] or 'none'}; torch {env['torch']}, transformers {env['transformers']}, "
            f"sentence-transformers {env['sentence_transformers']}, dsembed {env['dsembed']}. "
            f"Finished {rec['finished_at']}.", "",
            f"Command: `{env['command']}`", ""]


def teacher_routes_section() -> list[str]:
    path = RESULTS / "teachers" / "routes.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    lines = ["## Teacher routes", "",
             f"Dev-set main metric of each teacher tried (from `{path.relative_to(ROOT).as_posix()}`, made by "
             "`python benchmarks/teacher_routes.py`; GPU teachers by `benchmarks/gpu_teachers.py`, log in "
             "`results/teachers/device_log.txt`).", ""]
    for task, entry in record["tasks"].items():
        main = entry["main_metric"]
        lines += [f"### {task.upper()}", "", f"| teacher | {main} | trained on | training wall time (s) |",
                  "|---|---:|---|---:|"]
        singles = []
        for route in entry["routes"]:
            value = route["metrics"][main]
            if route["members"] == 1 and "mpnet" in route["route"]:
                singles.append(value)
            seconds = route.get("train_seconds")
            lines.append(f"| {route['route']} | {value:.2f} | {route['device']} | "
                         f"{'–' if seconds is None else f'{seconds:.0f}'} |")
        for route in entry["routes"]:
            if "train_metrics" in route:
                margin = route.get("train_median_abs_margin")
                lines += ["", f"On the student's own training pairs the {route['route']} scores {main} "
                          f"{route['train_metrics'][main]:.2f}"
                          + (f", median |logit[1] − logit[0]| {margin:.2f}" if margin is not None else "")
                          + " (the closer to the labels, the less the distillation target adds to them)."]
        if len(singles) > 1:
            lines += ["", f"Single mpnet seeds: mean {sum(singles) / len(singles):.2f}, range {min(singles):.2f}–"
                      f"{max(singles):.2f}."]
        lines.append("")
    return lines


def _setting_name(path: Path) -> str:
    if path.parent.parent.name == "full":
        return "defaults (the full-size run above)"
    return path.parent.name.split("-", 1)[1]


def _settings(cfg: dict[str, Any]) -> PipelineConfig:
    """A record's run settings, whichever layout (flat or per stage) the record was written with."""
    return PipelineConfig.from_record(cfg)


def _student_setting(cfg: dict[str, Any]) -> str:
    """Every student setting a sweep varies, except the seed (seeds of one setting are averaged)."""
    student = _settings(cfg).student
    head_lr = student.head_learning_rate or student.learning_rate
    return (f"lr {student.learning_rate:g}, head lr {head_lr:g}, {student.epochs:g} epochs, "
            f"α {student.alpha:g}")


def _run_key(rec: dict[str, Any]) -> tuple[str, str, Any]:
    return rec["task"], _student_setting(rec["config"]), _settings(rec["config"]).seed


def _fidelity(rec: dict[str, Any]) -> str:
    fid = rec.get("teacher_fidelity_dev", {})
    return " / ".join(_fmt(fid.get(name, {}).get("spearman")) for name in ("dse_student", "label_only_student"))


def settings_summary(records: list[dict[str, Any]]) -> list[str]:
    """Seed means per (setting, task), then the issue's two targets for every setting run on all tasks."""
    from dsembed.evaluation import relative_degradation  # the one definition the records were made with

    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        if "label_only_student" not in rec["results"]:
            continue
        groups.setdefault(_student_setting(rec["config"]), {}).setdefault(rec["task"], []).append(rec)
    tasks = sorted({rec["task"] for rec in records})
    lines = ["### Per setting: seed means and the targets", "",
             "Each cell: DSE student / label-only student, mean over the seeds run (their number in brackets). "
             "The targets are judged on these means: DSE above label-only on every task, and the average relative "
             f"degradation of the DSE student vs the teacher at most {PAPER_AVG_DEGRADATION}%.", "",
             "| student settings | " + " | ".join(tasks) + " | DSE > label-only on every task | "
             "avg. DSE rel. degradation (%) |", "|---|" + "---|" * len(tasks) + "---|---:|"]
    for setting, by_task in sorted(groups.items()):
        cells, wins, degradations = [], [], []
        for task in tasks:
            recs = by_task.get(task, [])
            if not recs:
                cells.append("–")
                continue
            main = recs[0]["main_metric"]
            dse = sum(r["results"]["dse_student"][main] for r in recs) / len(recs)
            lo = sum(r["results"]["label_only_student"][main] for r in recs) / len(recs)
            teacher = sum(r["results"]["teacher"][main] for r in recs) / len(recs)
            cells.append(f"{_fmt(dse)} / {_fmt(lo)} ({len(recs)})")
            wins.append(dse > lo)
            degradations.append(relative_degradation(teacher, dse))
        complete = len(wins) == len(tasks)
        every = ("yes" if all(wins) else "no") if complete else "not run on every task"
        avg = _fmt(sum(degradations) / len(degradations)) if complete else "–"
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {every} | {avg} |")
    return [*lines, ""]


def sweeps_section() -> list[str]:
    """Student settings tried (each a full-size DSE + label-only pair) by benchmarks/student_sweep.sh."""
    paths = sorted((RESULTS / "sweeps").glob(f"*/{RUN_RECORD}")) if (RESULTS / "sweeps").is_dir() else []
    if not paths:
        return []
    # each task's full-size run (default settings) is the reference row of its sweep
    swept = {p.parent.name.split("-", 1)[0] for p in paths}
    fulls = [p for p in (RESULTS / "full").glob(f"*/{RUN_RECORD}") if p.parent.name in swept]
    # a sweep whose settings and seed are the defaults is the same run as the full-size one: listed once
    parsed = {p: json.loads(p.read_text()) for p in [*paths, *fulls]}
    default_runs = {_run_key(parsed[p]) for p in fulls}
    paths = [p for p in paths if _run_key(parsed[p]) not in default_runs]
    paths = sorted([*paths, *fulls],
                   key=lambda p: (p.parent.name.split("-", 1)[0], p.parent.parent.name != "full", p.parent.name))
    lines = ["## Student settings tried", "",
             "Full-size runs of `benchmarks/student_sweep.sh TASK NAME OPTIONS` (same mpnet-ensemble teacher; the "
             "DSE and label-only students of a row share every setting). Dev set, main metric.", "",
             "Fidelity: Spearman correlation between the student's and the teacher's dev-set scores, DSE / "
             "label-only (what distillation aims at; – for records made before it was recorded).", "",
             "ROC-AUC (binary tasks): the same difference in threshold-free ranking quality (– for records made "
             "before it was recorded, and for regression).", "",
             "| task | setting | student settings | DSE student | label-only student | DSE − label-only | teacher | "
             "DSE rel. degradation (%) | fidelity to teacher | DSE − label-only, ROC-AUC |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    records = []
    for path in paths:
        rec = parsed[path]
        records.append(rec)
        main, res = rec["main_metric"], rec["results"]
        cfg = rec["config"]
        options = f"{_student_setting(cfg)}, seed {_settings(cfg).seed}"
        dse, lo = res["dse_student"][main], res.get("label_only_student", {}).get(main)
        diff = None if lo is None else dse - lo
        auc = [res.get(name, {}).get("roc_auc") for name in ("dse_student", "label_only_student")]
        auc_diff = None if None in auc else auc[0] - auc[1]
        lines.append(f"| {rec['task']} | {_setting_name(path)} | {options} | "
                     f"{_fmt(dse)} | {_fmt(lo)} | {_fmt(diff, signed=True)} | {_fmt(res['teacher'][main])} | "
                     f"{_fmt(rec['relative_degradation_pct']['dse_student'], signed=True)} | {_fidelity(rec)} | "
                     f"{_fmt(auc_diff, signed=True)} |")
    runs = list(zip(paths, records, strict=True))
    # the summary also counts the full-size runs of tasks not swept yet, so no task is silently left out
    records += [json.loads(p.read_text()) for p in sorted((RESULTS / "full").glob(f"*/{RUN_RECORD}"))
                if p.parent.name not in swept]
    return [*lines, "", *settings_summary(records), *dev_curves(runs)]


def dev_curves(runs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The main dev metric after each epoch, for the runs (record path, parsed record) whose records keep
    it: a best epoch that is the last one says the run wanted more steps."""
    rows = []
    for path, rec in runs:
        main = rec["main_metric"]
        for name in ("dse_student", "label_only_student"):
            curve = rec["stages"].get(name, {}).get("training", {}).get("dev_curve")
            if not curve:
                continue
            values = [row.get(main) for row in curve]
            best = max(range(len(values)), key=lambda i: values[i] if values[i] is not None else float("-inf"))
            cells = [f"**{_fmt(v)}**" if i == best else _fmt(v) for i, v in enumerate(values)]
            rows.append(f"| {rec['task']} | {_setting_name(path)} | {_settings(rec['config']).seed} | "
                        f"{NAMES[name]} | {' · '.join(cells)} |")
    if not rows:
        return []
    return ["### Dev curves", "",
            "Main dev metric after each epoch (the selected epoch in bold), for records made since the curve is "
            "kept in the training record.", "",
            "| task | setting | seed | model | by epoch |", "|---|---|---:|---|---|", *rows, ""]


def diagnostics_section() -> list[str]:
    """Student fit to the teacher on its own training pairs (benchmarks/train_fidelity.py)."""
    paths = sorted((RESULTS / "diagnostics").glob("*-train-fidelity.json")) if (RESULTS / "diagnostics").is_dir() \
        else []
    if not paths:
        return []
    lines = ["## Diagnostics: how well the students fit the teacher on their own training pairs", "",
             "From `python benchmarks/train_fidelity.py RUN_DIR` (records in `results/diagnostics/`). Train: the "
             "pairs the students were fitted to; dev: held out (from the run's record). Spearman between student and "
             "teacher scores; logit MSE is the DSE loss term; main metric of each model on the training pairs.", "",
             "| run | model | train: main metric | train: Spearman to teacher | train: logit MSE | "
             "dev: Spearman to teacher |", "|---|---|---:|---:|---:|---:|"]
    for path in paths:
        rec = json.loads(path.read_text())
        run = path.name.removesuffix("-train-fidelity.json")
        main = rec["main_metric"]
        lines.append(f"| {run} | teacher | {_fmt(rec['teacher_train_metrics'].get(main))} | – | – | – |")
        for name, values in rec["students"].items():
            fid, dev = values["train_fidelity"], (rec.get("dev_fidelity") or {}).get(name, {})
            lines.append(f"| {run} | {NAMES.get(name, name)} | {_fmt(values['train_metrics'].get(main))} | "
                         f"{_fmt(fid.get('spearman'))} | {fid['logit_mse']:.2f} | {_fmt(dev.get('spearman'))} |")
    return [*lines, ""]


def speed_section() -> list[str]:
    records = sorted(RESULTS.glob(f"speed*/{SPEED_RECORD}"))  # results/speed, and a GPU run's results/speed-gpu
    if not records:
        return []
    from dsembed.bench import render_markdown  # the bench's own renderer (imports torch: only when needed)

    lines = ["## Speed: one query against N candidates", ""]
    for path in records:
        record = json.loads(path.read_text())
        lines += [render_markdown(record, path.relative_to(ROOT).as_posix()), ""]
    return lines


def retrieval_section() -> list[str]:
    """Ranking quality per retrieval set (records in results/retrieval/, written by benchmarks/retrieval_bench.py)."""
    records = sorted((RESULTS / "retrieval").glob("*.json")) if (RESULTS / "retrieval").is_dir() else []
    if not records:
        return []
    from dsembed.bench import render_retrieval_markdown

    lines = ["## Ranking quality: one query against every sentence of a set", ""]
    for path in records:
        lines += [render_retrieval_markdown(json.loads(path.read_text()), path.relative_to(ROOT).as_posix()), ""]
    return lines


def reliability_section() -> list[str]:
    """Kill -9 resumes, reader fuzzing and the service soak (records in results/reliability/)."""
    from dsembed.bench import reliability

    folder = RESULTS / "reliability"
    tables = {"kill9.json": reliability.kill_table, "fuzz.json": reliability.fuzz_table,
              "serve_soak.json": reliability.serve_table}
    lines: list[str] = []
    for name, table in tables.items():
        if (folder / name).is_file():
            lines += table(json.loads((folder / name).read_text()), f"results/reliability/{name}")
    layout = RESULTS / "layout" / "quick-mrpc" / "rerecord_check.json"
    if layout.is_file():
        check = json.loads(layout.read_text())
        same = sum(row["identical"] for row in check["values"])
        lines += ["### The package layout changed nothing", "", f"The quick MRPC main job run with the code before the "
                  f"layout change, re-evaluated by `benchmarks/rerecord.py --check-identical` with the new code: "
                  f"{same} of {len(check['values'])} metric, fidelity and degradation values identical to the last "
                  f"digit (`results/layout/quick-mrpc/`).", ""]
    return ["## Reliability", "", *lines] if lines else []


def _mean_std(values: dict[str, Any] | None) -> str:
    if values is None:
        return "–"
    return f"{values['mean']:.2f} (once)" if values["n"] == 1 else f"{values['mean']:.2f} ± {values['std']:.2f}"


def seed_summary_sections() -> list[str]:
    """The main job first, then every other seed-summary record under results/main_job/."""
    folder = RESULTS / "main_job"
    paths = sorted(folder.glob(f"*/{RUN_RECORD}"), key=lambda p: (p.parent.name != "mrpc", p.parent.name)) \
        if folder.is_dir() else []
    out: list[str] = []
    for path in paths:
        title = "The main job (seed means)" if path.parent.name == "mrpc" else \
            f"The main job's setting, {path.parent.name} (seed means)"
        out += seed_summary_section(json.loads(path.read_text()), title)
    return out


def full_mined_sections() -> list[str]:
    """Full-size seed means with teacher-scored mined pairs (benchmarks/full_mined.sh), one per task and budget."""
    folder = RESULTS / "full_mined"
    out: list[str] = []
    for path in sorted(folder.glob("*/record-x*.json")) if folder.is_dir() else []:
        budget = path.stem.removeprefix("record-x")
        out += seed_summary_section(json.loads(path.read_text()),
                                    f"Full size with mined pairs, {path.parent.name.upper()} ×{budget} (seed means)")
    return out


def qnli_half_section() -> list[str]:
    """QNLI, the fourth distillation task: its dev set's train half (split by question), seed means."""
    path = RESULTS / "qnli_half" / RUN_RECORD
    if not path.is_file():
        return []
    rec = json.loads(path.read_text())
    lines = seed_summary_section(rec, "A fourth task: QNLI's train half (full size, seed means)")
    split_file = path.parent / RETRIEVAL_QNLI_SPLIT
    if split_file.is_file():
        split = json.loads(split_file.read_text())
        lines[-1:-1] = [
            f"- The data: QNLI train is not in the shared copy, so QNLI dev ({split['questions']} questions) is "
            f"split by question (seed {split['seed']}): {split['train_half']['questions']} questions "
            f"({split['train_half']['pairs']} pairs) to distil on, held apart from the "
            f"{split['bench_half']['questions']} questions of the ranking benchmark (`qnli-bench`); the train "
            f"half is split again by question into train ({split['files']['train.tsv']} pairs) and dev "
            f"({split['files']['dev.tsv']} pairs, {split['dev_fraction']:.0%} of its questions), on which every "
            f"checkpoint is selected. Test = the benchmark half's {split['files']['test.tsv']} pairs, only "
            "reported. No question is in both halves, but "
            f"{split.get('answer_sentences_in_both_halves', 'an unknown number of')} answer sentences serve "
            "questions of both (QNLI pairs one Wikipedia sentence with several questions): the students saw "
            "those benchmark candidates in training, with other questions. Made by "
            "`benchmarks/retrieval_bench.py --export-qnli-train` (`results/qnli_half/qnli_split.json`)."]
    return lines


def _seed_teacher(rec: dict[str, Any]) -> str:
    """The teacher line, described anew from the first seed's teacher stage (the stored line may be older)."""
    from dsembed.pipeline.report import teacher_description

    stage = (rec.get("per_seed") or [{}])[0].get("stages", {}).get("teacher")
    return teacher_description(stage) if stage else rec["teacher"]


def seed_summary_section(rec: dict[str, Any], title: str) -> list[str]:
    """One seed summary: seed means ± sample std of every row, the paired differences to label-only."""
    main, seeds = rec["main_metric"], rec["seeds"]
    lines = [f"## {title}", "",
             f"`{rec['environment']['command']}` — {rec['task'].upper()}, {rec['train_pairs']} labelled train "
             f"pairs per seed, profile `{rec['profile']}`, seeds {', '.join(map(str, seeds))}; mean ± sample "
             f"standard deviation over the seeds. Teacher: {_seed_teacher(rec)}. Checkpoints are selected on dev; test "
             "is only reported.", ""]
    metrics = sorted({m for r in rec["results"].values() for m in r})
    for split, key in (("dev", "results"), ("test", "test_results")):
        table = rec.get(key) or {}
        if not table:
            continue
        lines += [f"| model ({split}) | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        ordered = _in_row_order(table)
        for name, values in ordered:
            lines.append(f"| {NAMES.get(name, name)} | " + " | ".join(_mean_std(values.get(m)) for m in metrics)
                         + " |")
        lines.append("")
    for key, split in (("minus_label_only", "dev"), ("test_minus_label_only", "test")):
        for name, diff in (rec.get(key) or {}).items():
            per = ", ".join(f"{v:+.2f}" for v in diff["values"])
            lines.append(f"- {split} {main}, {NAMES.get(name, name)} − label-only: {diff['mean']:+.2f} ± "
                         f"{diff['std']:.2f} (per seed {per}; ahead on {sum(v > 0 for v in diff['values'])} of "
                         f"{diff['n']} seeds).")
    teacher, label_only = (rec["results"].get(k, {}).get(main) for k in ("teacher", "label_only_student"))
    if teacher and label_only and teacher["mean"] < label_only["mean"]:
        lines.append(f"- **The teacher is weaker than the label-only student** on dev {main} ({teacher['mean']:.2f} "
                     f"vs {label_only['mean']:.2f}): distilling it cannot lift pair {main} here; a stronger "
                     "teacher is needed before this task's DSE rows mean what they should.")
    fidelity = rec.get("teacher_fidelity_dev") or {}
    if fidelity:
        parts = [f"{NAMES.get(name, name)}: Spearman {_mean_std(f.get('spearman'))}, logit MSE "
                 f"{_mean_std(f.get('logit_mse'))}" for name, f in fidelity.items()]
        lines.append("- Fidelity to the teacher on the dev pairs (seed means): " + "; ".join(parts) + ".")
    mined = rec["per_seed"][0]["stages"].get("mined")
    if mined:
        lines.append(f"- Mined pairs (seed {seeds[0]}): {mined['used']} of the bundle's {mined['in_bundle']} "
                     f"(scope `{mined['scope']}`), by strategy {mined['strategies']}; scored by {mined['teacher']}.")
    wall = rec.get("main_job_wall_seconds", rec["wall_seconds"])
    verdict = f" ({'within' if wall < 600 else 'OVER'} the 10-minute target)" if "main_job_wall_seconds" in rec else \
        " of this command (a student an earlier command had finished is reused and costs nothing here)"
    lines += [f"- Wall time: {wall:.0f} s end to end{verdict}; "
              + _machine(rec), ""]
    return lines


def augment_sections() -> list[str]:
    """Per-strategy and per-budget rows of the DSE + mined student (benchmarks/augment_strategies.py)."""
    folder = RESULTS / "augment"
    out: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        out += augment_section(json.loads(path.read_text()), f"results/augment/{path.name}")
    return out


def augment_section(rec: dict[str, Any], source: str) -> list[str]:
    main, seeds = rec["main_metric"], rec["seeds"]
    lines = [f"## Which mining strategy pays: {rec['task'].upper()}, {rec['train_pairs']} labelled pairs per seed",
             "", f"`python {rec['command']}` (`{source}`), over the seeds {', '.join(map(str, seeds))} of the base "
             f"run `{rec['base_command']}`. Teacher: {rec['teacher']}; mined pairs from `{rec['mined_bundle']}`. "
             "Each row is the DSE + mined pairs student with the mined pairs restricted to the named strategies "
             "and at most *budget* × the labelled pairs (the pairs with the smallest pair hashes, so a smaller "
             "budget's pairs are a subset of a larger one's), at the same optimiser steps as the label-only "
             "student it is paired with (same seed, same labelled pairs). Mean ± sample std over the seeds; "
             "checkpoints selected on dev, test only reported.", "",
             f"| mined pairs | pairs used (per seed) | dev {main} | test {main} | dev − label-only | "
             "test − label-only | dev Spearman to teacher |", "|---|---|---:|---:|---:|---:|---:|"]

    def diff(values: dict[str, Any] | None) -> str:
        if not values:
            return "–"
        ahead = sum(v > 0 for v in values["values"])
        return f"{values['mean']:+.2f} ± {values['std']:.2f} ({ahead}/{values['n']})"

    def metric(table: dict[str, Any] | None) -> str:
        return _mean_std((table or {}).get(main))

    for row in rec["variants"]:
        strategies = row["strategies"] if row["strategies"] == "all" else "+".join(row["strategies"])
        cap = row["budget_per_labelled_pair"]
        budget = "whole bundle" if cap is None else f"≤ ×{cap:g}"
        fidelity = _mean_std((row.get("fidelity_dev") or {}).get("spearman"))
        lines.append(f"| {strategies}, {budget} | {', '.join(map(str, row['mined_pairs_used']))} | "
                     f"{metric(row['dev'])} | {metric(row['test'])} | {diff(row['dev_minus_label_only'])} | "
                     f"{diff(row['test_minus_label_only'])} | {fidelity} |")
    label_only, cosine = rec["label_only"], rec["pretrained_cosine"]
    lines.append(f"| label-only student (α=0) | – | {metric(label_only['dev'])} | {metric(label_only['test'])} | – "
                 f"| – | {_mean_std((label_only.get('fidelity_dev') or {}).get('spearman'))} |")
    if cosine.get("dev"):
        lines.append(f"| pretrained encoder + cosine | – | {metric(cosine['dev'])} | {metric(cosine['test'])} | – | – "
                     "| – |")
    best = max(rec["variants"], key=lambda r: r["dev"][main]["mean"])
    lines += ["", f"- Highest dev {main} (the only selection; test is reported): {best['variant']}. "
              "(n/n) counts the seeds on which the row is ahead of label-only.",
              f"- Wall time: {rec['wall_seconds']:.0f} s for the variants (the base run's students reused); "
              + _machine(rec), ""]
    return lines


def render() -> str:
    """RESULTS.md as the records under results/ say it should read."""
    out = ["# Results", "",
           "Generated by `python scripts/make_results.py` from the JSON records under `results/`; "
           "do not edit by hand. Each record names the command, machine and library versions that made it.", ""]
    out += seed_summary_sections()
    out += augment_sections()
    out += full_mined_sections()
    out += qnli_half_section()
    out += teacher_routes_section()
    for kind in SECTIONS:
        folder = RESULTS / kind
        records = [json.loads(p.read_text()) for p in sorted(folder.glob(f"*/{RUN_RECORD}"))] if folder.is_dir() else []
        if records:
            out += pipeline_section(kind, records)
    out += sweeps_section()
    out += diagnostics_section()
    out += speed_section()
    out += retrieval_section()
    out += reliability_section()
    export = RESULTS / "export" / "backends.json"
    if export.is_file():
        from dsembed.bench.reliability import export_table

        out += export_table(json.loads(export.read_text()), "results/export/backends.json")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    target = ROOT / "RESULTS.md"
    text = render()
    if "--check" in sys.argv[1:]:  # CI: a RESULTS.md out of step with its records (or edited by hand) fails
        if not target.is_file() or target.read_text() != text:
            sys.exit(f"{target} is not what the records under results/ give: run python scripts/make_results.py")
        print(f"{target} matches the records")
        return
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
