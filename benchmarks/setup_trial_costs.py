"""Cost per trial of a finished search, from its trials' user attributes.

    python benchmarks/trial_costs.py --storage sqlite:///nas.db --study vit-fashion_mnist_6k

Prints medians of scoring time (extract + validation top-1 + FLOP count) and latency-measurement
time over trials that were evaluated (not reused), the wall time per trial including Optuna's
sampling and SQL writes, and the spread of the measured latencies.
"""

from __future__ import annotations

import argparse
import statistics

import optuna


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///nas.db")
    parser.add_argument("--study", required=True)
    args = parser.parse_args()
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    trials = [
        t
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        if "eval_seconds" in t.user_attrs and "reused_from" not in t.user_attrs
    ]
    wall = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    scoring = statistics.median(t.user_attrs["eval_seconds"] for t in trials)
    measuring = statistics.median(t.user_attrs["latency_seconds"] for t in trials)
    latencies = [t.user_attrs["latency"]["median"] for t in trials]
    cv = statistics.median(t.user_attrs["latency"]["cv"] for t in trials)
    print(f"trials evaluated: {len(trials)}")
    print(f"scoring median: {scoring:.3f} s; latency measurement median: {measuring:.3f} s")
    print(f"trial wall time median (with sampling and SQL writes): {statistics.median(wall):.3f} s")
    print(f"measured latency {min(latencies):.4f} .. {max(latencies):.4f} ms; median CV {cv:.1%}")


if __name__ == "__main__":
    main()
