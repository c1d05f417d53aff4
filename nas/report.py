"""``nas report``: one page (HTML with the figure inside) and one PNG per study.

What it shows: every scored candidate and the search's Pareto front (validation top-1 with
inherited weights against measured latency); the front members retrained on their own (``nas
train``: test top-1 where the dataset has a test split, else validation); the timm baselines
trained with the same recipe and measured by the same profiler; for each baseline, the best found
model at equal or lower latency; and the hypervolume of this study against the number of trials,
beside the other studies of the same space, data and profiler in the storage (e.g. the random
baseline), with the trials this study needed to reach each one's final hypervolume.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from infra.errors import UserError
from infra.files import atomic_path
from nas.comparison import compare, trained_models
from nas.records import RUN_PHASES_ATTR, STUDY_ATTR, RunRecord, file_safe
from nas.study import completed, latency, load_existing_study, reading_storage, top1

HV_POINTS = 200  # hypervolume curves: at most this many points per study


def _comparable(info: dict[str, Any], other: dict[str, Any]) -> bool:
    keys = ("space", "data_fingerprint", "profiler", "objectives")
    return all(info.get(k) == other.get(k) for k in keys)


def hypervolume_curve(trials: list[FrozenTrial], reference: np.ndarray) -> tuple[list[int], list[float]]:
    """(trial counts, hypervolume of the first n completed trials) for (top-1 max, latency min)."""
    from optuna._hypervolume import compute_hypervolume

    ordered = sorted(trials, key=lambda t: t.number)
    losses = np.array([(-top1(t), latency(t)) for t in ordered])
    counts = sorted({int(round(x)) for x in np.linspace(1, len(ordered), min(HV_POINTS, len(ordered)))})
    values = []
    for n in counts:
        points = losses[:n]
        points = points[(points < reference).all(axis=1)]
        values.append(float(compute_hypervolume(points, reference)) if len(points) else 0.0)
    return counts, values


def trials_to_reach(counts: list[int], values: list[float], target: float) -> int | None:
    return next((n for n, v in zip(counts, values) if v >= target * (1 - 1e-12)), None)


def _retrained(attrs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Trial number -> its best retrained record (the highest top-1 over inits and recipes) among
    runs trained to the end (a stopped run is listed apart, never as a result)."""
    best: dict[int, RunRecord] = {}
    for record in RunRecord.all_in(attrs).values():
        if record.score is None or record.stopped:
            continue
        for number in record.stands_for():  # every trial of the architecture it trained
            if number not in best or record.score > best[number].score:
                best[number] = record
    return {number: record.to_dict() for number, record in best.items()}


def run_report(cfg, config_dirs, console) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with reading_storage(cfg.storage) as storage:
        study = load_existing_study(storage, cfg.study_name)
        info = study.user_attrs.get(STUDY_ATTR, {})
        objectives = info.get("objectives", [])
        if not {"accuracy", "latency"} <= set(objectives):
            raise UserError(
                f"study {study.study_name!r} does not optimise accuracy and latency; nothing to report"
            )
        done = completed(study)
        if not done:
            raise UserError(f"study {study.study_name!r} has no completed trials; run nas search first")
        front = sorted((t for t in study.best_trials), key=latency)
        attrs = dict(study.user_attrs)
        studies = {study.study_name: (done, attrs.get("samplers", []))}
        for summary in optuna.get_all_study_summaries(storage):
            if summary.study_name == study.study_name:
                continue
            other = optuna.load_study(study_name=summary.study_name, storage=storage)
            if _comparable(info, other.user_attrs.get(STUDY_ATTR, {})) and completed(other):
                studies[other.study_name] = (completed(other), other.user_attrs.get("samplers", []))
    unit = done[0].user_attrs["latency"]["unit"]
    retrained = _retrained(attrs)
    found, baselines, stopped, alike = trained_models(attrs, {t.number: t for t in done}, unit)
    versus = compare(found, baselines)

    everything = [t for trials, _ in studies.values() for t in trials]
    reference = np.array(
        [-min(top1(t) for t in everything) + 1e-9, max(latency(t) for t in everything) * 1.0001]
    )
    curves = {name: hypervolume_curve(trials, reference) for name, (trials, _) in studies.items()}
    mine_counts, mine_values = curves[study.study_name]
    reach = []
    for name, (counts, values) in curves.items():
        if name != study.study_name:
            target = values[-1]
            reach.append(
                (
                    name,
                    ", ".join(studies[name][1]) or "?",
                    counts[-1],
                    target,
                    trials_to_reach(mine_counts, mine_values, target),
                )
            )

    # The figure: candidates, front, retrained, baselines | hypervolume against trials.
    fig, (ax, hv) = plt.subplots(1, 2, figsize=(13, 5.2))
    ax.scatter(
        [latency(t) for t in done], [top1(t) for t in done], s=8, c="0.8", label="candidates (inherited)"
    )
    ax.plot(
        [latency(t) for t in front], [top1(t) for t in front], "o-", c="tab:blue", label="front (inherited)"
    )
    by_number = {t.number: t for t in done}
    for f in found:  # retrained to the end of the recipe, at the latency it is compared at
        ax.plot([f.latency] * 2, [top1(by_number[f.trial]), f.top1], c="tab:green", lw=0.8)
        ax.scatter([f.latency], [f.top1], marker="D", c="tab:green", zorder=3)
    if found:
        ax.scatter([], [], marker="D", c="tab:green", label="found models retrained")
    for b in baselines:
        ax.scatter([b.latency], [b.top1], marker="*", s=120, c="tab:red", zorder=3)
        ax.annotate(b.name, (b.latency, b.top1), fontsize=7, xytext=(4, 2), textcoords="offset points")
    if baselines:
        ax.scatter([], [], marker="*", s=120, c="tab:red", label="timm baselines (trained)")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency ({unit}, {info.get('profiler', {}).get('name', '?')})")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(study.study_name)
    ax.legend(fontsize=8)
    for name, (counts, values) in curves.items():
        hv.plot(
            counts,
            values,
            label=f"{name} ({', '.join(studies[name][1]) or '?'})",
            lw=2 if name == study.study_name else 1,
        )
    hv.set_xlabel("completed trials")
    hv.set_ylabel(f"hypervolume ({unit} x %)")
    hv.set_title("hypervolume against trials")
    hv.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    png = buffer.getvalue()

    out = Path(cfg.out_dir or "report")
    out.mkdir(parents=True, exist_ok=True)
    stem = file_safe(study.study_name)
    with atomic_path(out / f"{stem}.png") as tmp:
        Path(tmp).write_bytes(png)
    phases = attrs.get(RUN_PHASES_ATTR) or []
    compared = (versus, stopped, alike, phases)
    page = _page(study.study_name, info, png, front, retrained, compared, reach, unit, len(done))
    with atomic_path(out / f"{stem}.html") as tmp:
        Path(tmp).write_text(page)
    console.print(
        f"Report of {study.study_name!r}: {len(front)} front members ({len(retrained)} retrained), "
        f"{len(versus)} baselines{'' if alike else ' (latencies not from one final pass)'}, "
        f"{len(stopped)} runs stopped early, {len(studies) - 1} other studies -> "
        f"{out / (stem + '.html')} and .png"
    )
    return 0


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are escaped here."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(name, info, png, front, retrained, compared, reach, unit, n_done) -> str:
    e = html.escape
    versus, stopped, alike, phases = compared
    front_rows = [
        [
            str(t.number),
            t.user_attrs.get("summary", ""),
            f"{latency(t):.4g}",
            f"{top1(t):.2f}",
            _cell(retrained.get(t.number), "val_top1"),
            _cell(retrained.get(t.number), "test_top1"),
        ]
        for t in front
    ]
    base_rows = [_versus_row(v) for v in versus]
    stopped_rows = [
        [
            r.name if r.trial is None else f"trial {r.trial}",
            f"{r.epochs} of {r.planned_epochs}",
            _top1(r.score),
        ]
        for r in stopped
    ]
    reach_rows = [
        [n, s, str(count), f"{target:.4g}", str(mine) if mine is not None else "not reached"]
        for n, s, count, target, mine in reach
    ]
    profiler = info.get("profiler", {})
    measured_by = f"{profiler.get('name')} {profiler.get('settings', '')}"
    alike_note = (
        "Every latency below comes from one final pass after the trainings (nas run): each model "
        "measured alone, one at a time, by the same profiler; a figure never measured quietly is marked *."
        if alike
        else "Latencies: found models at their search figure, baselines at the figure nas train took; "
        "they were not measured in one pass (nas run measures every model alike at the end)."
    )
    image = base64.b64encode(png).decode()
    parts = [
        f'<!doctype html><html><head><meta charset="utf-8"><title>nas report: {e(name)}</title>',
        f"<style>{STYLE}</style></head><body><h1>nas report: {e(name)}</h1>",
        f"<p>{n_done} completed trials; latency in {e(unit)} by {e(measured_by)}; "
        f"hardware {e(str(info.get('hardware', '?')))}.</p>",
        f'<img src="data:image/png;base64,{image}" alt="fronts, baselines, hypervolume" width="100%">',
        "<h2>Pareto front (inherited weights) and retrained</h2>",
        _table(
            [
                "trial",
                "architecture",
                "latency",
                "inherited val top-1",
                "retrained val top-1",
                "retrained test top-1",
            ],
            front_rows,
        ),
        "<h2>timm baselines against the found models</h2>",
        f"<p>{e(alike_note)} Only models trained to the end of the recipe take part.</p>",
        _table(
            [
                "baseline",
                "latency",
                "top-1",
                "best found at or under its latency",
                "its latency",
                "its top-1 (difference)",
                "fastest found of at least its top-1",
                "its latency (times faster)",
                "its top-1",
            ],
            base_rows,
        ),
    ]
    if stopped_rows:
        parts += [
            "<h2>Runs stopped early (not results)</h2>",
            "<p>A scheduler ended these before the recipe's last epoch: their figures are those of the "
            "epoch they reached, so they are neither drawn nor compared above.</p>",
            _table(["model", "epochs", "top-1 when stopped"], stopped_rows),
        ]
    if phases:
        last = phases[-1]
        rows = [[phase, f"{seconds:.1f}"] for phase, seconds in last.get("phases", {}).items()]
        parts += [
            f"<h2>Wall time of the last nas run ({e(str(last.get('started', '')))})</h2>",
            _table(["phase", "seconds"], rows + [["total", f"{last.get('total_s', 0):.1f}"]]),
        ]
    parts += [
        "<h2>Search efficiency</h2>",
        _table(
            ["other study", "sampler", "its trials", "its final hypervolume", "trials this study needed"],
            reach_rows,
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _top1(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(model) -> str:
    return f"{model.latency:.4g}{'' if model.quiet else ' *'}"


def _versus_row(v) -> list[str]:
    b = v.baseline
    row = [b.name, _ms(b), _top1(b.top1)]
    if v.best_within is None:
        row += ["none at or under this latency", "-", "-"]
    else:
        row += [v.best_within.name, _ms(v.best_within), f"{v.best_within.top1:.2f} ({v.gain():+.2f})"]
    if v.fastest_as_good is None:
        row += ["none of this top-1", "-", "-"]
    else:
        f = v.fastest_as_good
        row += [f.name, f"{_ms(f)} ({v.speedup():.2f}x)", f"{f.top1:.2f}"]
    return row


def _cell(record: dict[str, Any] | None, key: str) -> str:
    return "-" if record is None or record.get(key) is None else f"{record[key]:.2f}"
