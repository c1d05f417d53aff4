"""Do measurement slots bias latency figures? The same models timed three ways, in one run:

    alone   slots=0: one measurement at a time, nothing else on the machine (after a warm-up pass)
    slots   --slots N measurements at once (default: what slots=auto gives here), each on a
            physical core of its own, while processes keep every other core computing (torch
            matrix products, one thread each, kept off the slot cores as search workers are)
    again   alone once more: the noise floor slot figures are judged against

    python -m benchmarks.measurement_slots +space=vit --archs 48 --out measurement_slots.json

Prints the distribution of slots / mean(alone, again) and again / alone median ratios (median,
quartiles, 5-95 %), and, for the conf/baselines timm models measured alone as ``nas run``'s
final pass measures them, each figure's per-call CV and the spread of its round medians.
The goal: median |slots/alone - 1| <= 2 %.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import statistics
import time
from types import SimpleNamespace

from benchmarks._harness import add_config_arguments, argument_parser, compose, load_space, write_result


def _spin(reserved: set[int], stop) -> None:
    """Computation beside the slots: matrix products on one thread, off the slot cores."""
    import torch

    from infra.locks import keep_off

    keep_off(reserved)
    torch.set_num_threads(1)
    a = torch.randn(384, 384)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _measure_on_slots(node: dict, archs: list[dict], ready, out) -> None:
    """One measuring process (a search worker's measurement): its architectures, in order."""
    from nas.latency import build_profiler
    from search_spaces.arch import arch_from_dict

    profiler = build_profiler(node)
    ready.wait()  # all measuring processes start together
    for i, arch in archs:
        out.put((i, profiler.measure(arch_from_dict(arch)).to_dict()))


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=20, method="inclusive")
    return {
        "median": statistics.median(ordered),
        "q25": q[4],
        "q75": q[14],
        "p5": q[0],
        "p95": q[18],
        "min": ordered[0],
        "max": ordered[-1],
        "median_abs_diff": statistics.median(abs(v - 1) for v in ordered),
    }


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--archs", type=int, default=48)
    parser.add_argument("--slots", type=int, default=None, help="slots at once (default: what auto gives)")
    parser.add_argument("--baselines", action="store_true", help="also the conf/baselines models' steadiness")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from latency_models._timing import slot_cores
    from nas.config import instantiate
    from nas.latency import build_profiler
    from nas.training.baselines import timm_model

    cfg = compose(args.overrides)
    node = dict(cfg.profiler)
    slots = args.slots if args.slots is not None else len(slot_cores("auto"))
    if slots < 1:
        raise SystemExit(f"slots=auto gives no slots on {os.cpu_count()} CPUs: pass --slots N")
    alone = build_profiler(node | {"slots": 0})
    slotted = node | {"slots": slots}
    reserved = set().union(*slot_cores(slots))
    space_name = next(o.split("=", 1)[1] for o in args.overrides if o.startswith("+space="))
    space = load_space(space_name, [o for o in args.overrides if not o.startswith("+space=")])
    rng = random.Random(0)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(args.archs - 2)]

    def one_at_a_time() -> list[dict]:
        return [alone.measure(a).to_dict() for a in archs]

    one_at_a_time()  # a warm-up pass: the host's first pass over fresh sessions runs slower
    started = time.perf_counter()
    first = one_at_a_time()
    t_alone = time.perf_counter() - started

    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    others = sorted(set(os.sched_getaffinity(0)) - reserved)
    spinners = [ctx.Process(target=_spin, args=(reserved, stop)) for _ in others]
    for p in spinners:
        p.start()
    time.sleep(2.0)  # the computation running before the measurements start
    shares = [[(i, archs[i].to_dict()) for i in range(k, len(archs), slots)] for k in range(slots)]
    ready = ctx.Barrier(slots + 1)
    measurers = [ctx.Process(target=_measure_on_slots, args=(slotted, s, ready, out)) for s in shares]
    for p in measurers:
        p.start()
    ready.wait(timeout=600)  # each process started and its profiler built: the timing starts now
    started = time.perf_counter()
    on_slots: dict[int, dict] = dict(out.get(timeout=1800) for _ in archs)
    t_slots = time.perf_counter() - started
    for p in measurers:
        p.join()
    stop.set()
    for p in spinners:
        p.join()
    again = one_at_a_time()

    # Against the mean of the two one-at-a-time passes around it (the host drifts slowly).
    ratio_slots = [
        on_slots[i]["median"] / ((first[i]["median"] + again[i]["median"]) / 2) for i in range(len(archs))
    ]
    ratio_again = [again[i]["median"] / first[i]["median"] for i in range(len(archs))]
    report = {
        "space": space_name,
        "profiler": alone.settings(),
        "slots": slots,
        "slot_cores": sorted(reserved),
        "computing_processes": len(others),
        "seconds": {"alone": round(t_alone, 1), "slots": round(t_slots, 1)},
        "slots_over_alone": _quantiles(ratio_slots),
        "again_over_alone": _quantiles(ratio_again),
        "archs": [
            {"arch": a.summary(), "alone": first[i], "slots": on_slots[i], "again": again[i]}
            for i, a in enumerate(archs)
        ],
    }
    print(f"{len(archs)} {space_name} members, {slots} slots {sorted(reserved)}, {len(others)} computing")
    print(f"one at a time {t_alone:.1f} s; on slots {t_slots:.1f} s ({t_alone / t_slots:.2f}x)")
    print("| ratio | median | quartiles | 5-95 % | median abs. difference |")
    print("| --- | --- | --- | --- | --- |")
    rows = (("slots / mean(alone, again)", "slots_over_alone"), ("again / alone", "again_over_alone"))
    for name, key in rows:
        q = report[key]
        print(
            f"| {name} | {q['median']:.4f} | {q['q25']:.4f}-{q['q75']:.4f} | {q['p5']:.4f}-{q['p95']:.4f} "
            f"| {q['median_abs_diff']:.2%} |"
        )
    if args.baselines:
        data = SimpleNamespace(
            num_classes=space.num_classes, in_channels=space.in_channels, image_size=space.image_size
        )
        shape = (data.in_channels, data.image_size, data.image_size)
        models = instantiate("baselines", cfg.baselines).models
        report["baselines"] = {}
        print("| baseline | median ms | per-call CV | round medians' spread |")
        print("| --- | --- | --- | --- |")
        for name, kwargs in models.items():
            figure = alone.measure_module(timm_model(name, data, **dict(kwargs)).eval(), shape)
            report["baselines"][name] = figure.to_dict()
            print(f"| {name} | {figure.median:.4f} | {figure.cv:.1%} | {figure.spread:.2%} |")
    write_result(args.out, report)


if __name__ == "__main__":
    main()
