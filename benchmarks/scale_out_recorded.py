"""Do the latencies a K-worker ORT search records agree with the same models measured alone a
moment later, the search stopped?

    python -m benchmarks.scale_out_recorded --workers 2 --max-seconds 720

A background ``nas search profiler=onnxruntime`` records latencies as it runs. This process
watches the study (its reads under the shared lock, as a worker's); for the newest measured
trial it stops the whole search (SIGSTOP, see _scale_out.Background.signal) and measures that
architecture alone twice, then lets the search go on. Alone, the model is the one the worker
measured: extracted from the study's supernet with its trained weights, as ``nas export``
rebuilds it. Paired: recorded against the first alone figure; spread: the second alone figure
against the first. Every trial is a new architecture (random sampler, a space of ~10^16), so
each one is measured, none read from the latency table.
"""

from __future__ import annotations

import datetime
import signal
import statistics
import time

from benchmarks._harness import argument_parser, paired_summary, percent, write_result
from benchmarks._scale_out import Background, add_common_arguments, complete_trials, workdir_of


def study_supernet(study, arch):
    """The study's trained supernet, rebuilt as nas export rebuilds it (its stored space checked,
    its checkpoint read as data only)."""
    from nas.checkpoint import load_checkpoint
    from nas.export import stored_space
    from nas.records import STUDY_ATTR

    info = study.user_attrs[STUDY_ATTR]
    sizes = {k: getattr(arch, k) for k in ("image_size", "in_channels", "num_classes")}
    supernet = stored_space(info, study.study_name, **sizes).make_supernet()
    supernet.load_state_dict(load_checkpoint(info["supernet_path"], "cpu", keys=("model",))["model"])
    return supernet


def main() -> None:
    from infra.locks import computing
    from latency_models import create_profiler
    from nas.study import trial_arch

    parser = argument_parser(__doc__)
    add_common_arguments(parser, workers=2)
    parser.add_argument("--max-seconds", type=float, default=900, help="stop after this long")
    args = parser.parse_args()

    workdir = workdir_of(args)
    background = Background(workdir, "recorded", args.workers, "onnxruntime", args.extra)
    rows, seen, profiler, supernet = [], set(), None, None
    try:
        background.wait_for(1)
        study = background.study()
        deadline = time.monotonic() + args.max_seconds
        while time.monotonic() < deadline:
            with computing():  # polling is computation too: never beside a worker's measurement
                fresh = [
                    t
                    for t in complete_trials(study)
                    if t.number not in seen and t.user_attrs.get("latency_source") == "measured"
                ]
            seen.update(t.number for t in fresh)
            if not fresh:
                time.sleep(0.2)
                continue
            trial = max(fresh, key=lambda t: t.datetime_complete)  # the newest: the least time apart
            arch = trial_arch(trial)
            with computing():
                if profiler is None:
                    profiler = create_profiler("onnxruntime", **trial.user_attrs["profiler"]["settings"])
                    supernet = study_supernet(study, arch)
                model = supernet.extract(arch)
            background.signal(signal.SIGSTOP)
            try:
                gap = (datetime.datetime.now() - trial.datetime_complete).total_seconds()
                first, second = (profiler.measure(arch, model).median for _ in range(2))
            finally:
                background.signal(signal.SIGCONT)
            during = trial.user_attrs["latency"]
            rows.append(
                {
                    "trial": trial.number,
                    "worker": trial.user_attrs["worker"],
                    "recorded_ms": during["median"],
                    "recorded_background_load": during.get("background_load"),
                    "alone_ms": [first, second],
                    "seconds_after": round(gap, 2),
                }
            )
            if len(rows) % 10 == 0:
                print(f"{len(rows)} recorded latencies measured again alone", flush=True)
    finally:
        background.kill()

    result = {
        "workers": args.workers,
        "n": len(rows),
        "profiler_settings": profiler.settings() if profiler else None,
        "recorded_vs_alone": paired_summary([r["recorded_ms"] / r["alone_ms"][0] - 1 for r in rows]),
        "alone_vs_alone": paired_summary([r["alone_ms"][1] / r["alone_ms"][0] - 1 for r in rows]),
        "median_seconds_after": statistics.median(r["seconds_after"] for r in rows),
        "median_recorded_background_load": statistics.median(
            r["recorded_background_load"] or 0.0 for r in rows
        ),
        "rows": rows,
    }
    for key in ("recorded_vs_alone", "alone_vs_alone"):
        print(
            f"{key} ({result[key]['n']}): {percent(result[key])}; median |.| {result[key]['median_abs']:.1%}"
        )
    write_result(args.out or workdir / f"scale_out_recorded_{args.workers}w.json", result)


if __name__ == "__main__":
    main()
