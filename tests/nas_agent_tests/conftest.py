"""Real parts for the measurement agent's tests: the agent's own distribution built as a wheel and
laid out as the site-packages a target would get from ``pip install ./agent`` (the wheel plus
exactly the distributions its requirements pull, found through their installed metadata), a
real ``nas serve`` on a free loopback port with tokens, and agent processes that run with that
site alone (``python -I -S``: no torch to be found)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from infra.storage import create_engine
from tests.conftest import REPO, run_in_process
from tests.web_tests.test_jobs import _free_port, _serve
from web.auth import TokenStore

# Runs the agent with nothing but the standard library and ``site`` (argv[1]) importable.
BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from nas_agent.cli import console_main; console_main()"
)


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` pull, transitively, by the installed metadata (markers
    evaluated for this interpreter, no extras)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name not in seen:
            seen.add(name)
            todo.extend(distribution(name).requires or [])
    return seen


def build_agent_wheel(folder: Path) -> Path:
    """``pip wheel ./agent`` from a copy of the sources (the build leaves files beside them)."""
    src = folder / "src"
    for part in ("agent", "nas_agent"):
        shutil.copytree(
            REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
        )
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*command, str(src / "agent"), "-w", str(folder / "wheel")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (folder / "wheel").glob("nas_agent-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        lines = zf.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


@pytest.fixture(scope="session")
def agent_install(tmp_path_factory) -> dict:
    """The agent's wheel, its requirements, what they pull, and a site folder holding just that."""
    folder = tmp_path_factory.mktemp("agent_install")
    wheel = build_agent_wheel(folder)
    requirements = wheel_requirements(wheel)
    pulled = requirement_closure(requirements)
    site = folder / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for name in pulled:  # each pulled distribution's top-level files, as pip would lay them out
        dist = distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []} - {".."}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return {"wheel": wheel, "requirements": requirements, "pulled": pulled, "site": site}


def agent_env() -> dict[str, str]:
    """A bare environment, but the measurement lock's folder (shared with the tests' searches)."""
    keep = ("NAS_LOCK_DIR", "NAS_NO_MEASURE_LOCK")
    return {"PATH": "/usr/bin:/bin"} | {k: os.environ[k] for k in keep if k in os.environ}


def agent_command(site: Path, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", BOOT, str(site), *args]


class Served:
    """A ``nas serve`` over a database of its own, with a write token, a read token and measure
    tokens made on demand (one per target)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.write = self.token("writer", "write")
        self.read = self.token("reader", "read")
        self.server, self.base = _serve(folder, _free_port())
        self.agents: list[subprocess.Popen] = []

    def token(self, name: str, scope: str) -> str:
        """A token as ``nas token create`` makes it (the first one through the command itself)."""
        if not (self.folder / "nas.db").exists():
            code, out, err = run_in_process(
                "token", "create", f"token_name={name}", f"scope={scope}", cwd=self.folder
            )
            assert code == 0, out + err
            return out.strip().splitlines()[-1]
        engine = create_engine(f"sqlite:///{self.folder}/nas.db")
        try:
            return TokenStore(engine).create(name, scope)
        finally:
            engine.dispose()

    def token_file(self, name: str, scope: str) -> Path:
        path = self.folder / f"{name}-{scope}.token"
        if not path.exists():
            path.write_text(self.token(name, scope))
        return path

    def start_agent(self, site: Path, target: str, *args: str, log: str = "agent") -> subprocess.Popen:
        """An agent process of ``target`` (its own measure token), once it has registered."""
        out = open(self.folder / f"{log}.log", "a")
        token = self.token_file(target, "measure")
        agent = subprocess.Popen(
            agent_command(site, f"server={self.base}", f"token_file={token}", *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=agent_env(),
        )
        self.agents.append(agent)
        deadline = time.time() + 60
        while "agent " not in (self.folder / f"{log}.log").read_text():
            assert agent.poll() is None and time.time() < deadline, (self.folder / f"{log}.log").read_text()
            time.sleep(0.05)
        return agent

    def stop(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(10)


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    served = Served(folder)
    yield served
    served.stop()
