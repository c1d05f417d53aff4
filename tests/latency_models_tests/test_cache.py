"""The latency table in SQL: measure once per (architecture, settings, hardware), across
processes and studies; claims of dead processes are taken over; failures leave no claim."""

import json
import multiprocessing
import os
import time

import optuna
import pytest
import sqlalchemy as sa

from latency_models import create_profiler
from latency_models._base import measure_arch
from latency_models.cache import TABLE, LatencyCache
from tests.conftest import nas_in_process, run_nas

# What the latency table keeps and shares is under test here, not how quiet the machine is: any
# load is quiet enough (a figure measured above the limit is never stored: test_quiet.py).
ANY_LOAD = {"max_background_load": 64.0}
FAST = ["+space=tiny", "supernet.epochs=1", "profiler.runs=10", "profiler.warmup=2", "n_trials=6"]
FAST += ["profiler.max_background_load=64"]


def _measure_in_process(url: str, log: str, arch_json: str) -> None:
    from latency_models import create_profiler
    from search_spaces.arch import arch_from_dict

    arch = arch_from_dict(json.loads(arch_json))
    profiler = create_profiler("onnxruntime", runs=5, warmup=1, **ANY_LOAD)

    def measure():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)  # both processes ask while the first is still measuring
        return profiler.measure(arch)

    LatencyCache(url).measure(profiler, arch.key(), arch.to_json(), measure)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_processes_measure_once(tmp_path, tiny_space, database, request):
    if database == "sqlite":
        url = f"sqlite:///{tmp_path}/nas.db"
    else:
        url = request.getfixturevalue("postgres_url")
    log = tmp_path / "measured.log"
    arch = tiny_space.largest()
    ctx = multiprocessing.get_context("spawn")
    args = (url, str(log), arch.to_json())
    workers = [ctx.Process(target=_measure_in_process, args=args) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(log.read_text().split()) == 1  # one process measured, the other waited for its figure
    cache = LatencyCache(url)
    assert cache.count() == 1
    profiler = create_profiler("onnxruntime", runs=5, warmup=1, **ANY_LOAD)
    assert cache.lookup(profiler, arch.key()).n_runs >= 5


def test_settings_and_hardware_key_the_figure(tmp_path, tiny_space):
    cache = LatencyCache(f"sqlite:///{tmp_path}/nas.db")
    arch = tiny_space.smallest()
    five, six = (create_profiler("onnxruntime", runs=n, warmup=1, **ANY_LOAD) for n in (5, 6))
    first, hit = measure_arch(five, arch, None, cache)
    assert not hit
    again, hit = measure_arch(five, arch, None, cache)
    assert hit and again == first  # the stored figure, not a new measurement
    _, hit = measure_arch(six, arch, None, cache)
    assert not hit and cache.count() == 2  # other settings: measured anew
    with cache.engine.connect() as conn:
        rows = conn.execute(sa.select(TABLE)).all()
    assert {r.hardware_id for r in rows} == {rows[0].hardware_id} and rows[0].hardware_id != "any"
    assert json.loads(rows[0].hardware)["cpu_count"] >= 1 and rows[0].seconds > 0
    # Proxies are not hardware figures: computed, never stored.
    _, hit = measure_arch(create_profiler("flops"), arch, None, cache)
    assert not hit and cache.count() == 2


def test_dead_owner_claim_is_taken_over_and_failures_release_it(tmp_path, tiny_space):
    cache = LatencyCache(f"sqlite:///{tmp_path}/nas.db")
    profiler = create_profiler("onnxruntime", runs=5, warmup=1, **ANY_LOAD)
    arch = tiny_space.smallest()

    def boom():
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        cache.measure(profiler, arch.key(), arch.to_json(), boom)
    with cache.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(TABLE)).scalar_one() == 0

    # A process that claimed the row and died (SIGKILL) leaves it "measuring".
    import socket

    from latency_models._base import profiler_key
    from latency_models.cache import _sha1
    from latency_models.hardware import fingerprint_id

    dead = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    with cache.engine.begin() as conn:
        conn.execute(
            TABLE.insert().values(
                subject_key=arch.key(),
                profiler_key=_sha1(profiler_key(profiler)),
                hardware_id=fingerprint_id(),
                status="measuring",
                owner=f"{socket.gethostname()}:{dead.pid}",
                claimed_at=time.time(),
            )
        )
    result, hit = cache.measure(profiler, arch.key(), arch.to_json(), lambda: profiler.measure(arch))
    assert not hit and result.n_runs >= 5 and cache.count() == 1


@pytest.mark.slow
def test_second_study_in_another_process_measures_nothing(tmp_path):
    first = nas_in_process("search", *FAST, "study_name=a", cwd=tmp_path)  # in this process
    assert first.returncode == 0, first.stderr
    assert "from the latency table" in first.stdout
    storage = f"sqlite:///{tmp_path}/nas.db"
    cache = LatencyCache(storage)
    stored = cache.count()
    study_a = optuna.load_study(study_name="a", storage=storage)
    keys_a = {t.user_attrs["arch_key"] for t in study_a.trials}
    assert stored == len(keys_a) > 0

    # Same space, seed and settings, another study: every architecture is already in the table.
    second = run_nas("search", *FAST, "study_name=b", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    expected = f"(latency: 0 measured, {len(keys_a)} from the latency table, 0 computed)"
    assert expected in " ".join(second.stdout.split())
    study_b = optuna.load_study(study_name="b", storage=storage)
    assert {t.user_attrs["latency_source"] for t in study_b.trials} == {"table"}
    assert cache.count() == stored
    by_key = {t.user_attrs["arch_key"]: t.values[1] for t in study_a.trials}
    assert all(by_key[t.user_attrs["arch_key"]] == t.values[1] for t in study_b.trials)


@pytest.mark.slow
def test_search_on_postgresql_keeps_study_and_latency_table_there(tmp_path, postgres_url):
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")  # as a user writes it
    result = nas_in_process("search", *FAST, f"storage={plain}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny-fashion_mnist_6k", storage=postgres_url)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 6
    assert LatencyCache(postgres_url).count() == len({t.user_attrs["arch_key"] for t in study.trials})
    assert not (tmp_path / "nas.db").exists()
