"""The service: the real server (``nas serve``, uvicorn) on a free loopback port over a real
SQLite study, real tokens (``nas token``), real exports (``nas export`` run by the server)."""

import os
import shutil
import signal
import subprocess
import sys

import httpx
import numpy as np
import optuna
import pytest

from tests.conftest import REPO, run_in_process
from tests.web_tests.test_jobs import _free_port, _serve

pytestmark = pytest.mark.xdist_group("api")  # one server for the module, in one worker


def _token(folder, name, scope="read") -> str:
    code, out, err = run_in_process("token", "create", f"token_name={name}", f"scope={scope}", cwd=folder)
    assert code == 0, out + err
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def service(tiny_study, tmp_path_factory):
    """(base URL, folder, tokens) of a server over a copy of the tiny study."""
    folder = tmp_path_factory.mktemp("service") / "study"
    shutil.copytree(tiny_study, folder)
    tokens = {"read": _token(folder, "reader"), "write": _token(folder, "writer", "write")}
    tokens["revoked"] = _token(folder, "gone", "write")
    code, out, err = run_in_process("token", "revoke", "token_name=gone", cwd=folder)
    assert code == 0, out + err
    server, base = _serve(folder, _free_port())
    yield base, folder, tokens
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(10)


def _get(base, path, token=None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{base}{path}", headers=headers, params=params, timeout=60)


def test_auth_matrix(service):
    base, _, tokens = service
    assert _get(base, "/api/studies").status_code == 401
    assert _get(base, "/api/studies", "nas_not-a-token").status_code == 401
    assert _get(base, "/api/studies", tokens["revoked"]).status_code == 401
    assert httpx.get(f"{base}/api/studies", headers={"Authorization": "Basic abc"}).status_code == 401
    assert _get(base, "/api/studies", tokens["read"]).status_code == 200
    assert _get(base, "/api/studies", tokens["write"]).status_code == 200
    study = _get(base, "/api/studies", tokens["read"]).json()[0]["name"]
    export = f"{base}/api/studies/{study}/exports"
    assert httpx.post(export, json={"trial": 0}).status_code == 401
    read = {"Authorization": f"Bearer {tokens['read']}"}
    assert httpx.post(export, json={"trial": 0}, headers=read).status_code == 403
    revoked = {"Authorization": f"Bearer {tokens['revoked']}"}
    assert httpx.post(export, json={"trial": 0}, headers=revoked).status_code == 401


def test_the_storage_keeps_only_hashes_of_tokens(service):
    import sqlalchemy as sa

    _, folder, tokens = service
    engine = sa.create_engine(f"sqlite:///{folder}/nas.db")
    with engine.connect() as connection:
        rows = connection.execute(sa.text("select * from nas_tokens")).fetchall()
    engine.dispose()
    dumped = repr(rows)
    assert len(rows) == 3 and not any(token in dumped for token in tokens.values())


def test_studies_trials_front_and_best(service):
    base, _, tokens = service
    token = tokens["read"]
    (study,) = _get(base, "/api/studies", token).json()
    assert study["completed"] == 4 and study["space"] == "tiny" and study["front_size"] >= 1
    name = study["name"]
    detail = _get(base, f"/api/studies/{name}", token).json()
    assert detail["objectives"] == ["accuracy", "latency"] and detail["profiler"]["name"] == "onnxruntime"
    assert detail["space"]["name"] == "tiny" and detail["trials"]["COMPLETE"] == 4

    page = _get(base, f"/api/studies/{name}/trials", token, sort="latency", limit=2).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    latencies = [t["latency"]["median"] for t in page["items"]]
    assert latencies == sorted(latencies)
    rest = _get(base, f"/api/studies/{name}/trials", token, sort="latency", limit=2, offset=2).json()["items"]
    assert {t["number"] for t in page["items"]}.isdisjoint(t["number"] for t in rest)
    cut = latencies[1]
    within = _get(base, f"/api/studies/{name}/trials", token, max_latency=cut).json()
    assert within["total"] >= 2 and all(t["latency"]["median"] <= cut for t in within["items"])
    assert _get(base, f"/api/studies/{name}/trials", token, state="FAIL").json()["total"] == 0

    trial = _get(base, f"/api/studies/{name}/trials/0", token).json()
    assert trial["arch"]["space"] == "tiny" and trial["latency"]["unit"] == "ms"

    front = _get(base, f"/api/studies/{name}/front", token).json()
    points = [(t["latency"]["median"], t["top1"]) for t in front]
    assert points == sorted(points) and all(a[1] < b[1] for a, b in zip(points, points[1:]))
    everything = _get(base, f"/api/studies/{name}/trials", token).json()["items"]
    for t in everything:  # nothing outside the front dominates a front member
        for lat, top in points:
            assert not (t["latency"]["median"] < lat and t["top1"] > top)
    best = _get(base, f"/api/studies/{name}/best", token, latency_budget_ms=points[-1][0]).json()
    assert best["top1"] == max(top for _, top in points)
    assert _get(base, f"/api/studies/{name}/best", token, latency_budget_ms=1e-9).status_code == 404


def test_errors_are_4xx(service):
    base, _, tokens = service
    token = tokens["read"]
    assert _get(base, "/api/studies/nope", token).status_code == 404
    assert _get(base, "/api/studies/nope/trials", token).status_code == 404
    name = _get(base, "/api/studies", token).json()[0]["name"]
    assert _get(base, f"/api/studies/{name}/trials", token, limit=0).status_code == 422
    assert _get(base, f"/api/studies/{name}/trials", token, state="DONE").status_code == 422
    assert _get(base, f"/api/studies/{name}/trials/999", token).status_code == 404
    assert _get(base, f"/api/studies/{name}/best", token, latency_budget_ms=-1).status_code == 422
    assert _get(base, "/api/jobs/12345/events").status_code == 401  # the live stream needs a token too
    assert _get(base, "/api/jobs/12345/events", token).status_code == 404
    schema = httpx.get(f"{base}/openapi.json").json()
    assert {"/api/studies", "/api/studies/{name}/front", "/api/studies/{name}/exports"} <= set(
        schema["paths"]
    )


def test_export_then_download_and_no_escape_from_the_export_folder(service, tmp_path):
    import onnxruntime as ort

    base, folder, tokens = service
    name = _get(base, "/api/studies", tokens["read"]).json()[0]["name"]
    write = {"Authorization": f"Bearer {tokens['write']}"}
    bad = httpx.post(f"{base}/api/studies/{name}/exports", json={}, headers=write, timeout=60)
    assert bad.status_code == 422
    made = httpx.post(f"{base}/api/studies/{name}/exports", json={"trial": 0}, headers=write, timeout=300)
    assert made.status_code == 201, made.text
    assert {"model.onnx", "arch.yaml", "export.json"} <= set(made.json()["files"])
    onnx = _get(base, f"/api/studies/{name}/trials/0/export/model.onnx", tokens["read"])
    assert onnx.status_code == 200
    (tmp_path / "m.onnx").write_bytes(onnx.content)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": np.zeros((1, 1, 28, 28), dtype=np.float32)})
    assert logits.shape == (1, 10)
    for path in (
        f"/api/studies/{name}/trials/0/export/..%2F..%2Fnas.db",
        f"/api/studies/{name}/trials/0/export/nas.db",
        "/api/studies/..%2F..%2F/trials/0/export/model.onnx",
        f"/api/studies/{name}/trials/1/export/model.onnx",  # not exported
        "/api/studies/x/trials/0/export/%2Fetc%2Fpasswd",
    ):
        assert _get(base, path, tokens["read"]).status_code == 404, path


def test_web_never_imports_torch():
    code = "import sys, web.app, web.auth, infra.storage; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["token", "create"], ["token_name"]),
        (["token", "create", "token_name=x", "scope=admin"], ["scope"]),
        (["token", "revoke", "token_name=nobody"], ["token_name", "nobody"]),
        (["serve", "storage=sqlite:///missing.db"], ["storage", "missing.db"]),
        (["serve", "port=0"], ["port"]),
    ],
)
def test_bad_service_input_is_one_line_and_exit_2(tmp_path, args, words):
    (tmp_path / "nas.db").touch() if "revoke" in args else None
    code, out, err = run_in_process(*args, cwd=tmp_path)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and all(w in err for w in words), err


def test_the_same_api_over_postgresql(postgres_url, tmp_path):
    """The server over a real PostgreSQL storage: tokens, the auth matrix, studies, front, paging."""
    import random

    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(study_name="pg", storage=postgres_url, directions=["maximize", "minimize"])
    study.set_user_attr(
        "nas", {"objectives": ["accuracy", "latency"], "space": {"name": "vit"}, "dataset": "d"}
    )
    rng = random.Random(0)
    points = [(rng.uniform(50, 90), rng.uniform(0.01, 3.0)) for _ in range(60)]
    study.add_trials(
        [
            create_trial(
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                values=[top1, ms],
                user_attrs={"top1": top1, "latency": {"median": ms, "unit": "ms"}},
            )
            for top1, ms in points
        ]
    )
    read = _token_at(tmp_path, postgres_url, "r", "read")
    revoked = _token_at(tmp_path, postgres_url, "gone", "write")
    code, out, err = run_in_process(
        "token", "revoke", "token_name=gone", f"storage={postgres_url}", cwd=tmp_path
    )
    assert code == 0, out + err
    server, base = _serve(tmp_path, _free_port(), f"storage={postgres_url}")
    try:
        assert _get(base, "/api/studies").status_code == 401
        assert _get(base, "/api/studies", revoked).status_code == 401
        export = f"{base}/api/studies/pg/exports"
        assert (
            httpx.post(export, json={"trial": 0}, headers={"Authorization": f"Bearer {read}"}).status_code
            == 403
        )
        (listed,) = _get(base, "/api/studies", read).json()
        assert listed["completed"] == 60
        front = _get(base, "/api/studies/pg/front", read).json()
        expected = [(ms, top1) for top1, ms in points if not any(t2 > top1 and m2 < ms for t2, m2 in points)]
        assert sorted((t["latency"]["median"], t["top1"]) for t in front) == sorted(expected)
        page = _get(base, "/api/studies/pg/trials", read, sort="top1", order="desc", limit=5).json()
        assert [t["top1"] for t in page["items"]] == sorted((p[0] for p in points), reverse=True)[:5]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def _token_at(folder, storage, name, scope) -> str:
    code, out, err = run_in_process(
        "token", "create", f"token_name={name}", f"scope={scope}", f"storage={storage}", cwd=folder
    )
    assert code == 0, out + err
    return out.strip().splitlines()[-1]


def test_retrained_models_and_baselines_of_a_study(service):
    base, folder, tokens = service
    name = _get(base, "/api/studies", tokens["read"]).json()[0]["name"]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/nas.db")
    study.set_user_attr(
        "retrained:0:scratch:abc",
        {"kind": "trial", "name": "0", "val_top1": 70.0, "test_top1": 69.5, "init": "scratch"},
    )
    study.set_user_attr(  # a run a scheduler stopped: marked as such, never a result
        "retrained:1:scratch:abc",
        {"kind": "trial", "name": "1", "val_top1": 40.0, "test_top1": 39.0, "init": "scratch"}
        | {"epochs": 2, "recipe": {"epochs": 30}, "stopped_early": True},
    )
    measured = {"unit": "ms", "latency": {"median": 0.25}}
    study.set_user_attr(
        "baseline:resnet18:abc",
        {
            "kind": "baseline",
            "name": "resnet18",
            "val_top1": 80.0,
            "test_top1": None,
            "params": 11,
            "measured": measured,
        },
    )
    got = _get(base, f"/api/studies/{name}/retrained", tokens["read"]).json()
    found, stopped = got["retrained"]
    assert found["trial"] == 0 and found["top1"] == 69.5 and found["state"] == "complete"
    assert found["latency"] == study.trials[0].user_attrs["latency"]["median"]
    assert stopped["trial"] == 1 and stopped["state"] == "stopped"
    assert (stopped["epochs"], stopped["planned_epochs"]) == (2, 30)
    assert got["baselines"] == [
        {"name": "resnet18", "top1": 80.0, "params": 11, "latency": 0.25, "unit": "ms"}
        | {"epochs": None, "planned_epochs": None, "state": "complete"}
    ]
