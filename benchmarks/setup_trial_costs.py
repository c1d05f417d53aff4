"""What does one trial of a finished search cost? Medians from its trials' user attributes.

    python -m benchmarks.setup_trial_costs --storage sqlite:///nas.db --study vit-fashion_mnist_6k

Over the trials that were evaluated (not reused): scoring time (extract + validation top-1 +
FLOP count), latency-measurement time, the wall time per trial including Optuna's sampling and
SQL writes, and the spread of the measured latencies (range, median CV inside a measurement).
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
