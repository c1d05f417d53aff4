"""The page in a real browser (Debian's chromium driven by Playwright): log in with a token,
launch a search on the tiny space, watch it complete, move the latency-budget slider, export and
download the ONNX, and check that the file runs in ONNX Runtime. Saves a screenshot."""

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.conftest import run_in_process
from tests.web_tests.test_jobs import _free_port, _serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = os.environ.get("NAS_SCREENSHOT")  # also copy the screenshot here (README's image)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (.ci/run installs it as root)")
def test_launch_watch_budget_export_and_download_in_a_browser(tmp_path):
    import onnxruntime as ort
    from playwright.sync_api import expect, sync_playwright

    code, out, err = run_in_process("token", "create", "token_name=browser", "scope=write", cwd=tmp_path)
    assert code == 0, out + err
    token = out.strip().splitlines()[-1]
    optuna.create_study(study_name="placeholder", storage=f"sqlite:///{tmp_path}/nas.db")
    server, base = _serve(tmp_path, _free_port())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(accept_downloads=True, viewport={"width": 1150, "height": 900})
            page.goto(base)
            page.fill("#token", token)
            page.click("#login")
            expect(page.locator("#who")).to_have_text("logged in")

            form = page.locator("#launch")
            form.locator("[name=space]").fill("tiny")
            form.locator("[name=profiler]").select_option("flops")
            form.locator("[name=n_trials]").fill("abc")  # a bad value: the CLI's error, inline
            form.locator("button").click()
            expect(page.locator("#launch-error")).to_contain_text("n_trials", timeout=60_000)
            form.locator("[name=n_trials]").fill("8")
            form.locator("[name=study_name]").fill("browser")
            form.locator("[name=extra]").fill("supernet.epochs=1")
            form.locator("button").click()
            expect(page.locator("#jobs tr[data-status=done]")).to_have_count(1, timeout=300_000)

            page.reload()  # the studies list refreshes; the token stays in the browser
            page.click("#studies tr[data-study=browser]")
            expect(page.locator("#plot circle")).to_have_count(8, timeout=30_000)
            page.locator("#plot circle.front").first.click()
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
            page.screenshot(path=str(tmp_path / "study_page.png"), full_page=True)
            if SCREENSHOT:
                shutil.copy(tmp_path / "study_page.png", SCREENSHOT)
            browser.close()
        assert (tmp_path / "study_page.png").stat().st_size > 10_000
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"images": np.zeros((2, 1, 28, 28), dtype=np.float32)})
        assert logits.shape == (2, 10)
        study = optuna.load_study(study_name="browser", storage=f"sqlite:///{tmp_path}/nas.db")
        assert fastest in {t.number for t in study.best_trials}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
