"""How fast does the service answer on a large study, under 50 concurrent clients, with 100
open event streams, and how fast does its page draw the study?

    python -m benchmarks.web_service --db big.db --trials 10000 --clients 50 --seconds 60 \
        --streams 100 --browser /usr/bin/chromium --out out.json

Builds (or reuses, with ``--db`` pointing at an existing file) a study of ``--trials`` synthetic
completed trials (two objectives, nas's user attributes), starts the real server (``nas serve``,
uvicorn) on a free loopback port with read tokens, and measures: the page and each read endpoint
(best of 5 requests); ``/api/studies`` (median of 20) with ``--streams`` event streams open on a
running job (its row points at a live process) and without; the page in chromium (Playwright):
from the click on the study to the chart drawn with every point, best of 3; then ``--clients``
threads requesting the study list, the front, a page of trials and the best under a budget in
turn for ``--seconds``: requests, errors, p50 / p99 latency.
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
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--browser", default=None, help="chromium to time the page in (none: skip)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import httpx

    db = Path(args.db).resolve()
    if not db.exists():
        start = time.perf_counter()
        build(db, args.trials)
        print(f"built {args.trials} trials in {time.perf_counter() - start:.0f} s")
    env = search_env()
    tokens = [_token(db, env, f"bench{i}") for i in range(max(1, -(-args.streams // STREAMS_PER_TOKEN)))]
    token = tokens[0]
    sleeper, job_id = _running_job(db)
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
            "points (every trial, the chart's data)": "/api/studies/big/points",
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
        streams = _with_streams(base, tokens, job_id, args.streams, paths["studies"])
        print("/api/studies with open event streams:", streams)
        page = _page_render(base, token, args.browser, args.trials) if args.browser else None
        print("page:", page)

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
        sleeper.kill()
    result = {"trials": args.trials, "single_ms": single, "streams": streams, "page": page, "load": load}
    write_result(args.out, result | {"repo": str(REPO)})


STREAMS_PER_TOKEN = 16  # the server's bound per token (web.events)


def _token(db: Path, env: dict, name: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "nas", "token", "create", f"token_name={name}", f"storage=sqlite:///{db}"],
        cwd=db.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _running_job(db: Path) -> tuple[subprocess.Popen, int]:
    """A job row the server sees as running (its process is a live ``sleep``): streams on it stay
    open until the benchmark closes them."""
    import datetime

    import sqlalchemy as sa

    from web.jobs import JobStore, jobs

    url = f"sqlite:///{db}"
    JobStore(url, db.parent / ".nas_jobs", db.parent).dispose()  # the table
    sleeper = subprocess.Popen(["sleep", "3600"])
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        job_id = connection.execute(
            jobs.insert().values(
                kind="search",
                args="[]",
                owner="bench",
                status="running",
                pid=sleeper.pid,
                log="",
                created=now,
            )
        ).inserted_primary_key[0]
    engine.dispose()
    return sleeper, job_id


def _median_ms(client, url: str, n: int = 20) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert client.get(url).status_code == 200, url
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def _with_streams(base: str, tokens: list[str], job_id: int, n: int, path: str) -> dict:
    """``path``'s median latency without, then with ``n`` event streams open on the job."""
    import httpx

    headers = {"Authorization": f"Bearer {tokens[0]}"}
    with httpx.Client(headers=headers, timeout=60) as client:
        quiet = _median_ms(client, base + path)
    opened, responses, lock = threading.Barrier(n + 1), [], threading.Lock()

    def stream(i: int) -> None:
        h = {"Authorization": f"Bearer {tokens[i // STREAMS_PER_TOKEN]}"}
        with httpx.stream("GET", f"{base}/api/jobs/{job_id}/events", headers=h, timeout=120) as r:
            with lock:
                responses.append(r)
            lines = r.iter_lines()
            try:
                next(line for line in lines if line.startswith("data: "))
                opened.wait()
                for _ in lines:  # read on until closed
                    pass
            except (httpx.HTTPError, RuntimeError, StopIteration, threading.BrokenBarrierError):
                pass

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    opened.wait(120)
    with httpx.Client(headers=headers, timeout=60) as client:
        busy = _median_ms(client, base + path)
    for r in responses:
        r.close()
    return {"streams": n, "median_ms_without": quiet, "median_ms_with": busy}


def _page_render(base: str, token: str, chromium: str, trials: int) -> dict:
    """Seconds from the click on the study to its chart drawn with every point (best of 3), and
    the page's first load."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        start = time.perf_counter()
        page.goto(base)
        page.fill("#token", token)
        page.click("#login")
        page.wait_for_selector("#studies tr[data-study=big]")
        first = time.perf_counter() - start
        times = []
        for _ in range(3):
            page.goto(base)
            page.wait_for_selector("#studies tr[data-study=big]")
            start = time.perf_counter()
            page.click("#studies tr[data-study=big]")
            page.wait_for_function(
                f"() => Number(document.querySelector('#chart')?.dataset.trials) === {trials}",
                timeout=120_000,
            )
            times.append(time.perf_counter() - start)
        browser.close()
    return {"login_to_studies_s": round(first, 2), "click_to_chart_s": round(min(times), 2)}


if __name__ == "__main__":
    main()
