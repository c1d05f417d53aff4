"""The page in a real browser (Debian's chromium driven by Playwright) against a real server.

One server for the module holds a synthetic study (a few hundred trials with duplicates, failed
and pruned trials, retrained runs complete and stopped early, timm baselines), odd studies (empty,
no nas attributes and an awkward name, only failed trials, a single trial), a write and a read
token. The tests check the chart (log axis with ticks, merged duplicates, stopped runs apart),
the trial table (sorting, filters, CSV), the latency budget, the read-only view, and finally
launch a real search on the tiny space, watch it, pick a front member by budget, export it and
run the downloaded ONNX in ONNX Runtime. Every page's JavaScript errors fail the test.

Screenshots go to the test's folder and, with NAS_SCREENSHOT_DIR set, there too
(``study_page.png``, ``jobs_page.png``: the README's images).
"""

import json
import math
import os
import random
import shutil
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import optuna
import pytest
import sqlalchemy

from tests.conftest import run_in_process
from tests.web_tests.test_jobs import _free_port, _serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("NAS_SCREENSHOT_DIR")
VIEWPORT = {"width": 1280, "height": 900}
SYNTHETIC = "vit-synthetic"
ODD_NAME = "plain/optuna 100% odd"  # no nas attributes; '/', '%' and spaces in the name
EXPECTED_CONSOLE = ("status of 401", "status of 422")  # before logging in; the bad launch

DASHBOARD = "http://127.0.0.1:8081/"  # the server's dashboard_url: the page links it

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (.ci/run installs it as root)"),
    pytest.mark.xdist_group("browser"),  # one server and one browser for the module, in one worker
]


# ----------------------------------------------------------------------------------------------
# The studies


def _nas_attrs() -> dict:
    return {
        "objectives": ["accuracy", "latency"],
        "space": {"name": "vit"},
        "dataset": "d",
        "profiler": {"name": "onnxruntime"},
    }


def _complete(top1: float, latency: float, params: int, summary: str):
    return optuna.trial.create_trial(
        values=[top1, latency],
        user_attrs={
            "top1": top1,
            "latency": {"median": latency, "mean": latency * 1.02, "p90": latency * 1.1, "unit": "ms"},
            "params": params,
            "summary": summary,
            "arch": {"patch_size": 7, "embed_dim": 48, "depth": 2, "summary": summary},
        },
    )


def _synthetic(storage) -> dict:
    """A study as nas search and nas train leave it; returns what the page should show."""
    rng = random.Random(0)
    complete = []  # (top1, latency, params, summary)
    for i in range(250):
        latency = round(math.exp(rng.uniform(math.log(0.05), math.log(5.0))), 5)
        top1 = round(min(95.0, 55 + 9 * math.log10(latency / 0.05) + rng.gauss(0, 4)), 3)
        complete.append((top1, latency, int(20_000 * latency * rng.uniform(0.8, 1.2)), f"arch-{i}"))
    for i in range(0, 120, 6):  # the same architecture found again: exact duplicates
        complete.append(complete[i])
    front = _front(complete)
    for member in front[:6:2]:  # duplicates of front members too
        complete.append(complete[member])
    failed = {
        f"FAIL-{i}": f"CUDA out of memory at batch {i} (tried to allocate {i + 1} GiB)" for i in range(12)
    }
    kinds = ["C"] * len(complete) + list(failed) + ["P"] * 8
    rng.shuffle(kinds)
    trials, numbers, next_complete = [], {}, 0
    for number, kind in enumerate(kinds):
        if kind == "C":
            top1, latency, params, summary = complete[next_complete]
            numbers[next_complete] = number
            next_complete += 1
            trials.append(_complete(top1, latency, params, summary))
        elif kind == "P":
            trials.append(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
        else:
            trials.append(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": failed[kind]}
                )
            )
    study = optuna.create_study(study_name=SYNTHETIC, storage=storage, directions=["maximize", "minimize"])
    study.add_trials(trials)
    study.set_user_attr("nas", _nas_attrs())
    by_number = {numbers[i]: c for i, c in enumerate(complete)}
    front_numbers = [numbers[i] for i in front]
    fail_reasons = {t.number: t.user_attrs["fail_reason"] for t in study.trials if t.state.name == "FAIL"}
    done, stopped = front_numbers[1:8:3], front_numbers[2:8:3]
    for n in done:
        top1 = by_number[n][0]
        study.set_user_attr(f"retrained:{n}:scratch:abc", _retrained(n, top1 + 3, epochs=30))
    for n in stopped:  # stopped early at a low top-1: must not stretch the axis
        study.set_user_attr(f"retrained:{n}:scratch:abc", _retrained(n, 11.0, epochs=3, stopped_early=True))
    for name, top1, latency in (("resnet18", 78.5, 0.8), ("mobilenetv3_small_100", 71.0, 0.3)):
        study.set_user_attr(
            f"baseline:{name}:abc",
            {
                "kind": "baseline",
                "name": name,
                "val_top1": top1,
                "test_top1": top1,
                "params": 11,
                "measured": {"unit": "ms", "latency": {"median": latency}},
                "epochs": 30,
                "recipe": {"epochs": 30},
            },
        )
    return {
        "trials": by_number,  # number -> (top1, latency, params, summary)
        "front": front_numbers,
        "fail_reasons": fail_reasons,
        "retrained": done,
        "stopped": stopped,
    }


def _retrained(n: int, top1: float, epochs: int, stopped_early: bool = False) -> dict:
    record = {
        "kind": "trial",
        "name": str(n),
        "val_top1": top1,
        "test_top1": top1,
        "init": "scratch",
        "epochs": epochs,
        "recipe": {"epochs": 30},
    }
    if stopped_early:
        record["stopped_early"] = True
    return record


def _front(complete: list[tuple]) -> list[int]:
    """Indices of the (top-1 max, latency min) front, by latency (the first of identical ones)."""
    front, best = [], -math.inf
    for i in sorted(range(len(complete)), key=lambda i: (complete[i][1], -complete[i][0], i)):
        if complete[i][0] > best:
            front.append(i)
            best = complete[i][0]
    return front


def _best_within(trials: dict, budget: float) -> int:
    """The best top-1 with latency <= budget (the faster, then the earlier, of equals)."""
    within = [(t[0], -t[1], -n) for n, t in trials.items() if t[1] <= budget]
    return -max(within)[2]


def _odd_studies(storage) -> None:
    optuna.create_study(study_name="empty", storage=storage, directions=["maximize", "minimize"])
    plain = optuna.create_study(study_name=ODD_NAME, storage=storage)  # one objective, no nas attrs
    plain.add_trials([optuna.trial.create_trial(value=v) for v in (0.1, 0.5)])
    failed = optuna.create_study(
        study_name="only-failed", storage=storage, directions=["maximize", "minimize"]
    )
    failed.set_user_attr("nas", _nas_attrs())
    failed.add_trials(
        [
            optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "boom"}),
            optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL),
        ]
    )
    single = optuna.create_study(study_name="single", storage=storage, directions=["maximize", "minimize"])
    single.set_user_attr("nas", _nas_attrs())
    single.add_trials([_complete(42.0, 0.25, 1234, "only one")])


# ----------------------------------------------------------------------------------------------
# Fixtures: one server and one browser for the module


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    tokens = {}
    for scope, name in (("write", "writer"), ("read", "reader")):
        code, out, err = run_in_process("token", "create", f"token_name={name}", f"scope={scope}", cwd=folder)
        assert code == 0, out + err
        tokens[scope] = out.strip().splitlines()[-1]
    storage = f"sqlite:///{folder}/nas.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fast = optuna.storages.RDBStorage(storage)  # creates Optuna's tables before the server starts

    @sqlalchemy.event.listens_for(fast.engine, "connect")
    def _no_fsync(connection, _):  # a throw-away database: no fsync per trial
        connection.execute("PRAGMA synchronous=OFF")

    fast.engine.dispose()
    made = {}

    def build():
        try:
            made["expected"] = _synthetic(fast)
            _odd_studies(fast)
        except BaseException as e:  # raised again below, in the test's thread
            made["error"] = e

    builder = threading.Thread(target=build)
    builder.start()  # while the server starts
    server, base = _serve(folder, _free_port(), f"dashboard_url={DASHBOARD}")
    builder.join()
    if "error" in made:
        os.killpg(server.pid, signal.SIGTERM)
        raise made["error"]
    expected = made["expected"]
    try:
        yield {"folder": folder, "base": base, "tokens": tokens, "storage": storage, "expected": expected}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A page of its own browser context, logged in with ``token``, collecting JS errors (uncaught,
    or logged to the console: the page logs the rendering errors it catches as errors)."""

    def __init__(self, browser, base: str, token: str | None, hash_: str = "") -> None:
        self.context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        if token is not None:  # as after an earlier log-in: the token is in the browser already
            self.context.add_init_script(f"localStorage.setItem('nas-token', {json.dumps(token)})")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.elsewhere: list[str] = []  # the page loads nothing from anywhere but the server
        self.page.on(
            "request",
            lambda r: r.url.startswith((base + "/", "data:", "blob:")) or self.elsewhere.append(r.url),
        )
        self.page.goto(base + "/" + hash_)

    def close(self, allowed: tuple[str, ...] = ()) -> None:
        banner = self.page.locator("#banner")  # where the page shows errors it caught
        assert banner.is_hidden(), banner.text_content()
        self.context.close()
        assert not self.elsewhere, self.elsewhere
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert not unexpected, unexpected


def _open_study(page, name: str) -> None:
    from playwright.sync_api import expect

    page.click("#tab-studies")
    page.locator(f"#studies tr[data-study={json.dumps(name)}]").click()
    expect(page.locator("#study-title")).to_have_text(name)
    expect(page.locator("#study-info")).not_to_have_text("loading …")


def _screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if SCREENSHOT_DIR:
        shutil.copy(path, Path(SCREENSHOT_DIR) / name)


def _dataset(page, key: str) -> dict:
    """A dataset of the Pareto chart: its points, visibility and style."""
    return page.evaluate(
        """(key) => {
            const c = window.nasChart, i = c.data.datasets.findIndex((d) => d.key === key);
            const d = c.data.datasets[i];
            return {label: d.label, visible: c.isDatasetVisible(i), pointStyle: d.pointStyle || "circle",
                    points: d.data.map((p) => ({x: p.x, y: p.y, trials: p.trials || null,
                                                label: p.label || null}))};
        }""",
        key,
    )


def _click_point(page, key: str, index: int) -> None:
    """A real mouse click on point ``index`` of dataset ``key``."""
    at = page.evaluate(
        """([key, index]) => {
            const c = window.nasChart, i = c.data.datasets.findIndex((d) => d.key === key);
            const p = c.getDatasetMeta(i).data[index];
            return {x: p.x, y: p.y};
        }""",
        [key, index],
    )
    box = page.locator("#chart").bounding_box()
    page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])


# ----------------------------------------------------------------------------------------------
# Tests


def test_synthetic_study_chart_table_and_budget(served, browser, tmp_path):
    from playwright.sync_api import expect

    expected = served["expected"]
    trials = expected["trials"]
    tab = Page(browser, served["base"], served["tokens"]["write"])
    page = tab.page
    expect(page.locator("#who")).to_contain_text("logged in as writer (write)")
    expect(page.locator("#dashboard")).to_have_attribute("href", DASHBOARD)
    _open_study(page, SYNTHETIC)
    distinct = {(t[1], t[0]) for t in trials.values()}
    canvas = page.locator("#chart")
    expect(canvas).to_have_attribute("data-points", str(len(distinct)))
    expect(canvas).to_have_attribute("data-trials", str(len(trials)))
    expect(canvas).to_have_attribute("data-front", str(len(expected["front"])))
    expect(canvas).to_have_attribute("data-stopped", str(len(expected["stopped"])))
    expect(canvas).to_have_attribute("data-retrained", str(len(expected["retrained"])))
    expect(canvas).to_have_attribute("data-baselines", "2")

    # Axes: a logarithmic latency axis and a top-1 axis, both with numbers, titled with the unit.
    axes = page.evaluate(
        """() => { const s = window.nasChart.scales;
            return {type: s.x.type, x: s.x.ticks.map((t) => t.label), y: s.y.ticks.map((t) => t.label),
                    xtitle: s.x.options.title.text, ytitle: s.y.options.title.text, ymin: s.y.min}; }"""
    )
    assert axes["type"] == "logarithmic" and axes["xtitle"] == "latency (ms, log scale)"
    assert "top-1" in axes["ytitle"]
    x_numbers = [float(t) for t in axes["x"] if t not in ("", None)]
    y_numbers = [float(t) for t in axes["y"] if t not in ("", None)]
    assert len(x_numbers) >= 4 and {0.1, 1.0} <= set(x_numbers), axes["x"]
    assert len(y_numbers) >= 4 and y_numbers == sorted(y_numbers), axes["y"]

    # Duplicates are merged: one point per distinct (latency, top-1), listing every trial.
    candidates, front = _dataset(page, "candidates"), _dataset(page, "front")
    drawn = candidates["points"] + front["points"]
    assert len(drawn) == len(distinct) == len({(p["x"], p["y"]) for p in drawn})
    groups = {}
    for n, t in trials.items():
        groups.setdefault((t[1], t[0]), []).append(n)
    for p in drawn:
        assert sorted(p["trials"]) == sorted(groups[(p["x"], p["y"])])
    assert sum(len(p["trials"]) for p in drawn) == len(trials)
    assert [p["trials"][0] for p in front["points"]] == expected["front"]
    assert any(len(p["trials"]) > 1 for p in front["points"])  # a front member found twice

    # Retrained runs stopped early: their own dataset, hidden, marked, never in the axis range.
    stopped, retrained = _dataset(page, "stopped"), _dataset(page, "retrained")
    assert not stopped["visible"] and "stopped" in stopped["label"] and "not a result" in stopped["label"]
    assert sorted(p["trials"][0] for p in stopped["points"]) == sorted(expected["stopped"])
    assert all(p["label"] == "stopped at epoch 3 of 30 — not a result" for p in stopped["points"])
    assert sorted(p["trials"][0] for p in retrained["points"]) == sorted(expected["retrained"])
    assert retrained["visible"] and retrained["pointStyle"] == "rectRot"
    assert axes["ymin"] > 11.0  # the stopped runs' top-1 is below the range
    baselines = _dataset(page, "baselines")
    assert sorted(p["label"] for p in baselines["points"]) == ["mobilenetv3_small_100", "resnet18"]

    # Hover a merged point: its tooltip lists every trial; a click opens the first one's detail.
    merged = next(i for i, p in enumerate(front["points"]) if len(p["trials"]) > 1)
    numbers = front["points"][merged]["trials"]
    at = page.evaluate(
        """(i) => { const c = window.nasChart, d = c.data.datasets.findIndex((x) => x.key === "front");
                    const p = c.getDatasetMeta(d).data[i]; return {x: p.x, y: p.y}; }""",
        merged,
    )
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
    page.wait_for_function("() => window.nasChart.tooltip.opacity > 0")
    lines = page.evaluate("() => window.nasChart.tooltip.body.flatMap((b) => b.lines)")
    assert any(
        f"trials {', '.join(map(str, numbers))} ({len(numbers)} identical)" in line for line in lines
    ), lines
    _click_point(page, "front", merged)
    expect(page.locator("#trial-title")).to_have_text(f"trial {numbers[0]}")
    expect(page.locator("#trial-detail")).to_contain_text('"arch"')
    expect(page.locator("#trial-facts")).to_contain_text("identical to")

    # Wheel zoom, then reset zoom back to every point.
    before = page.evaluate("() => [window.nasChart.scales.x.min, window.nasChart.scales.x.max]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => window.nasChart.isZoomedOrPanned()")
    page.click("#reset-zoom")
    after = page.evaluate("() => [window.nasChart.scales.x.min, window.nasChart.scales.x.max]")
    assert after == pytest.approx(before)

    # The table sorts on the server: top-1, highest first.
    page.click("#trials th[data-col=top1]")
    expect(page.locator("#trials th[data-col=top1]")).to_have_attribute("aria-sort", "descending")
    best_top1 = max(t[0] for t in trials.values())
    first = page.locator("#trials tbody tr").first
    expect(first).to_have_attribute("data-top1", str(best_top1) if best_top1 % 1 else str(int(best_top1)))
    shown = [
        float(v)
        for v in page.locator("#trials tbody tr").evaluate_all("(rs) => rs.map((r) => r.dataset.top1)")
    ]
    assert len(shown) == 50 and shown == sorted(shown, reverse=True) and shown[0] == best_top1
    expect(page.locator("#page-info")).to_have_text(f"rows 1–50 of {len(trials) + 12 + 8}")
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text(f"rows 51–100 of {len(trials) + 12 + 8}")

    # Failed trials with their reasons, and the CSV of the same filter.
    page.select_option("#f-state", "FAIL")
    fails = expected["fail_reasons"]
    expect(page.locator("#page-info")).to_have_text(f"rows 1–{len(fails)} of {len(fails)}")
    rows = page.locator("#trials tbody tr").evaluate_all(
        """(rs) => rs.map((r) => [Number(r.dataset.number), r.dataset.state,
                                   r.querySelector('td.reason').textContent])"""
    )
    assert {n: reason for n, state, reason in rows if state == "FAIL"} == fails
    with page.expect_download() as download:
        page.click("#csv")
    csv_path = tmp_path / "trials.csv"
    download.value.save_as(csv_path)
    lines = csv_path.read_text().strip().splitlines()
    assert lines[0].startswith("number,state,top1") and len(lines) == len(fails) + 1
    assert all(",FAIL," in line for line in lines[1:])
    page.select_option("#f-state", "")

    # The budget: exactly the trial the best top-1 within it is, drawn in red.
    for budget in (0.5, 1.3, 0.07):
        best = _best_within(trials, budget)
        page.fill("#budget-ms", str(budget))
        expect(page.locator("#best")).to_have_attribute("data-trial", str(best))
        expect(page.locator("#best")).to_contain_text(f"best under {budget} ms: trial {best}")
        marked = _dataset(page, "best")["points"]
        assert len(marked) == 1 and marked[0]["trials"][0] == best
    slider = page.locator("#budget")
    slider.evaluate("(s) => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    expect(page.locator("#best")).to_have_attribute("data-trial", str(expected["front"][0]))
    slider.evaluate("(s) => { s.value = 700; s.dispatchEvent(new Event('input')); }")
    budget = float(page.locator("#budget-ms").input_value())
    expect(page.locator("#best")).to_have_attribute("data-trial", str(_best_within(trials, budget)))
    page.fill("#budget-ms", "0.01")
    expect(page.locator("#best")).to_have_attribute("data-trial", "")
    expect(page.locator("#best")).to_contain_text("no completed trial within 0.01 ms")
    expect(page.locator("#export")).to_be_disabled()
    page.fill("#budget-ms", "1.3")
    expect(page.locator("#best")).to_have_attribute("data-trial", str(_best_within(trials, 1.3)))
    page.locator("#trials tbody tr").first.click()
    expect(page.locator("#trial-detail")).to_contain_text('"arch"')
    page.mouse.move(0, 0)
    page.evaluate("() => window.scrollTo(0, 0)")
    _screenshot(page, tmp_path, "study_page.png")

    # Reloading shows the same study (its name is in the address).
    page.reload()
    expect(page.locator("#study-title")).to_have_text(SYNTHETIC)
    expect(canvas).to_have_attribute("data-points", str(len(distinct)))

    # Live: a trial completes while the page is open and zoomed; chart, table and budget follow.
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_function("() => window.nasChart.isZoomedOrPanned()")
    study = optuna.load_study(study_name=SYNTHETIC, storage=served["storage"])
    study.add_trial(_complete(99.0, 0.06, 1500, "the new best"))
    newest = len(study.trials) - 1
    expect(canvas).to_have_attribute("data-trials", str(len(trials) + 1), timeout=15_000)
    expect(page.locator("#best")).to_have_attribute("data-trial", str(newest))
    expect(page.locator("#page-info")).to_contain_text(f"of {len(trials) + 12 + 8 + 1}")
    completed = page.locator(f"#studies tr[data-study={SYNTHETIC}] td").nth(3)
    expect(completed).to_have_text(str(len(trials) + 1))
    assert page.evaluate("() => window.nasChart.isZoomedOrPanned()")  # the zoom stayed
    tab.close()


def test_empty_and_odd_studies_open_without_errors(served, browser):
    from playwright.sync_api import expect

    tab = Page(browser, served["base"], served["tokens"]["write"])
    page = tab.page
    _open_study(page, "empty")
    expect(page.locator("#chart-empty")).to_be_visible()
    expect(page.locator("#chart-empty")).to_have_text("no completed trials yet")
    expect(page.locator("#best")).to_contain_text("no completed trials yet")
    expect(page.locator("#history-empty")).to_be_visible()
    expect(page.locator("#trials tbody")).to_contain_text("no trials yet")
    expect(page.locator("#export")).to_be_disabled()

    _open_study(page, ODD_NAME)  # no nas attributes: two completed trials without top-1 and latency
    expect(page.locator("#study-info")).to_contain_text("no nas attributes")
    expect(page.locator("#chart-empty")).to_contain_text(
        "2 completed trials, none with a top-1 and a latency"
    )
    expect(page.locator("#page-info")).to_have_text("rows 1–2 of 2")
    page.locator("#trials tbody tr").first.click()
    expect(page.locator("#trial-title")).to_have_text("trial 0")

    _open_study(page, "only-failed")
    expect(page.locator("#chart-empty")).to_have_text("no completed trials yet")
    expect(page.locator("#trials tbody td.reason").first).to_have_text("boom")

    _open_study(page, "single")
    expect(page.locator("#chart")).to_have_attribute("data-points", "1")
    expect(page.locator("#best")).to_have_attribute("data-trial", "0")
    page.fill("#budget-ms", "0.1")
    expect(page.locator("#best")).to_have_attribute("data-trial", "")
    for name in ("empty", ODD_NAME, "only-failed", "single", SYNTHETIC):
        _open_study(page, name)
    expect(page.locator("#study-error")).to_be_empty()
    assert page.locator("#banner").is_hidden()
    tab.close()


def test_read_only_token_sees_no_start_cancel_or_export(served, browser):
    from playwright.sync_api import expect

    base, tokens = served["base"], served["tokens"]
    writer = Page(browser, base, tokens["write"], "#/jobs")
    started = httpx.post(
        f"{base}/api/jobs",
        json={"kind": "search", "args": ["+space=tiny", "profiler=flops", "n_trials=400", "study_name=long"]},
        headers={"Authorization": f"Bearer {tokens['write']}"},
        timeout=60,
    )
    assert started.status_code == 201, started.text
    job = started.json()["id"]
    reader = Page(browser, base, tokens["read"], "#/jobs")
    try:
        ro = reader.page
        expect(ro.locator("#who")).to_contain_text("(read)")
        expect(ro.locator(f"#jobs tr[data-job='{job}']")).to_be_visible(timeout=10_000)
        expect(ro.locator("#jobs-readonly")).to_be_visible()
        expect(ro.locator("#launch")).to_be_hidden()
        expect(ro.locator("#launch button")).to_be_hidden()
        running = ro.locator("#jobs tr[data-status=running]")
        expect(running).to_have_count(1)
        expect(ro.locator("#jobs button.cancel")).to_have_count(0)
        running.click()
        expect(ro.locator("#job-command")).to_contain_text("nas search +space=tiny")
        expect(ro.locator("#job-cancel")).to_be_hidden()
        _open_study(ro, SYNTHETIC)
        expect(ro.locator("#best")).not_to_have_attribute("data-trial", "")
        expect(ro.locator("#export")).to_be_hidden()
        expect(ro.locator("#export-readonly")).to_be_visible()

        # The write token sees Cancel on the running job, and it works.
        w = writer.page
        cancel = w.locator(f"#jobs tr[data-job='{job}'] button.cancel")
        expect(cancel).to_be_visible(timeout=10_000)
        expect(w.locator("#launch button")).to_be_visible()
        cancel.click()
        expect(w.locator(f"#jobs tr[data-job='{job}']")).to_have_attribute(
            "data-status", "cancelled", timeout=30_000
        )
        expect(cancel).to_have_count(0)
    finally:
        httpx.post(f"{base}/api/jobs/{job}/cancel", headers={"Authorization": f"Bearer {tokens['write']}"})
    reader.close()
    writer.close()


def test_launch_watch_budget_export_and_download(served, browser, tmp_path):
    import onnxruntime as ort
    from playwright.sync_api import expect

    tab = Page(browser, served["base"], None)  # logs in through the form
    page = tab.page
    page.fill("#token", served["tokens"]["write"])
    page.click("#login")
    expect(page.locator("#who")).to_contain_text("logged in")

    page.click("#tab-jobs")
    form = page.locator("#launch")
    form.locator("[name=space]").select_option("tiny")
    form.locator("[name=profiler]").select_option("flops")
    form.locator("[name=n_trials]").fill("abc")  # a bad value: the CLI's error, inline
    form.locator("button").click()
    expect(page.locator("#launch-error")).to_contain_text("n_trials", timeout=60_000)
    form.locator("[name=n_trials]").fill("8")
    form.locator("[name=study_name]").fill("browser")
    form.locator("[name=extra]").fill("supernet.epochs=1")
    form.locator("button").click()
    expect(page.locator("#launch-status")).to_contain_text("started job", timeout=60_000)
    expect(page.locator("#launch-error")).to_be_empty()
    row = page.locator("#jobs tr[data-status]").first
    expect(row).to_contain_text("browser")
    job = row.get_attribute("data-job")
    expect(page.locator("#job-command")).to_have_text(
        "nas search +space=tiny dataset=embedded sampler=random profiler=flops executor=local "
        "n_trials=8 study_name=browser supernet.epochs=1"
    )
    row = page.locator(f"#jobs tr[data-job='{job}']")
    expect(row).to_contain_text(" of 8 trials", timeout=120_000)  # progress: N of M
    expect(row).to_have_attribute("data-status", "done", timeout=300_000)
    expect(page.locator("#job-log")).to_contain_text("Pareto front")
    expect(row).to_contain_text("8 of 8 trials")
    _screenshot(page, tmp_path, "jobs_page.png")

    page.reload()  # the token stays in the browser, the address keeps the job
    expect(page.locator("#job-command")).to_contain_text("study_name=browser")
    page.locator("#job-study").click()  # the job's study
    expect(page.locator("#study-title")).to_have_text("browser")
    canvas = page.locator("#chart")
    expect(canvas).to_have_attribute("data-trials", "8", timeout=30_000)
    assert page.evaluate("() => window.nasChart.options.scales.x.title.text") == "latency (MFLOPs, log scale)"
    _click_point(page, "front", 0)
    expect(page.locator("#trial-detail")).to_contain_text('"arch"')
    slider = page.locator("#budget")
    slider.evaluate("(s) => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    expect(page.locator("#best")).to_contain_text("best under")
    fastest = int(page.locator("#best").get_attribute("data-trial"))
    slider.evaluate("(s) => { s.value = s.max; s.dispatchEvent(new Event('input')); }")
    expect(page.locator("#best")).not_to_have_attribute("data-trial", "")
    with page.expect_download(timeout=300_000) as download:
        page.click("#export")
    path = tmp_path / "downloaded.onnx"
    download.value.save_as(path)
    expect(page.locator("#export-status")).to_contain_text("downloaded")
    tab.close(allowed=EXPECTED_CONSOLE)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": np.zeros((2, 1, 28, 28), dtype=np.float32)})
    assert logits.shape == (2, 10)
    study = optuna.load_study(study_name="browser", storage=served["storage"])
    assert fastest in {t.number for t in study.best_trials}
