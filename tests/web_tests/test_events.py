"""Live event streams are cheap and bounded: a real uvicorn server (in a thread) holding many open
streams on a running job still answers other routes; a token may hold only so many streams, the
server only so many in all (429 beyond), and a closed stream frees its slot."""

import datetime
import json
import subprocess
import threading
import time

import httpx
import optuna
import pytest
import sqlalchemy as sa

from tests.conftest import run_in_process
from tests.web_tests.test_jobs import _free_port, answers


@pytest.fixture
def served(tmp_path):
    """(base URL, app, tokens {a, b}, job id) with a job row whose process runs (a sleep)."""
    import uvicorn

    from web.app import create_app
    from web.jobs import jobs

    url = f"sqlite:///{tmp_path}/nas.db"
    optuna.create_study(study_name="s", storage=url)
    tokens = {}
    for name in ("a", "b"):
        code, out, err = run_in_process("token", "create", f"token_name={name}", cwd=tmp_path)
        assert code == 0, out + err
        tokens[name] = out.strip().splitlines()[-1]
    app = create_app(url, workdir=tmp_path)
    sleeper = subprocess.Popen(["sleep", "600"])
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    with sa.create_engine(url).begin() as connection:
        job_id = connection.execute(
            jobs.insert().values(
                kind="search", args="[]", owner="a", status="running", pid=sleeper.pid, log="", created=now
            )
        ).inserted_primary_key[0]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    assert answers(f"{base}/api/health", 30)
    yield base, app, tokens, job_id
    server.should_exit = True
    thread.join(10)
    sleeper.kill()
    sleeper.wait()


class Stream:
    """An open event stream read in a thread of its own; ``first`` holds its first event (or the
    status code of a refusal). Reading goes on until ``close``: a client that stops reading and
    drops the response is a disconnect, which ends the stream on the server."""

    def __init__(self, base: str, token: str, job_id: int) -> None:
        self.first: dict | int | None = None
        self.ready, self.response = threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(base, token, job_id), daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self, base: str, token: str, job_id: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events", headers=headers, timeout=60) as r:
                self.response = r
                if r.status_code != 200:
                    self.first = r.status_code
                    return
                for line in r.iter_lines():
                    if line.startswith("data: ") and self.first is None:
                        self.first = json.loads(line[6:])
                        self.ready.set()
        except (httpx.HTTPError, RuntimeError, AttributeError):
            pass  # closed by close()
        finally:
            self.ready.set()

    def close(self) -> None:
        self.response.close()
        self.thread.join(10)


def test_streams_are_bounded_per_token_and_in_all(served):
    base, app, tokens, job_id = served
    events = app.state.service.events
    events.per_caller, events.total = 3, 5
    streams = [Stream(base, tokens["a"], job_id) for _ in range(3)]
    assert all(s.first["status"] == "running" and s.first["id"] == job_id for s in streams)
    assert Stream(base, tokens["a"], job_id).first == 429  # a's fourth
    streams += [Stream(base, tokens["b"], job_id) for _ in range(2)]
    assert all(isinstance(s.first, dict) for s in streams)
    assert Stream(base, tokens["b"], job_id).first == 429  # the server's sixth
    headers = {"Authorization": f"Bearer {tokens['b']}"}
    for _ in range(5):  # other routes answer while the streams are open
        assert httpx.get(f"{base}/api/studies", headers=headers, timeout=30).status_code == 200
    assert events.open_count() == 5
    streams.pop(0).close()
    deadline = time.time() + 20
    while events.open_count() > 4 and time.time() < deadline:
        time.sleep(0.2)
    assert events.open_count() == 4
    again = Stream(base, tokens["a"], job_id)  # the closed stream's slot is free again
    assert isinstance(again.first, dict)
    for s in streams + [again]:
        s.close()


def test_many_open_streams_leave_the_thread_pool_free(served):
    """More open streams than Starlette's thread pool has threads (40): other routes still answer."""
    base, app, tokens, job_id = served
    events = app.state.service.events
    events.per_caller, events.total = 100, 100
    streams = [Stream(base, tokens["a"], job_id) for _ in range(60)]
    assert all(isinstance(s.first, dict) for s in streams)
    headers = {"Authorization": f"Bearer {tokens['b']}"}
    for path in ("/api/studies", "/api/jobs", f"/api/jobs/{job_id}"):
        assert httpx.get(f"{base}{path}", headers=headers, timeout=30).status_code == 200
    for s in streams:
        s.close()
