"""How fast does the service answer on a large study, and under 50 concurrent clients?

    python -m benchmarks.web_service --db big.db --trials 10000 --clients 50 --seconds 60 --out out.json

Builds (or reuses, with ``--db`` pointing at an existing file) a study of ``--trials`` synthetic
completed trials (two objectives, nas's user attributes), starts the real server (``nas serve``,
uvicorn) on a free loopback port with a read token, and measures: the page and each read endpoint
(best of 5 requests), then ``--clients`` threads requesting the study list, the front, a page of
trials and the best under a budget in turn for ``--seconds``: requests, errors, p50 / p99 latency.
"""

from __future__ import annotations

import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks._harness import REPO, argument_parser, search_env, write_result


def build(db: Path, n: int) -> None:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="big", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    study.set_user_attr(
        "nas", {"objectives": ["accuracy", "latency"], "space": {"name": "vit"}, "dataset": "synthetic"}
    )
    rng = random.Random(0)
    trials = []
    for i in range(n):
        ms = 10 ** rng.uniform(-2, 0.5)
        top1 = 60 + 30 * (1 - 1 / (1 + 5 * ms)) + rng.gauss(0, 2)
        attrs = {
            "top1": top1,
            "latency": {"median": ms, "unit": "ms"},
            "summary": f"arch {i}",
            "params": 1000 + i,
        }
        trials.append(
            create_trial(
                params={"x": rng.random()},
                distributions={"x": FloatDistribution(0, 1)},
                values=[top1, ms],
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import httpx

    db = Path(args.db).resolve()
    if not db.exists():
        start = time.perf_counter()
        build(db, args.trials)
        print(f"built {args.trials} trials in {time.perf_counter() - start:.0f} s")
    env = search_env()
    made = subprocess.run(
        [sys.executable, "-m", "nas", "token", "create", "token_name=bench", f"storage=sqlite:///{db}"],
        cwd=db.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "nas", "serve", f"port={port}", f"storage=sqlite:///{db}"],
        cwd=db.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        paths = {
            "page": "/",
            "studies": "/api/studies",
            "front": "/api/studies/big/front",
            "trials page (sorted by latency)": "/api/studies/big/trials?limit=100&sort=latency",
            "trials filtered + sorted by top-1": (
                "/api/studies/big/trials?limit=100&sort=top1&order=desc&max_latency=0.1"
            ),
            "best under 0.5 ms": "/api/studies/big/best?latency_budget_ms=0.5",
            "one trial": "/api/studies/big/trials/5000",
        }
        single = {}
        with httpx.Client(headers=headers, timeout=60) as client:
            for name, path in paths.items():
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    assert client.get(base + path).status_code == 200, path
                    times.append(time.perf_counter() - start)
                single[name] = round(min(times) * 1000, 1)
        print("single requests (ms, best of 5):", single)

        mix = [paths[k] for k in ("studies", "front", "trials page (sorted by latency)", "best under 0.5 ms")]
        latencies: list[float] = []
        errors, lock, stop = [0], threading.Lock(), time.perf_counter() + args.seconds

        def client_loop(i: int) -> None:
            with httpx.Client(headers=headers, timeout=60) as client:
                k = i
                while time.perf_counter() < stop:
                    start = time.perf_counter()
                    try:
                        ok = client.get(base + mix[k % len(mix)]).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        latencies.append(time.perf_counter() - start)
                        errors[0] += not ok
                    k += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latencies.sort()
        load = {
            "clients": args.clients,
            "seconds": args.seconds,
            "requests": len(latencies),
            "errors": errors[0],
            "requests_per_s": round(len(latencies) / args.seconds, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
        }
        print("load:", load)
    finally:
        server.terminate()
        server.wait(10)
    write_result(args.out, {"trials": args.trials, "single_ms": single, "load": load, "repo": str(REPO)})


if __name__ == "__main__":
    main()
