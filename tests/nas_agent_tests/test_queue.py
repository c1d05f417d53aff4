"""The measurement queue of a real ``nas serve`` (uvicorn on loopback, SQLite), spoken to as an
agent and a requester do: only a target's measure token acts as its agent, a figure nobody asked
for is refused, an expired lease goes back to the queue (and fails after three), agents of other
hardware cannot join a target while one is alive, and a measure token reads nothing else."""

import hashlib
import time

import pytest

from nas_agent.client import Client, ServerError

pytestmark = pytest.mark.xdist_group("agents")  # one server for the module, in one worker

MODEL = b"not really onnx, the queue never opens it"
SHA = hashlib.sha256(MODEL).hexdigest()
HARDWARE = {"cpu": "test cpu", "cpu_count": 2, "machine": "x86_64", "python": "3", "onnxruntime": "1"}


def _refused(call, *args, **kwargs) -> int:
    with pytest.raises(ServerError) as caught:
        call(*args, **kwargs)
    return caught.value.status


def _agent(served, target, lease_s=30.0, hardware=HARDWARE) -> tuple[Client, str]:
    client = Client(served.base, served.token_file(target, "measure").read_text())
    body = {"fingerprint": hardware, "providers": ["CPUExecutionProvider"], "host": "h", "lease_s": lease_s}
    return client, client.call("POST", f"/api/agents/{target}/agents", body)["agent_id"]


def _request(served, target) -> int:
    writer = Client(served.base, served.write)
    writer.call("PUT", f"/api/agents/{target}/models/{SHA}", data=MODEL)
    body = {"model_sha256": SHA, "input_shape": [1, 28, 28], "settings": {"runs": 10}}
    return writer.call("POST", f"/api/agents/{target}/requests", body)["id"]


def _figure(agent_id, sha=SHA, fid=None) -> dict:
    from nas_agent.fingerprint import fingerprint_id

    return {
        "agent_id": agent_id,
        "model_sha256": sha,
        "fingerprint_id": fid or fingerprint_id(HARDWARE),
        "rounds": [[0.5, 0.6], [0.55, 0.5]],
        "background_load": 0.0,
        "machine_load": 0.1,
        "quiet": True,
        "seconds": 0.2,
    }


def test_only_the_targets_measure_token_acts_as_its_agent(served):
    agent, agent_id = _agent(served, "alpha")
    _request(served, "alpha")
    lease = agent.call("POST", "/api/agents/alpha/lease", {"agent_id": agent_id})["lease"]
    result = f"/api/agents/alpha/leases/{lease['lease_id']}/result"
    others = {
        "no token": Client(served.base, None),
        "read token": Client(served.base, served.read),
        "write token": Client(served.base, served.write),
        "another target's token": Client(served.base, served.token_file("beta", "measure").read_text()),
    }
    for who, client in others.items():
        status = _refused(client.call, "POST", result, _figure(agent_id))
        assert status == (401 if who == "no token" else 403), who
        assert _refused(client.call, "POST", "/api/agents/alpha/lease", {"agent_id": agent_id}) in (401, 403)
        body = {"fingerprint": HARDWARE, "lease_s": 5}
        assert _refused(client.call, "POST", "/api/agents/alpha/agents", body) in (401, 403), who
    assert _refused(agent.call, "GET", "/api/studies") == 403  # a measure token reads no study
    assert _refused(agent.call, "PUT", f"/api/agents/alpha/models/{SHA}", data=MODEL) == 403  # nor queues
    done = agent.call("POST", result, _figure(agent_id))
    assert done["status"] == "done" and done["result"]["rounds"] == [[0.5, 0.6], [0.55, 0.5]]


def test_a_figure_nobody_asked_for_is_refused(served):
    agent, agent_id = _agent(served, "gamma")
    _, other_id = _agent(served, "gamma")
    base = "/api/agents/gamma/leases"
    assert _refused(agent.call, "POST", f"{base}/no-such-lease/result", _figure(agent_id)) == 404
    request_id = _request(served, "gamma")
    lease = agent.call("POST", "/api/agents/gamma/lease", {"agent_id": agent_id})["lease"]
    assert lease["request_id"] == request_id
    url = f"{base}/{lease['lease_id']}/result"
    assert _refused(agent.call, "POST", url, _figure(agent_id, sha="0" * 64)) == 422  # another model
    assert _refused(agent.call, "POST", url, _figure(other_id)) == 409  # another agent's lease
    assert _refused(agent.call, "POST", url, _figure(agent_id, fid="ffffffffffff")) == 409  # other hardware
    writer = Client(served.base, served.write)
    assert writer.call("GET", f"/api/agents/gamma/requests/{request_id}")["status"] == "leased"
    agent.call("POST", url, _figure(agent_id))
    assert _refused(agent.call, "POST", url, _figure(agent_id)) == 404  # once only
    assert (
        _refused(
            writer.call, "POST", "/api/agents/nobody/requests", {"model_sha256": SHA, "input_shape": [1]}
        )
        == 404
    )


def test_an_expired_lease_is_queued_again_and_fails_after_three(served):
    agent, agent_id = _agent(served, "delta", lease_s=1.0)
    writer = Client(served.base, served.write)
    request_id = _request(served, "delta")
    first = agent.call("POST", "/api/agents/delta/lease", {"agent_id": agent_id})["lease"]
    time.sleep(1.2)  # not renewed: it expires
    late = f"/api/agents/delta/leases/{first['lease_id']}/result"
    assert _refused(agent.call, "POST", late, _figure(agent_id)) == 404  # the late figure is refused
    state = writer.call("GET", f"/api/agents/delta/requests/{request_id}")
    assert state["status"] == "queued" and state["attempts"] == 1
    _, fresh_id = _agent(served, "delta", lease_s=1.0)  # several agents of one name share the queue
    second = agent.call("POST", "/api/agents/delta/lease", {"agent_id": fresh_id})["lease"]
    assert second["request_id"] == request_id and second["lease_id"] != first["lease_id"]
    renewed = agent.call(
        "POST", f"/api/agents/delta/leases/{second['lease_id']}/renew", {"agent_id": fresh_id}
    )
    assert 0 < renewed["expires_in_s"] <= 1.0
    time.sleep(1.2)
    assert (
        agent.call("POST", "/api/agents/delta/lease", {"agent_id": agent_id})["lease"]["request_id"]
        == request_id
    )
    time.sleep(1.2)
    state = writer.call("GET", f"/api/agents/delta/requests/{request_id}")
    assert state["status"] == "failed" and "3 leases expired" in state["error"], state
    assert state["agents_alive"] == 0  # neither agent was seen within its lease_s


def test_agents_of_other_hardware_cannot_join_a_target_while_one_is_alive(served):
    _agent(served, "epsilon", lease_s=1.0)
    other = dict(HARDWARE, cpu="another cpu")
    with pytest.raises(ServerError) as caught:
        _agent(served, "epsilon", hardware=other)
    assert caught.value.status == 409 and "hardware" in caught.value.detail
    time.sleep(1.2)  # the first is no longer alive: the target's hardware may change
    _agent(served, "epsilon", hardware=other)
    target = Client(served.base, served.read).call("GET", "/api/agents/epsilon")
    assert target["fingerprint"]["cpu"] == "another cpu" and target["alive"] == 1
