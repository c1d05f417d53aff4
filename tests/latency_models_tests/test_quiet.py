"""Latencies measured alike: load is judged where a pinned measurement runs (its core and SMT
siblings), a figure taken above the load limit is retried and then flagged, never kept in the
latency table, and measurement slots (several measurements at once, each on a core of its own,
computation on the others) give the figures one-at-a-time measurement gives. Real ONNX Runtime
sessions, real processes keeping cores busy, a real SQLite latency table."""

import os
import random
import statistics
import subprocess
import sys
import threading
import time

import pytest

from infra.locks import keep_off, measuring_on_slot, slot_lock
from latency_models import create_profiler
from latency_models._base import measure_arch, reserved_cores
from latency_models._timing import LoadMeter, slot_cores
from latency_models.cache import LatencyCache

CORES = sorted(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="needs two cores")


def _busy(cpu: int) -> subprocess.Popen:
    """A process spinning on ``cpu`` (other work on the machine), returned once it spins: an
    interpreter's start on a loaded machine takes longer than any fixed pause."""
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}}); print(flush=True)\nwhile True: pass"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    process.stdout.readline()
    return process


def _stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def _archs(tiny_space, n):
    rng = random.Random(1)
    return [tiny_space.sample(rng) for _ in range(n)]


@needs_two_cores
def test_load_is_judged_near_the_measuring_core():
    """A busy core elsewhere counts for the machine, not near the pinned measurement."""
    here, there = CORES[-1], CORES[0]
    hog = _busy(there)
    try:
        time.sleep(0.3)
        meter = LoadMeter(here)
        os.sched_setaffinity(0, {here})
        meter.start()
        deadline = time.perf_counter() + 1.0
        while time.perf_counter() < deadline:  # the "measurement": this thread busy on its core
            pass
        load = meter.stop()
    finally:
        os.sched_setaffinity(0, set(CORES))
        _stop(hog)
    assert load.machine - load.near >= 0.5, load  # the spinning core is not near


def test_a_figure_taken_under_load_is_retried_flagged_and_not_kept(tmp_path, tiny_space):
    arch = _archs(tiny_space, 1)[0]
    cpu = CORES[-1]
    cache = LatencyCache(f"sqlite:///{tmp_path}/latency.db")
    strict = create_profiler(
        "onnxruntime", pin_cpu=cpu, slots=0, runs=30, warmup=5, max_background_load=0.05, retries=1
    )
    hog = _busy(cpu)  # other work on the very core the measurement is pinned to
    try:
        time.sleep(0.3)
        started = time.perf_counter()
        flagged, from_table = measure_arch(strict, arch, None, cache)
        seconds = time.perf_counter() - started
    finally:
        _stop(hog)
    assert not flagged.quiet and flagged.background_load > 0.05 and not from_table
    assert seconds > 0.2  # retried, with a pause, before it gave up
    assert cache.count() == 0  # never kept: the next measurement tries again
    assert flagged.to_dict()["quiet"] is False  # what a trial stores says so
    lenient = create_profiler(  # any load is quiet enough: the figure is kept
        "onnxruntime", pin_cpu=cpu, slots=0, runs=30, warmup=5, max_background_load=64.0, retries=1
    )
    kept, _ = measure_arch(lenient, arch, None, cache)
    assert kept.quiet and cache.count() == 1
    again, from_table = measure_arch(lenient, arch, None, cache)
    assert from_table and again == kept
    cache.close()


def test_slots_are_physical_cores_left_beside_computation():
    assert slot_cores(0) == [] and slot_cores("auto") == ([] if len(CORES) < 8 else slot_cores("auto"))
    with pytest.raises(ValueError, match="slots"):
        slot_cores(len(CORES))  # no core would be left to computation
    with pytest.raises(ValueError, match="slots"):
        slot_cores(-1)
    if len(CORES) >= 2:
        (only,) = slot_cores(1)
        assert CORES[-1] in only and CORES[0] not in only
        profiler = create_profiler("onnxruntime", slots=1)
        assert reserved_cores(profiler) == only
        assert "slots" not in profiler.settings()  # how measurements are scheduled, not what they measure
        assert reserved_cores(create_profiler("onnxruntime", slots=0)) == set()
        assert reserved_cores(create_profiler("flops")) == set()


@needs_two_cores
def test_computation_keeps_off_the_slots():
    reserved = {CORES[-1]}
    done = {}

    def worker():
        keep_off(reserved)
        done["affinity"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert done["affinity"] == set(CORES) - reserved
    assert os.sched_getaffinity(0) == set(CORES)  # only that thread moved


def test_two_slots_measure_at_once_and_a_third_waits(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path))
    slots = [slot_lock(90), slot_lock(91)]
    held, release, order = [], threading.Event(), []

    def hold():
        with measuring_on_slot(slots) as i:
            held.append(i)
            release.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    deadline = time.time() + 10
    while len(held) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert sorted(held) == [0, 1]  # both slots at once

    def third():
        with measuring_on_slot(slots) as i:
            order.append(("third", i))

    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(0.3)
    assert order == []  # both slots taken: it waits
    release.set()
    waiter.join(10)
    for t in holders:
        t.join(10)
    assert order and order[0][0] == "third"


@needs_two_cores
def test_slot_figures_match_one_at_a_time_figures(vit_space):
    """The same models timed alone on the machine (slots=0) and on a slot while another core
    computes (slots=1, a process spinning on the other core), alternately, four times over: the
    median ratio is near 1. A small VM's figures jump between speed levels from one measurement
    to the next (alone against alone too), so one pair proves nothing and the bound is loose;
    BENCHMARKS.md (section 12) has the distribution on a large machine."""
    archs = _archs(vit_space, 3)
    alone = create_profiler("onnxruntime", slots=0, runs=60, warmup=10, max_background_load=64.0)
    slotted = create_profiler("onnxruntime", slots=1, runs=60, warmup=10, max_background_load=64.0)
    ratios = []
    for _ in range(4):
        for arch in archs:
            first = alone.measure(arch).median
            hog = _busy(CORES[0])  # the search's computation, kept off the slot's core
            try:
                beside = slotted.measure(arch).median
            finally:
                _stop(hog)
            ratios.append(beside / first)
    assert 0.75 < statistics.median(ratios) < 1.33, ratios
