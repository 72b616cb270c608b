"""Time the dashboard with the real embedded model (SmolLM2-135M-Instruct), driven in Debian's chromium.

Measures, against `streamlit run app.py` exactly as `make run` starts it (after set-up):
  1. time to a usable page: from launching the server until /_stcore/health answers ok, and until the Home page
     shows its title "PMC Lab" in chromium;
  2. Model page: Load of the embedded model, the "Load time" the page reports and the wall time until the loaded
     facts show;
  3. Collapse page: Run N = 3 with the default settings (the first 3 built-in forget prompts), the seconds per
     iteration of the page's status line and the wall time of the run, cross-checked with the run's history.jsonl.

    .venv/bin/python bench/dashboard_timing.py               # writes bench/RESULTS-dashboard.md and prints it
    .venv/bin/python bench/dashboard_timing.py --model tiny  # a quick dry run of the flow (not a benchmark)

Reuses the server and browser helpers of tests/test_browser.py (its module is skipped when chromium is missing).
Runs go to a temporary PMC_LAB_RUNS folder, removed afterwards; the server is stopped whatever happens.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "RESULTS-dashboard.md"
SERVER_SECONDS = 180  # until /_stcore/health answers
UI_SECONDS = 60  # a page switch, the Home title after health
LOAD_SECONDS = 600  # the embedded model (rebuilt from its GGUF when the cache lacks it)
RUN_SECONDS = 600  # Run N = 3 on CPU
POLL_SECONDS = 0.25


def import_browser_helpers():
    """tests/test_browser.py as a module, loaded from its file (a `tests` package installed elsewhere can't shadow
    it). Its module-level skip (no chromium, no playwright) becomes an exit with its reason."""
    spec = importlib.util.spec_from_file_location("pmc_test_browser", ROOT / "tests" / "test_browser.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as error:  # pytest's Skipped derives from BaseException
        if type(error).__name__ in ("Skipped", "SkipTest"):
            sys.exit(f"dashboard_timing: cannot run: {error}")
        raise
    return module


tb = import_browser_helpers()
expect = tb.expect


# ----- the machine ----------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def torch_facts(env: dict[str, str]) -> dict[str, str]:
    """torch's thread count and versions in a fresh interpreter with the server's environment (the server sets no
    thread count of its own)."""
    code = ("import json, torch, transformers; print(json.dumps({'threads': torch.get_num_threads(), "
            "'interop': torch.get_num_interop_threads(), 'torch': torch.__version__, "
            "'transformers': transformers.__version__}))")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                             check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as error:
        return {"threads": f"? ({type(error).__name__})", "interop": "?", "torch": "?", "transformers": "?"}


# ----- the server -----------------------------------------------------------------------------------------------------
class Server:
    """`streamlit run app.py` as `make run` starts it, on a free port of 127.0.0.1; its output goes to a log."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = tb.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_healthy(self) -> float:
        """Seconds from the launch until /_stcore/health answers ok."""
        deadline = self.started + SERVER_SECONDS
        while not tb.healthy(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log_text()}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no answer from {self.url}/_stcore/health in {SERVER_SECONDS} s:\n"
                                   f"{self.log_text()}")
            time.sleep(0.05)
        return time.perf_counter() - self.started

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.log.close()


# ----- the page -------------------------------------------------------------------------------------------------------
def open_page(page, title: str) -> None:
    """Switch pages with the sidebar's links (a new URL would start a new session). The app draws its own
    st.page_link entries (client.showSidebarNavigation is off); Streamlit's own nav, when shown, is in the sidebar
    too. A link's text starts with its material icon's ligature ("memoryModel"), hence the match on the end."""
    link = page.locator('[data-testid="stSidebar"] a', has_text=re.compile(rf"{re.escape(title)}\s*$")).first
    link.click()
    expect(page.locator("h1", has_text=title)).to_be_visible(timeout=UI_SECONDS * 1000)


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def seconds_in(text: str) -> float | None:
    match = re.search(r"(\d+(?:[.,]\d+)?)\s*s\b", text)
    return float(match.group(1).replace(",", ".")) if match else None


def measure_start(server: Server, page) -> dict:
    health = server.wait_healthy()
    page.goto(server.url)
    expect(page.locator("h1", has_text="PMC Lab")).to_be_visible(timeout=UI_SECONDS * 1000)
    usable = time.perf_counter() - server.started
    tb.assert_no_exception(page, "home")
    return {"health_s": health, "usable_s": usable}


def measure_load(page, model: str) -> dict:
    open_page(page, "Model")
    wanted = "Embedded" if model == "embedded" else "Tiny" if model == "tiny" else None
    if wanted:  # the default source is $PMC_LAB_MODEL, else the embedded model
        expect(page.locator(tb.key("keep.model.kind"))).to_be_visible(timeout=UI_SECONDS * 1000)
        page.locator(tb.key("keep.model.kind")).get_by_text(wanted, exact=False).first.click()
    load = tb.button(page, "btn_load_model")
    expect(load).to_be_enabled(timeout=UI_SECONDS * 1000)
    started = time.perf_counter()
    load.click()
    load_metric = page.locator('[data-testid="stMetric"]', has_text="Load time")
    deadline = started + LOAD_SECONDS
    while not load_metric.first.is_visible():
        errors = page.locator('[data-testid="stAlert"], [data-testid="stException"]').filter(
            has_text=re.compile("fail|error|Error"))
        if errors.count():
            raise RuntimeError(f"Model page: {errors.first.inner_text()}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the model was not loaded within {LOAD_SECONDS} s")
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    tb.assert_no_exception(page, "model")
    reported = metric_value(page, "Load time")
    return {"wall_s": wall, "reported": reported, "reported_s": seconds_in(reported),
            "parameters": metric_value(page, "Parameters"), "device": metric_value(page, "Device"),
            "dtype": metric_value(page, "Precision")}


STATUS_ITERATION = re.compile(r"(\w+)\s*·\s*iteration\s+(-?\d+)\s+of\s+(\d+)")
SPEED = re.compile(r"(\d+(?:\.\d+)?)\s*s/iteration")


def measure_run(page, run_n: int) -> dict:
    open_page(page, "Collapse")
    run_n_input = page.locator(f"{tb.key('keep.run_n')} input")
    run_n_input.fill(str(run_n))
    run_n_input.press("Enter")
    expect(run_n_input).to_have_value(str(run_n), timeout=UI_SECONDS * 1000)
    caption = page.get_by_text(re.compile(r"\d+ forget prompts and \d+ retain pairs")).first
    prompts = caption.inner_text().strip() if caption.count() else "?"
    run_button = tb.button(page, "btn_run")
    expect(run_button).to_be_enabled(timeout=UI_SECONDS * 1000)
    started = time.perf_counter()
    run_button.click()
    status = tb.status_line(page).first
    first_seen: dict[int, float] = {}  # iteration -> seconds after the click when the status line first showed it
    text = ""
    deadline = started + RUN_SECONDS
    while True:
        now = time.perf_counter()
        try:
            text = status.inner_text(timeout=1000) if status.count() else text
        except Exception:  # noqa: BLE001 - redrawn while read: try again
            pass
        match = STATUS_ITERATION.search(text)
        if match:
            state, iteration = match.group(1), int(match.group(2))
            first_seen.setdefault(iteration, now - started)
            if state in ("failed", "stopped"):
                raise RuntimeError(f"the run ended early: {text}")
            if iteration >= run_n and state != "running":
                break
        exceptions = page.locator('[data-testid="stException"]')
        if exceptions.count():
            raise RuntimeError(f"Collapse page: {exceptions.first.inner_text()}")
        if now > deadline:
            raise RuntimeError(f"iteration {run_n} not reached within {RUN_SECONDS} s; status: {text!r}")
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    speed = SPEED.search(text)
    return {"wall_s": wall, "status": text.replace("Status:", "").strip(), "prompts": prompts,
            "page_s_per_iteration": float(speed.group(1)) if speed else None, "first_seen": first_seen}


def run_history(runs: Path) -> list[dict]:
    records = []
    for history in sorted(runs.glob("*/history.jsonl")):
        for line in history.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


# ----- the report -----------------------------------------------------------------------------------------------------
def fmt(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report(facts: dict, start: dict, load: dict, run: dict, history: list[dict], run_n: int) -> str:
    timed = [r for r in history if r.get("iteration", 0) > 0]
    totals = [r["timings"]["total"] for r in timed]
    mean_total = sum(totals) / len(totals) if totals else None
    lines = [
        "# Dashboard timing (real browser, embedded model)" if facts["model"] == "embedded"
        else f"# Dashboard timing (real browser, model {facts['model']}: a dry run, not a benchmark)",
        "",
        f"- date: {facts['date']}",
        f"- machine: {facts['nproc']} CPUs (nproc), {facts['cpu']}, {facts['memory']}; torch threads "
        f"{facts['threads']} (inter-op {facts['interop']})",
        f"- software: Python {platform.python_version()}, torch {facts['torch']}, "
        f"transformers {facts['transformers']}, streamlit {facts['streamlit']}, chromium {facts['chromium']}",
        f"- server: `streamlit run app.py --server.address 127.0.0.1 --server.port P --server.headless true "
        f"--browser.gatherUsageStats false` (as `make run`), PMC_LAB_MODEL={facts['env_model']}, "
        f"OMP_NUM_THREADS={facts['omp']}, runs in a temporary PMC_LAB_RUNS",
        f"- model: {load['parameters']} parameters on {load['device']}, {load['dtype']}; "
        f"{facts['model_cache']}",
        f"- Collapse: default settings, {run['prompts']}, Run N = {run_n}",
        f"- command: `{facts['command']}`",
        "",
        "| step | measured | seconds |",
        "| --- | --- | ---: |",
        f"| start | launch → `/_stcore/health` ok | {fmt(start['health_s'], 2)} |",
        f"| start | launch → Home title \"PMC Lab\" shown in chromium (time to a usable page) | "
        f"{fmt(start['usable_s'], 2)} |",
        f"| Model | Load: \"Load time\" the page reports | "
        f"{fmt(load['reported_s']) if load['reported_s'] is not None else load['reported']} |",
        f"| Model | Load: click → loaded facts shown (wall) | {fmt(load['wall_s'], 1)} |",
        f"| Collapse | Run N = {run_n}: s/iteration the status line shows | {fmt(run['page_s_per_iteration'], 2)} |",
        f"| Collapse | Run N = {run_n}: click → status line shows iteration {run_n} done (wall) | "
        f"{fmt(run['wall_s'], 1)} |",
        f"| Collapse | mean `timings.total` of iterations 1–{run_n} in history.jsonl (cross-check) | "
        f"{fmt(mean_total, 2)} |",
        "",
        f"Final status line: `{run['status']}`",
        "",
        "Run N timeline (seconds after the click when the status line first showed the iteration; the page polls, so "
        "about ±1 s):",
        "",
        "| iteration | status line shows it at | reference / sample | train | evaluate | total (history.jsonl) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_iteration = {r["iteration"]: r for r in history}
    for iteration in sorted(set(run["first_seen"]) | set(by_iteration)):
        if iteration < 0:
            continue
        timings = by_iteration.get(iteration, {}).get("timings", {})
        first = timings.get("reference", timings.get("sample"))
        lines.append(f"| {iteration} | {fmt(run['first_seen'].get(iteration), 1)} | {fmt(first, 2)} | "
                     f"{fmt(timings.get('train'), 2)} | {fmt(timings.get('evaluate'), 2)} | "
                     f"{fmt(timings.get('total'), 2)} |")
    lines += ["", "Iteration 0 records the original answers (the reference) before iteration 1; the click → done "
              "wall time also holds copying the model for the run and the page's polling."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="embedded (the benchmark) or tiny (a dry run)")
    parser.add_argument("--run-n", type=int, default=3)
    parser.add_argument("--out", default=None, help=f"markdown file (default: {OUT.relative_to(ROOT)}; a dry run "
                                                    "with another model only prints)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else (OUT if args.model == "embedded" else None)

    with tempfile.TemporaryDirectory(prefix="pmc-dashboard-bench-") as tmp:
        tmp_path = Path(tmp)
        runs = tmp_path / "runs"
        env = {**os.environ, "PMC_LAB_RUNS": str(runs), "PMC_LAB_MODEL": args.model}
        if args.model == "embedded":
            env.pop("PMC_LAB_MODEL")  # what `make run` sees: unset means the embedded model
        cache = Path(os.environ.get("PMC_LAB_CACHE") or Path.home() / ".cache" / "pmc_lab") / "smollm2-135m-instruct"
        import streamlit

        facts = {
            "model": args.model, "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": os.cpu_count() if not hasattr(os, "sched_getaffinity") else len(os.sched_getaffinity(0)),
            "cpu": cpu_model(), "streamlit": streamlit.__version__,
            "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
            "env_model": env.get("PMC_LAB_MODEL", "(unset)"), "omp": env.get("OMP_NUM_THREADS", "(unset)"),
            "model_cache": ("embedded model folder already rebuilt from its GGUF (cached in "
                            f"`{cache.parent}`)" if (cache / "config.json").is_file()
                            else "embedded model not cached yet: the load includes its one-time rebuild")
            if args.model == "embedded" else "not the embedded model",
            "command": "python bench/dashboard_timing.py" + "".join(f" {a}" for a in sys.argv[1:]),
        }
        try:
            facts["chromium"] = subprocess.run([str(tb.CHROMIUM), "--version"], capture_output=True, text=True,
                                               timeout=30).stdout.strip().removeprefix("Chromium ").split()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            facts["chromium"] = "?"
        facts.update(torch_facts(env))

        with tb.sync_api.sync_playwright() as playwright:
            # The browser is up before the server starts, as a user's would be: its start is not timed.
            browser = playwright.chromium.launch(executable_path=str(tb.CHROMIUM), args=tb.CHROMIUM_ARGS)
            server = None
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                page.goto("about:blank")
                server = Server(env, tmp_path / "streamlit.log")
                print(f"server: {server.url} (log {server.log_path})", flush=True)
                start = measure_start(server, page)
                print(f"start: health {start['health_s']:.2f} s, usable page {start['usable_s']:.2f} s", flush=True)
                load = measure_load(page, args.model)
                print(f"load: page says {load['reported']}, wall {load['wall_s']:.1f} s", flush=True)
                run = measure_run(page, args.run_n)
                print(f"run: {run['status']!r}, wall {run['wall_s']:.1f} s", flush=True)
                history = run_history(runs)
            except Exception:
                if server is not None:
                    print(f"--- streamlit log (tail) ---\n{server.log_text()}", file=sys.stderr)
                raise
            finally:
                if server is not None:
                    server.stop()
                browser.close()

    text = report(facts, start, load, run, history, args.run_n)
    if out is not None:
        out.write_text(text)
        print(f"written to {out}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
