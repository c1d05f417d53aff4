"""A write token launches searches, never code: every class of attack tried on the service is
refused with a 4xx and has no effect (no job row, no process, no file written anywhere), and the
routes match study names and trials exactly. In-process (ASGI) over a copy of the tiny study,
with real tokens; the legitimate requests beside them still work."""

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from fastapi.testclient import TestClient

from nas.schema import GROUP_KEYS
from tests.conftest import run_in_process

SECRET = "s3cr3t-value-of-the-server"


def _token(folder: Path, name: str, scope: str) -> str:
    code, out, err = run_in_process("token", "create", f"token_name={name}", f"scope={scope}", cwd=folder)
    assert code == 0, out + err
    return out.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tiny_study, tmp_path_factory):
    """(client, write headers, read headers, folder, outside folder) of an app over a copy of the
    tiny study, with a data folder it may read and a folder outside everything it may touch."""
    root = tmp_path_factory.mktemp("security")
    folder, data, outside = root / "server", root / "data", root / "outside"
    shutil.copytree(tiny_study, folder)
    data.mkdir()
    outside.mkdir()
    (folder / "escape").symlink_to(outside)  # a link inside the server's folder to outside it
    write, read = _token(folder, "writer", "write"), _token(folder, "reader", "read")
    from web.app import create_app

    os.environ["NAS_TEST_SECRET"] = SECRET
    app = create_app(
        f"sqlite:///{folder}/nas.db",
        export_dir=folder / "export",
        workdir=folder,
        data_dirs=[data],
        clusters=["127.0.0.1:1"],
    )
    with TestClient(app) as client:
        yield (
            client,
            {"Authorization": f"Bearer {write}"},
            {"Authorization": f"Bearer {read}"},
            folder,
            outside,
        )
    os.environ.pop("NAS_TEST_SECRET", None)


def _files(*folders: Path) -> set[str]:
    return {str(p) for f in folders for p in f.rglob("*")}


def _refused(server, kind: str, args: list[str], status: int = 422) -> str:
    """POST the job; assert the status, that no job row exists and that no file changed."""
    client, write, _, folder, outside = server
    before = _files(folder, outside)
    response = client.post("/api/jobs", json={"kind": kind, "args": args}, headers=write)
    assert response.status_code == status, (args, response.status_code, response.text)
    assert client.get("/api/jobs", headers=write).json() == []  # nothing was started
    assert _files(folder, outside) == before  # nothing was written
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else str(detail)
    assert SECRET not in text and os.environ["PATH"] not in text
    return text


@pytest.mark.parametrize("group", GROUP_KEYS)
def test_no_target_override_in_any_group(server, group):
    marker = server[4] / f"pwned-{group}"
    attacks = [
        [f"{group}._target_=builtins.open", f"+{group}.file={marker}", f"+{group}.mode=w"],
        [f"+{group}._target_=builtins.open"],
        [f"{group}={{_target_: builtins.open, file: {marker}, mode: w}}"],
        [f"{group}.x={{_target_: pathlib.Path.touch, self: {marker}}}"],
        [f"++{group}._target_=shutil.copyfile"],
        [f"{group}._partial_=true"],
        [f"{group}._args_=[{marker}]"],
    ]
    for args in attacks:
        _refused(server, "search", ["+space=tiny", *args])
        assert not marker.exists()


@pytest.mark.parametrize(
    "arg",
    [
        "timm_kwargs={_target_: os.system, command: touch x}",
        "timm_kwargs={checkpoint_path: /tmp/evil.pth}",
        "timm_kwargs={pretrained: true, pretrained_cfg_overlay: {file: /tmp/x}}",
        "baselines.models={resnet18: {checkpoint_path: /tmp/evil.pth}}",
        "timm=hf-hub:evil/model",
        "timm=local-dir:/tmp/model",
    ],
)
def test_no_timm_argument_that_loads_a_file(server, arg):
    _refused(server, "train", [arg])


@pytest.mark.parametrize(
    "arg",
    [
        "n_trials=${oc.env:PATH}",
        "study_name=${oc.env:NAS_TEST_SECRET}",
        "study_name='quoted ${oc.env:NAS_TEST_SECRET}'",
        "study_name=x${oc.decode:'1'}",
        "objectives=[accuracy, '${oc.env:NAS_TEST_SECRET}']",
        "timm_kwargs={a: '${oc.env:NAS_TEST_SECRET}'}",
        "study_name='\\${oc.env:NAS_TEST_SECRET}'",
        "seed=${now:%s}",
    ],
)
def test_no_interpolation_or_resolver(server, arg):
    detail = _refused(server, "search", ["+space=tiny", arg])
    assert "interpolation" in detail


@pytest.mark.parametrize(
    "arg",
    [
        "hydra.searchpath=[file:///tmp]",
        "+hydra.searchpath=[file:///tmp]",
        "hydra.run.dir=/tmp/x",
        "hydra/launcher=basic",
        "hydra.verbose=true",
        "++hydra.job.chdir=true",
    ],
)
def test_no_hydra_keys(server, arg):
    _refused(server, "search", ["+space=tiny", arg])


@pytest.mark.parametrize(
    "kind, arg",
    [
        ("export", "out_dir={outside}/x"),
        ("export", "out_dir=../x"),
        ("export", "out_dir=escape/x"),  # a link inside that points outside
        ("export", "out_dir=~/x"),
        ("train", "arch=/etc/passwd"),
        ("train", "arch=escape/arch.yaml"),
        ("search", "dataset=imagefolder dataset.root=/"),
        ("search", "profiler=predictor profiler.folder={outside}"),
        ("search", "profiler=predictor profiler.path=/etc/hostname"),
        ("search", "predictor={outside}/p.json"),
        ("search", "storage=sqlite:///{outside}/x.db"),
        ("search", "cache_dir={outside}"),
        ("search", "export_dir={outside}"),
        ("search", "data_dirs=[/]"),
    ],
)
def test_no_path_outside_the_servers_folders(server, kind, arg):
    args = arg.format(outside=server[4]).split(" ")
    _refused(server, kind, (["+space=tiny"] if kind == "search" else []) + args)


@pytest.mark.parametrize(
    "args",
    [
        ["n_trials=1,2"],  # a sweep
        ["n_trials=choice(1,2)"],
        ["~seed"],
        ["seed@pkg=1"],
        ["+unknown=1"],
        ["unknown=1"],
        ["seed.x=1"],
        ["executor=ray", "executor.address=evil.example:6379"],  # not a cluster of this server
        ["trainer.address=ray://evil.example:10001"],
        ["--config-dir=/tmp"],
        ["dataset=../../etc"],
        ["space=x\x00y"],
    ],
)
def test_no_other_hydra_feature(server, args):
    _refused(server, "search", ["+space=tiny", *args])


def test_oversized_and_malformed_bodies_are_4xx(server):
    client, write, _, folder, outside = server
    before = _files(folder, outside)
    big = {"kind": "search", "args": ["study_name=" + "x" * 200_000]}
    assert client.post("/api/jobs", json=big, headers=write).status_code == 413
    huge = {"kind": "search", "args": ["study_name=" + "x" * 5_000_000]}
    assert client.post("/api/jobs", json=huge, headers=write).status_code == 413
    many = {"kind": "search", "args": ["study_name=" + "x" * 50_000] * 60}
    assert client.post("/api/jobs", json=many, headers=write).status_code == 413

    def chunks():  # a streamed body without a length
        for _ in range(100):
            yield b"x" * 10_000

    streamed = client.post(
        "/api/jobs", content=chunks(), headers=write | {"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    long_arg = {"kind": "search", "args": ["study_name=" + "x" * 3_000]}
    assert client.post("/api/jobs", json=long_arg, headers=write).status_code == 422
    too_many = {"kind": "search", "args": ["seed=1"] * 65}
    assert client.post("/api/jobs", json=too_many, headers=write).status_code == 422
    for body in (b"{not json", b"[]", b'{"kind": "rm"}', b'{"kind": "search", "args": "x"}', b"\xff\xfe"):
        response = client.post(
            "/api/jobs", content=body, headers=write | {"content-type": "application/json"}
        )
        assert response.status_code == 422, body
    assert client.post("/api/jobs", json={"kind": "search", "args": [1]}, headers=write).status_code == 422
    assert client.get("/api/jobs", headers=write).json() == []
    assert _files(folder, outside) == before


def test_exact_study_and_trial_matching(server):
    client, write, read, folder, _ = server
    (study,) = [s["name"] for s in client.get("/api/studies", headers=read).json()]
    made = client.post(f"/api/studies/{study}/exports", json={"trial": 0}, headers=write)
    assert made.status_code == 201, made.text
    assert client.get(f"/api/studies/{study}/trials/0/export/model.onnx", headers=read).status_code == 200
    for near in (f"{study} ", f"..{study}..", f"{study}/", study.upper(), f"_{study}", f"{study}_"):
        path = f"/api/studies/{quote(near, safe='')}/trials/0/export/model.onnx"
        assert client.get(path, headers=read).status_code == 404, near
    assert client.get(f"/api/studies/{study}/trials/1/export/model.onnx", headers=read).status_code == 404
    assert client.get(f"/api/studies/{study}/trials/0/export/nas.db", headers=read).status_code == 404

    # Names with any character round-trip, and names that look alike never share an export.
    storage = f"sqlite:///{folder}/nas.db"
    source = optuna.load_study(study_name=study, storage=storage)
    odd = ["a/b", "a b", "a_b", "50%", "%2F", "x/../y", "ünï ${not} 'q'"]
    for name in odd:
        copy = optuna.create_study(study_name=name, storage=storage, directions=source.directions)
        copy.set_user_attr("nas", source.user_attrs["nas"])
        copy.add_trial(source.trials[0])
    listed = {s["name"] for s in client.get("/api/studies", headers=read).json()}
    assert set(odd) <= listed
    for name in odd:
        encoded = quote(name, safe="")
        assert client.get(f"/api/studies/{encoded}", headers=read).json()["name"] == name
        assert client.get(f"/api/studies/{encoded}/trials", headers=read).json()["total"] == 1
    folders = {client.post(f"/api/studies/{quote(n, safe='')}/exports", json={"trial": 0}, headers=write)
               .json()["folder"] for n in ("a b", "a_b")}  # fmt: skip
    assert len(folders) == 2
    assert (
        client.get(
            f"/api/studies/{quote('a_b', safe='')}/trials/0/export/arch.yaml", headers=read
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/api/studies/{quote('a-b', safe='')}/trials/0/export/arch.yaml", headers=read
        ).status_code
        == 404
    )


def test_read_tokens_start_nothing_and_the_schema_declares_the_bearer_scheme(server):
    client, _, read, _, _ = server
    response = client.post("/api/jobs", json={"kind": "search", "args": ["+space=tiny"]}, headers=read)
    assert response.status_code == 403
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    assert all(op.get("security") for path, ops in schema["paths"].items() if path.startswith("/api/studies")
               for op in ops.values())  # fmt: skip
    docs = client.get("/docs").text
    assert "/static/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger-ui-bundle.js").status_code == 200


def test_legitimate_jobs_pass_the_policy(server, tmp_path):
    """What a user does is still accepted: the CLI's own checks then answer (422 for a bad
    value, with its one-line error)."""
    from web.policy import JobPolicy

    _, _, _, folder, outside = server
    policy = JobPolicy(workdir=folder, export_dir=folder / "export", data_dirs=[outside.parent / "data"])
    ok = [
        "+space=tiny",
        "dataset=imagefolder",
        f"dataset.root={outside.parent / 'data'}",
        "sampler=tpe",
        "sampler.n_startup_trials=5",
        "n_trials=20",
        "study_name='my study / 1'",
        "objectives=[accuracy,latency]",
        "supernet.epochs=1",
        "out_dir=export/mine",
        "trials=[1,2]",
        "timm=resnet18",
        "timm_kwargs={drop_rate: 0.1}",
        "executor.address=null",
    ]
    assert policy.check(ok) == ok
