"""Does the measuring process matter? The same architectures measured ABAB in this process and in
a spawned worker-like process (torch limited to 1 thread, as a local worker), seconds apart.

    python benchmarks/process_ab.py --storage sqlite:///<database of a scale_out.py agreement run> \
        --study agree-2w --n 20 --repeats 3

Prints per architecture the child/parent ratio of the medians, then the median over architectures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _child(conn, settings: dict) -> None:
    import torch

    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    torch.set_num_threads(1)
    profiler = create_profiler("onnxruntime", **settings)
    while (arch := conn.recv()) is not None:
        conn.send(profiler.measure(arch_from_dict(arch)).median)


def main() -> None:
    import optuna

    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trials = optuna.load_study(study_name=args.study, storage=args.storage).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,)
    )
    settings = trials[0].user_attrs["profiler"]["settings"]
    parent, child_end = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(child_end, settings))
    child.start()
    profiler = create_profiler("onnxruntime", **settings)
    ratios = []
    for t in trials[: args.n]:
        here, there = [], []
        for _ in range(args.repeats):  # A, B, A, B, ...
            here.append(profiler.measure(arch_from_dict(t.user_attrs["arch"])).median)
            parent.send(t.user_attrs["arch"])
            there.append(parent.recv())
        ratios.append(statistics.median(there) / statistics.median(here) - 1)
        print(f"trial {t.number}: child/parent {ratios[-1]:+.3f}  here {here}  child {there}", flush=True)
    parent.send(None)
    child.join()
    print(f"median child/parent - 1: {statistics.median(ratios):+.4f} (mean {statistics.mean(ratios):+.4f})")


if __name__ == "__main__":
    main()
