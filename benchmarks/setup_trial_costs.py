"""What does one trial of a finished search cost? Medians from its trials' user attributes.

    python -m benchmarks.setup_trial_costs --storage sqlite:///nas.db --study vit-fashion_mnist_6k

Over the trials that were evaluated (not reused): scoring time (extract + validation top-1 +
FLOP count), latency-measurement time, the wall time per trial including Optuna's sampling and
SQL writes, and the spread of the measured latencies (range, median CV inside a measurement).
Where the trials recorded them, the sums and medians of each part of a trial's wall time (the
sampler's ``ask``, the ``wait`` for a repeat's figures, scoring, the measurement's export, its wait
for a slot or the machine and its timing) and of what no part accounts for (SQL writes, start-up).
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks._harness import argument_parser, finished_trials, write_result


def trial_costs(storage: str, study: str) -> dict[str, Any]:
    trials = [
        t
        for t in finished_trials(storage, study)
        if "eval_seconds" in t.user_attrs and "reused_from" not in t.user_attrs
    ]
    latencies = [t.user_attrs["latency"]["median"] for t in trials]
    cvs = [t.user_attrs["latency"]["cv"] for t in trials if t.user_attrs["latency"].get("cv") is not None]
    return {
        "study": study,
        "trials_evaluated": len(trials),
        "scoring_median_s": round(statistics.median(t.user_attrs["eval_seconds"] for t in trials), 3),
        "latency_measurement_median_s": round(
            statistics.median(t.user_attrs["latency_seconds"] for t in trials), 3
        ),
        "trial_wall_median_s": round(
            statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in trials), 3
        ),
        "latency_range": [min(latencies), max(latencies)],
        "latency_unit": trials[0].user_attrs["latency"].get("unit", "ms"),
        "median_cv": statistics.median(cvs) if cvs else None,
        "parts": parts(finished_trials(storage, study)),
    }


def parts(trials: list) -> dict[str, dict[str, float]]:
    """Sum and median (s) of each recorded part of the trials' wall time, over the trials that
    recorded it; ``rest``: wall time minus the parts (evaluated trials only)."""

    def of(t) -> dict[str, float]:
        a = t.user_attrs
        out = {k: a[f"{k}_seconds"] for k in ("ask", "wait", "eval", "latency") if f"{k}_seconds" in a}
        if "reused_from" in a:  # its scoring and latency are the earlier trial's
            out = {k: v for k, v in out.items() if k in ("ask", "wait")}
        for k, v in ((a.get("latency") or {}).get("seconds") or {}).items():
            if k != "attempts" and "latency" in out:
                out[f"latency.{k}"] = v
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        out["rest"] = wall - sum(v for k, v in out.items() if "." not in k)
        return out

    rows = [of(t) for t in trials if "ask_seconds" in t.user_attrs]
    names = sorted({k for r in rows for k in r})
    return {
        k: {
            "sum": round(sum(r[k] for r in rows if k in r), 1),
            "median": round(statistics.median(r[k] for r in rows if k in r), 3),
            "trials": sum(k in r for r in rows),
        }
        for k in names
    }


def print_costs(c: dict[str, Any]) -> None:
    unit = c["latency_unit"]
    print(f"trials evaluated: {c['trials_evaluated']}")
    print(
        f"scoring median: {c['scoring_median_s']:.3f} s; "
        f"latency measurement median: {c['latency_measurement_median_s']:.3f} s"
    )
    print(f"trial wall time median (with sampling and SQL writes): {c['trial_wall_median_s']:.3f} s")
    low, high = c["latency_range"]
    cv = f"; median CV {c['median_cv']:.1%}" if c["median_cv"] is not None else ""
    print(f"measured latency {low:.4f} .. {high:.4f} {unit}{cv}")
    for name, p in c["parts"].items():
        print(f"  {name}: sum {p['sum']:.1f} s, median {p['median']:.3f} s over {p['trials']} trials")


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--storage", default="sqlite:///nas.db")
    parser.add_argument("--study", required=True)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    costs = trial_costs(args.storage, args.study)
    print_costs(costs)
    write_result(args.out, costs)


if __name__ == "__main__":
    main()
