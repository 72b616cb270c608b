"""The main flow in a real browser: Debian's chromium, driven by Playwright, against `streamlit run app.py` with the
tiny random model. Load the model, probe the preselected forget prompts, Run N = 3, check the drift chart, rewind to
iteration 1. Screenshots of every step go to tests/artifacts/browser/ (gitignored).

Needs /usr/bin/chromium (`make browser` installs it with apt when run as root); skipped without it. Never downloads a
browser.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SERVER_START_SECONDS = 90
LOAD_SECONDS = 90  # model load, probe, token log-probabilities (tiny model: a second or so each, more on a busy box)
RUN_SECONDS = 180  # Run N = 3 with the default settings
UI_SECONDS = 30  # a page switch or a widget change
RUN_N = 3
CHARTS = 7  # on the Drift page: drift, token heatmap, picked score, loss, timing, retain, samples

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: the browser test needs Debian's chromium (`make browser` installs it as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the Python playwright package is not installed")
expect = sync_api.expect


# ----- the server -----------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


@pytest.fixture()
def app_url(tmp_path, request):
    """`streamlit run app.py` on a free port of 127.0.0.1 with the tiny model and runs under tmp_path; stopped after
    the test whatever happens. Its output goes to tmp_path/streamlit.log (shown when it fails to start)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PMC_LAB_MODEL": "tiny", "PMC_LAB_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    log_path = tmp_path / "streamlit.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=15)
        log.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not healthy(url):
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"streamlit did not answer {url}/_stcore/health within {SERVER_START_SECONDS} s:\n"
                        f"{log_path.read_text(errors='replace')}")
        time.sleep(0.25)
    return url


@pytest.fixture()
def page():
    """A chromium page (1400 x 900), closed after the test."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


# ----- helpers --------------------------------------------------------------------------------------------------------
def key(widget_key: str) -> str:
    """The CSS class Streamlit gives a keyed element. Example: "keep.run_n" -> ".st-key-keep-run_n"."""
    return ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", widget_key.strip())


class Steps:
    """Numbered full-page screenshots, each after checking that the page shows no exception."""

    def __init__(self, page):
        self.page, self.number = page, 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()

    def done(self, name: str) -> None:
        self.number += 1
        assert_no_exception(self.page, name)
        self.page.wait_for_timeout(300)  # let a chart finish its transition before the picture
        # Streamlit scrolls inside its main section, not the document: grow the viewport to show all of it.
        height = self.page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stSidebarContent]')]"
            ".map(el => el.scrollHeight), window.innerHeight)")
        size = self.page.viewport_size
        self.page.set_viewport_size({"width": size["width"], "height": min(int(height) + 20, 8000)})
        self.page.wait_for_timeout(200)
        self.page.screenshot(path=ARTIFACTS / f"{self.number:02d}-{name}.png", full_page=True)
        self.page.set_viewport_size(size)


def button(page, widget_key: str):
    """A keyed button. Streamlit also renders a hidden copy of a button with help text: take the accessible one."""
    return page.locator(key(widget_key)).get_by_role("button")


def iteration_slider(page):
    """The rewind slider's thumb: a visually hidden <input type=range> (role slider) that takes the arrow keys."""
    return page.locator(key("keep.iteration")).get_by_role("slider")


def assert_no_exception(page, where: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{where}: Streamlit shows an exception: {boxes.first.inner_text()}"


def open_page(page, title: str) -> None:
    """Switch pages with the sidebar navigation (a new URL would start a new session)."""
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=title, exact=True).click()
    expect(page.locator("h1", has_text=title)).to_be_visible(timeout=UI_SECONDS * 1000)


def status_line(page):
    return page.locator('[data-testid="stMarkdownContainer"]', has_text="Status:")


PLOTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
    title: (el.layout && el.layout.title && el.layout.title.text) || '',
    annotations: ((el.layout && el.layout.annotations) || []).map(a => a.text || ''),
    traces: (el.data || []).map((trace, i) => {
        let x = trace.x;
        if (!(Array.isArray(x) || ArrayBuffer.isView(x))) {  // a typed-array spec: read the decoded values
            const full = (el._fullData || []).find(f => f.index === i);
            x = full ? full.x : [];
        }
        return {name: trace.name, meta: trace.meta || {}, x: Array.from(x || [])};
    }),
}))"""


def drift_chart(page) -> dict:
    charts = [chart for chart in page.evaluate(PLOTS_JS)
              if "Likelihood drift" in chart["title"]]  # Streamlit wraps titles in <b>
    assert len(charts) == 1, f"expected one drift chart, found {[c['title'] for c in page.evaluate(PLOTS_JS)]}"
    return charts[0]


def builtin_forget_questions(count: int) -> list[str]:
    lines = (ROOT / "assets" / "forget_default.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:count]


# ----- the flow -------------------------------------------------------------------------------------------------------
def test_main_flow_in_a_real_browser(app_url, page):
    steps = Steps(page)

    # Home
    page.goto(app_url)
    expect(page.locator("h1", has_text="PMC Lab")).to_be_visible(timeout=UI_SECONDS * 1000)
    nav = page.locator('[data-testid="stSidebar"]')
    for title in ("Home", "Model", "Forget set", "Collapse", "Drift", "Runs"):  # app.py's links, not pages/ files
        expect(nav.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="common")).to_have_count(0)  # no raw listing of the pages/ folder
    steps.done("home")

    # Model: the tiny model is the default source ($PMC_LAB_MODEL); load it
    open_page(page, "Model")
    expect(page.locator(key("keep.model.kind"))).to_contain_text("Tiny random model")
    button(page, "btn_load_model").click()
    expect(page.get_by_text("Next: choose what to forget")).to_be_visible(timeout=LOAD_SECONDS * 1000)
    expect(page.locator('[data-testid="stMetric"]', has_text="Parameters")).to_be_visible()
    expect(page.locator('[data-testid="stSidebarUserContent"]')).to_contain_text("Model: tiny")
    steps.done("model-loaded")

    # Forget set: the first three built-in prompts are preselected; probe them
    open_page(page, "Forget set")
    picked = page.locator(key("keep.forget_builtin"))
    for question in builtin_forget_questions(3):
        expect(picked).to_contain_text(question, timeout=UI_SECONDS * 1000)
    expect(page.locator('[data-testid="stMetric"]', has_text="Forget prompts")).to_contain_text("3")
    button(page, "btn_probe").click()
    expect(page.get_by_text("the model knows", exact=False)).to_be_visible(timeout=LOAD_SECONDS * 1000)
    probe_summary = '[data-testid="stElementContainer"]:has-text("the model knows")'
    expect(page.locator(f'{probe_summary} + [data-testid="stElementContainer"] [data-testid="stDataFrame"]')
           ).to_be_visible()  # the answers table (a canvas) right below its summary line
    expect(page.get_by_text("Probed tiny.")).to_be_visible()
    steps.done("forget-set-probed")

    # Collapse: Run N = 3 in the background, wait for iteration 3
    open_page(page, "Collapse")
    run_n = page.locator(f"{key('keep.run_n')} input")
    run_n.fill(str(RUN_N))
    run_n.press("Enter")
    expect(run_n).to_have_value(str(RUN_N))
    run_button = button(page, "btn_run")
    expect(run_button).to_be_enabled(timeout=UI_SECONDS * 1000)
    steps.done("collapse-ready")
    run_button.click()
    expect(status_line(page)).to_be_visible(timeout=UI_SECONDS * 1000)
    expect(status_line(page)).to_contain_text(re.compile(rf"idle · iteration {RUN_N} of \d+"),
                                              timeout=RUN_SECONDS * 1000)
    expect(button(page, "btn_generate")).to_contain_text(f"Generate at iteration {RUN_N}", timeout=UI_SECONDS * 1000)
    expect(iteration_slider(page)).to_have_value(str(RUN_N))
    steps.done("collapse-after-run")

    # Drift: per prompt, the drift chart's line holds iterations 0..RUN_N
    open_page(page, "Drift")
    expect(page.locator(".js-plotly-plot")).to_have_count(CHARTS, timeout=LOAD_SECONDS * 1000)  # with the token one
    chart = drift_chart(page)
    solid = {trace["meta"]["prompt"]: trace["x"] for trace in chart["traces"]
             if trace["meta"].get("series") == "original_nll"}
    assert sorted(solid) == [0, 1, 2], f"drift chart lines per prompt: {chart['traces']}"
    for prompt, x in solid.items():
        assert x == list(range(RUN_N + 1)), f"prompt #{prompt + 1}: drift line at iterations {x}"
    for trace in chart["traces"]:  # ground truth and paraphrase lines, where drawn, cover the same iterations
        assert trace["x"] == list(range(RUN_N + 1)), f"{trace['name']} ({trace['meta']}): iterations {trace['x']}"
    assert any(f"iteration {RUN_N}" in text for text in chart["annotations"]), chart["annotations"]
    steps.done("drift")

    # Collapse: rewind to iteration 1 with the slider's keyboard
    open_page(page, "Collapse")
    thumb = iteration_slider(page)
    expect(thumb).to_have_value(str(RUN_N), timeout=UI_SECONDS * 1000)
    thumb.focus()
    for _ in range(RUN_N - 1):
        thumb.press("ArrowLeft")
    expect(thumb).to_have_value("1")
    expect(button(page, "btn_generate")).to_contain_text("Generate at iteration 1", timeout=UI_SECONDS * 1000)
    first_prompt = page.locator(key("prompt_0"))
    expect(first_prompt).to_contain_text(re.compile(r"(Greedy answer at|No greedy evaluation at) iteration 1\b"))
    expect(first_prompt.locator('[data-testid="stDataFrame"]')).to_be_visible()  # iteration 1 sampled every prompt
    expect(page.get_by_text("Retain set at iteration 1")).to_be_visible()
    steps.done("collapse-rewound-to-1")

    # Drift follows the shared slider: its marker sits at iteration 1
    open_page(page, "Drift")
    expect(iteration_slider(page)).to_have_value("1", timeout=UI_SECONDS * 1000)
    expect(page.locator(".js-plotly-plot")).to_have_count(CHARTS, timeout=LOAD_SECONDS * 1000)
    assert any("iteration 1" in text for text in drift_chart(page)["annotations"])
    steps.done("drift-at-iteration-1")
