"""The web page in headless Chromium (Debian's, driven by Playwright): the runs table and the
loss chart render, and the playground streams a reply."""

from __future__ import annotations

import shutil

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not shutil.which(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def page(live):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url + "/")
        yield page
        browser.close()
        assert not errors


def test_runs_table_and_loss_chart(page, trained_run):
    page.wait_for_selector("#runs tbody tr[data-id='tiny']")
    row = page.inner_text("#runs tbody tr[data-id='tiny']")
    assert "completed" in row and "40 / 40" in row
    page.click("#runs tbody tr[data-id='tiny']")
    page.wait_for_function("document.querySelector('#run-title').textContent.startsWith('tiny')")
    page.wait_for_selector("#checkpoints tbody tr")
    assert "best.ckpt" in page.inner_text("#checkpoints")
    assert page.inner_text("#settings").split().count("32") >= 1  # n_embd
    # the chart drew its lines: some canvas pixels have the train and val colours
    colours = page.evaluate("""() => {
        const c = document.querySelector('#chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let train = 0, val = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] < 90 && d[i + 2] > 180) train++;
            if (d[i] > 200 && d[i + 1] < 120 && d[i + 2] < 60) val++;
        }
        return [train, val];
    }""")
    assert colours[0] > 50 and colours[1] > 20


def test_playground_streams_a_completion(page, served):
    s = served["tiny"]
    page.select_option("#mode", "completion")
    page.fill("#prompt", "alpha ")
    page.fill("#max-tokens", "12")
    page.fill("#temperature", "0")
    page.click("#send")
    page.wait_for_function("document.querySelector('#play-status').textContent.includes('tokens')")
    expected = s.tokenizer.decode(list(s.model.stream(s.tokenizer.encode("alpha "), 12,
                                                      temperature=0)))
    assert page.inner_text("#output") == "alpha " + expected
    assert "length" in page.inner_text("#play-status")
