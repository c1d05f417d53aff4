"""Agent figures against local ones: the same models timed by the local onnxruntime profiler and by
a measurement agent on the same machine (``profiler=remote`` through a real ``nas serve``).

    python -m benchmarks.remote_agent +space=vit --archs 40 --out benchmarks/results/remote_agent.json

Starts ``nas serve`` on a free loopback port over a fresh database in a temporary folder, a
measure token and one agent (``python -m nas_agent``, this interpreter, on this machine), then
times each architecture (smallest, largest, random members of the space) four times, in the
order local, remote, local, remote (remote first for every other architecture, so a slow drift of
the host cancels out). Both profilers get the settings of the composed ``profiler`` node
(``slots=0``: one measurement at a time, as the agent measures). Prints the distribution of
remote / local medians (each the mean of its two figures), the noise floor (the second local
figure against the first, and the same for remote), what a figure costs each way, and how many
figures were flagged (never quiet). The goal: median |remote / local - 1| <= 2 %.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import (
    add_config_arguments,
    argument_parser,
    compose,
    load_space,
    nas_command,
    paired_summary,
    percent,
    search_env,
    write_result,
)

TARGET = "bench"


def _quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(values), n=20, method="inclusive")
    return {"median": statistics.median(values), "q25": q[4], "q75": q[14], "p5": q[0], "p95": q[18]}


def _token(folder: Path, name: str, scope: str) -> str:
    args = ["token", "create", f"token_name={name}", f"scope={scope}"]
    done = subprocess.run(nas_command(*args), cwd=folder, env=search_env(), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return done.stdout.strip().splitlines()[-1]


def _serve(folder: Path) -> tuple[subprocess.Popen, subprocess.Popen, str, str]:
    """A server over a fresh database and one agent of TARGET; (server, agent, URL, write token)."""
    import socket

    from nas_agent.client import Client, ServerError, Unreachable

    write = _token(folder, "bench-writer", "write")
    (folder / "agent.token").write_text(_token(folder, TARGET, "measure"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log = open(folder / "serve.log", "w")
    server = subprocess.Popen(
        nas_command("serve", f"port={port}"), cwd=folder, env=search_env(), stdout=log, stderr=log
    )
    agent_log = open(folder / "agent.log", "w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "nas_agent", f"server={base}", f"token_file={folder / 'agent.token'}"],
        cwd=folder,
        env=search_env(),
        stdout=agent_log,
        stderr=subprocess.STDOUT,
    )
    client = Client(base, write)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if client.call("GET", f"/api/agents/{TARGET}")["alive"]:
                return server, agent, base, write
        except (ServerError, Unreachable):
            pass
        time.sleep(0.2)
    sys.exit(f"the server or the agent did not start; see {folder}")


def main() -> None:
    parser = argument_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from latency_models.remote import RemoteProfiler
    from nas.latency import build_profiler
    from search_spaces.networks import build_model

    cfg = compose(args.overrides)
    node = dict(cfg.profiler) | {"slots": 0}
    local = build_profiler(node)
    timing = {k: v for k, v in local.settings().items() if k != "image_size"}
    space_name = next(o.split("=", 1)[1] for o in args.overrides if o.startswith("+space="))
    space = load_space(space_name, [o for o in args.overrides if not o.startswith("+space=")])
    rng = random.Random(0)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(args.archs - 2)]

    folder = Path(tempfile.mkdtemp(prefix="nas-remote-bench-"))
    server, agent, base, write = _serve(folder)
    try:
        remote = RemoteProfiler(TARGET, server=base, token=write, poll_s=0.05, **timing)
        figures, seconds = [], {"local": [], "remote": []}
        for i, arch in enumerate(archs):
            model = build_model(arch).eval()
            order = ("local", "remote") if i % 2 == 0 else ("remote", "local")
            got: dict[str, list] = {"local": [], "remote": []}
            for kind in order * 2:
                profiler = local if kind == "local" else remote
                start = time.perf_counter()
                got[kind].append(profiler.measure_module(model, arch.input_shape))
                seconds[kind].append(time.perf_counter() - start)
            figures.append((arch, got))
            print(
                f"{i + 1}/{len(archs)} {arch.summary()}: local {got['local'][0].median:.4f} "
                f"remote {got['remote'][0].median:.4f} ms",
                flush=True,
            )
    finally:
        agent.terminate()
        agent.wait(30)
        server.terminate()
        server.wait(30)

    def mean(results) -> float:
        return statistics.fmean(r.median for r in results)

    ratio = [mean(g["remote"]) / mean(g["local"]) for _, g in figures]
    local_again = [g["local"][1].median / g["local"][0].median for _, g in figures]
    remote_again = [g["remote"][1].median / g["remote"][0].median for _, g in figures]
    flagged = {k: sum(not r.quiet for _, g in figures for r in g[k]) for k in ("local", "remote")}
    report = {
        "space": space_name,
        "profiler": local.settings(),
        "remote_over_local": _quantiles(ratio) | {"paired": paired_summary([r - 1 for r in ratio])},
        "local_again": _quantiles(local_again),
        "remote_again": _quantiles(remote_again),
        "seconds_per_figure": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
        "flagged": flagged,
        "archs": [
            {
                "arch": a.summary(),
                "local": [r.to_dict() for r in g["local"]],
                "remote": [r.to_dict() for r in g["remote"]],
            }
            for a, g in figures
        ],
    }
    print(f"{len(archs)} {space_name} members, each timed local, remote, local, remote (alternating order)")
    print("| ratio | median | quartiles | 5-95 % | median abs. difference |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in (
        ("remote / local", ratio),
        ("local again / local", local_again),
        ("remote again / remote", remote_again),
    ):
        q = _quantiles(values)
        spread = statistics.median(abs(v - 1) for v in values)
        print(
            f"| {name} | {q['median']:.4f} | {q['q25']:.4f}-{q['q75']:.4f} | {q['p5']:.4f}-{q['p95']:.4f} "
            f"| {spread:.2%} |"
        )
    print(f"remote - local, median and 95 % interval: {percent(report['remote_over_local']['paired'])}")
    cost = report["seconds_per_figure"]
    print(f"seconds per figure (median): local {cost['local']}, remote {cost['remote']}; flagged {flagged}")
    write_result(args.out, report)


if __name__ == "__main__":
    main()
