"""Schemathesis over the whole OpenAPI schema of the service, with a fixed budget of examples per
operation: no input may produce a server error (5xx). Runs in-process (ASGI) over a copy of the
tiny study, once with a read token (every GET is fuzzed; writes must answer 403 or 422, never
start anything) and once without a token (401 everywhere but the health check)."""

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import run_in_process

EXAMPLES = 25  # per operation and token: the fixed budget
# Requests a write token's generated job can pass the policy with (no or few arguments) each
# start a ``nas <kind> --cfg`` check process (and, passing that, a job): seconds per example
# where every other operation takes milliseconds. The few kinds and argument lists that get
# that far are covered by this many; every other operation keeps EXAMPLES.
EXAMPLES_FOR = {("write", "POST", "/api/jobs"): 3}
TIMEOUT_S = 150  # per request: a job's argument check may take the server's 120 s on a loaded machine


@pytest.fixture(scope="module")
def served(tiny_study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "study"
    shutil.copytree(tiny_study, folder)
    tokens = {}
    for scope in ("read", "write"):
        code, out, err = run_in_process(
            "token", "create", f"token_name={scope}", f"scope={scope}", cwd=folder
        )
        assert code == 0, out + err
        tokens[scope] = out.strip().splitlines()[-1]
    from web.app import create_app

    app = create_app(f"sqlite:///{folder}/nas.db", export_dir=folder / "export", workdir=folder)
    return app, tokens


def _check(case, served, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {served[1][token]}"} if token else {}
    response = case.call(headers=headers, timeout=TIMEOUT_S)
    assert response.status_code < 500, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:300],
    )
    if case.method.upper() == "POST" and token == "read":
        assert response.status_code in (401, 403, 404, 413, 422)  # a read token starts nothing
    if token is None and case.path not in ("/api/health",):
        assert response.status_code in (401, 404, 413, 422)


@pytest.mark.parametrize("token", ["read", "write", None], ids=["read-token", "write-token", "no-token"])
def test_no_input_gives_a_server_error(served, token):
    """Every operation of the published schema (which declares the bearer scheme), EXAMPLES
    generated requests each, EXAMPLES_FOR where a request starts a process (Schemathesis's
    strategies driven by Hypothesis directly: its pytest plugin does not load under pytest 9). A
    write token's jobs and exports must pass the server's policy and checks: generated ones are
    refused (4xx) or start a run that ends."""
    from hypothesis import given

    api = schemathesis.openapi.from_asgi("/openapi.json", served[0])
    assert api.raw_schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:
        examples = EXAMPLES_FOR.get((token, operation.method.upper(), operation.path), EXAMPLES)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def fuzz(case):
            _check(case, served, token)

        fuzz()
