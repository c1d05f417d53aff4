"""Searches measured by agents (``profiler=remote``): a real ``nas serve`` on loopback, agents in
processes of their own with the agent's install alone (no torch), the search in this process.

The search of 20 trials is served by an agent that is killed (SIGKILL) while it holds a lease:
the search waits, the lease expires and goes back to the queue, and once another agent joins the
search finishes, every figure measured on the target and stored under its fingerprint. A later
study is then served from the latency table with no agent alive; a figure nobody can measure
ends with a clear error instead of a wait; an unknown target is a one-line error."""

import json
import os
import signal
import threading
import time

import optuna
import pytest
import sqlalchemy as sa
import torch

from latency_models.cache import TABLE
from latency_models.hardware import fingerprint_id
from latency_models.onnx_io import to_onnx
from latency_models.remote import NoAgent, RemoteProfiler
from nas_agent.client import Client
from tests.conftest import run_in_process

pytestmark = [pytest.mark.xdist_group("agents"), pytest.mark.slow]

TARGET = "board"
SEARCH = [
    "+space=tiny",
    "supernet.epochs=1",
    "progress=false",
    "executor=inprocess",
    "profiler=remote",
    f"profiler.target={TARGET}",
    "profiler.runs=10",
    "profiler.warmup=2",
    "profiler.retries=0",
    "profiler.max_background_load=100",  # every figure kept: the test is about the queue
    "profiler.poll_s=0.1",
]
AGENT = ("lease_s=3", "poll_s=0.2")


def _wait_for(check, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_mid_lease_then_join(served, site, first, log: list) -> None:
    """After the first agent measured a few models: SIGKILL it while it holds a lease, wait until
    the search waits for the expired lease's request alone, then start another agent."""
    client = Client(served.base, served.write)

    def target():
        return client.call("GET", f"/api/agents/{TARGET}")

    try:
        _wait_for(lambda: target()["queue"]["done"] >= 5, "five figures")
        while True:
            _wait_for(lambda: target()["queue"]["leased"], "a lease")
            os.kill(first.pid, signal.SIGSTOP)  # frozen: does it still hold it?
            if target()["queue"]["leased"]:
                os.kill(first.pid, signal.SIGKILL)
                first.wait()
                break
            os.kill(first.pid, signal.SIGCONT)  # it had just finished: catch the next one
        log.append(("killed", time.time()))
        _wait_for(lambda: (t := target())["alive"] == 0 and t["queue"]["queued"], "the lease to expire", 30)
        log.append(("requeued", time.time()))
        served.start_agent(site, TARGET, *AGENT, log="second")
        log.append(("joined", time.time()))
    except BaseException as e:  # the search's thread reports it
        log.append(("error", e))


@pytest.fixture(scope="module")
def searched(served, agent_install, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    token = folder / "write.token"
    token.write_text(served.write)
    remote = [f"profiler.server={served.base}", f"profiler.token_file={token}"]
    site = agent_install["site"]
    first = served.start_agent(site, TARGET, *AGENT, log="first")
    log: list = []
    killer = threading.Thread(target=_kill_mid_lease_then_join, args=(served, site, first, log))
    killer.start()
    code, out, err = run_in_process("search", *SEARCH, *remote, "n_trials=20", cwd=folder)
    killer.join(60)
    return {"folder": folder, "code": code, "out": out, "err": err, "log": log, "remote": remote}


def test_agents_serve_a_search_and_a_killed_agents_lease_goes_to_the_next(searched, served):
    assert searched["code"] == 0, searched["out"] + searched["err"]
    assert [e for e, _ in searched["log"]] == ["killed", "requeued", "joined"], searched["log"]
    study = optuna.load_study(
        study_name="tiny-fashion_mnist_6k", storage=f"sqlite:///{searched['folder']}/nas.db"
    )
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 20 and optuna.trial.TrialState.FAIL not in states
    assert {t.user_attrs["profiler"]["name"] for t in study.trials} == {"remote"}
    assert {t.user_attrs["latency_source"] for t in study.trials} <= {"measured", "table"}
    engine = sa.create_engine(f"sqlite:///{served.folder}/nas.db")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select status, attempts from nas_measure_requests where target = :t"), {"t": TARGET}
        ).all()
    engine.dispose()
    assert {status for status, _ in rows} == {"done"}
    assert max(attempts for _, attempts in rows) == 2  # the killed agent's lease, measured by the next
    assert "request" in (served.folder / "second.log").read_text()
    hardware = Client(served.base, served.read).call("GET", f"/api/agents/{TARGET}")["fingerprint_id"]
    assert hardware != fingerprint_id()  # the target's (torch-free) fingerprint, not this machine's
    engine = sa.create_engine(f"sqlite:///{searched['folder']}/nas.db")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(TABLE.c.hardware_id, TABLE.c.status)).all()
    engine.dispose()
    assert len(stored) == len(rows) and set(stored) == {(hardware, "done")}
    identity = study.user_attrs["nas"]
    assert identity["hardware"] == hardware and identity["hardware_info"]["cpu"]  # what the figures hold for


def test_a_later_study_is_served_from_the_table_with_no_agent_alive(searched, served):
    for agent in served.agents:
        agent.kill()
        agent.wait()
    args = [*SEARCH, *searched["remote"], "n_trials=5", "study_name=later", "profiler.agent_wait_s=5"]
    code, out, err = run_in_process("search", *args, cwd=searched["folder"])
    assert code == 0, out + err
    study = optuna.load_study(study_name="later", storage=f"sqlite:///{searched['folder']}/nas.db")
    assert [t.user_attrs["latency_source"] for t in study.trials] == ["table"] * 5


def test_no_agent_alive_is_a_clear_error_not_a_wait(searched, served):
    for agent in served.agents:
        agent.kill()
        agent.wait()
    profiler = RemoteProfiler(TARGET, server=served.base, token=served.write, agent_wait_s=1, poll_s=0.1)
    data = to_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)), (1, 28, 28))
    start = time.monotonic()
    with pytest.raises(NoAgent, match=f"no agent of target '{TARGET}' alive.*nas-agent server="):
        profiler.measure_onnx(data, (1, 28, 28))
    again = time.monotonic()
    with pytest.raises(NoAgent):  # the next one fails at once while none is back
        profiler.measure_onnx(data, (1, 28, 28))
    assert time.monotonic() - again < time.monotonic() - start
    writer = Client(served.base, served.write)
    assert writer.call("GET", f"/api/agents/{TARGET}")["queue"]["queued"] == 0  # withdrawn, not left


def test_an_unknown_target_or_server_is_a_one_line_error(searched, served):
    remote = searched["remote"]
    code, out, err = run_in_process(
        "search", *SEARCH, *remote, "profiler.target=nobody", cwd=searched["folder"]
    )
    assert (
        code == 2 and err.count("\n") == 1 and "profiler.target: no agent ever registered as 'nobody'" in err
    ), err
    fit = ["latency", "fit", *SEARCH[:1], *SEARCH[4:], *remote]  # a predictor is this machine's
    code, out, err = run_in_process(*fit, cwd=searched["folder"])
    assert code == 2 and "profiler: 'remote' measures on other hardware" in err, err
    args = [*SEARCH, "profiler.server=http://127.0.0.1:9", f"profiler.token={served.write}"]
    code, out, err = run_in_process("search", *args, cwd=searched["folder"])
    assert code == 2 and err.count("\n") == 1 and "profiler.server: cannot reach" in err, err


def test_the_remote_profiler_passes_the_conformance_check(served, agent_install, tiny_space):
    from latency_models.conformance import check_profiler

    agent = served.start_agent(agent_install["site"], "conformance", *AGENT, log="conformance")
    try:
        profiler = RemoteProfiler(
            "conformance", server=served.base, token=served.write, runs=5, warmup=1, retries=0, poll_s=0.1
        )
        result = check_profiler(profiler, tiny_space.largest())
        assert result.n_runs >= 5 and profiler.hardware()[0] != fingerprint_id()
        assert "token" not in json.dumps(profiler.settings()) and served.write not in json.dumps(
            profiler.settings()
        )
    finally:
        agent.kill()
        agent.wait()
