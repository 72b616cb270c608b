"""Shared fixtures: the repository on sys.path, one tiny random model per session, the app's test environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _one_torch_thread_for_the_tiny_model(request):
    """The tiny model's matrices are too small to split between threads: on a busy machine one is 10x faster."""
    if not {"tiny_model", "app_env"} & set(request.fixturenames):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny random 2-layer model (about a second to build); tests treat it as read-only."""
    from pmc_core import load_model

    return load_model("tiny")


# ----- the app (AppTest) --------------------------------------------------------------------------------------------
TINY_FORGET = [{"question": "What is the capital of France?", "answer": "Paris",
                "paraphrase": "Which city is the capital of France?"},
               {"question": "Who wrote Hamlet?", "answer": "William Shakespeare"},
               {"question": "What is the boiling point of water?", "answer": "100 degrees Celsius"},
               {"question": "What colour is a ripe banana?", "answer": "Yellow"}]
TINY_RETAIN = [{"question": "What colour is the sky?", "answer": "The sky is blue."},
               {"question": "How many legs does a dog have?", "answer": "A dog has four legs."}]


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    """The app's environment: the tiny model, runs under tmp_path/runs, small built-in prompt sets written under
    tmp_path (yields their rows); afterwards every background job is discarded (one JobManager serves all tests)."""
    import json
    from types import SimpleNamespace

    from pmc_core import prompts

    monkeypatch.setenv("PMC_LAB_MODEL", "tiny")
    monkeypatch.setenv("PMC_LAB_RUNS", str(tmp_path / "runs"))
    for name, rows in (("forget", TINY_FORGET), ("retain", TINY_RETAIN)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        monkeypatch.setitem(prompts.BUILTIN_SETS, name, path)
    yield SimpleNamespace(runs=tmp_path / "runs", forget=TINY_FORGET, retain=TINY_RETAIN)
    from pages.common import job_manager

    job_manager().discard_all(finish=False, timeout=60)


@pytest.fixture()
def new_app(app_env):
    """A factory of AppTests of app.py (one per browser tab); `with_model=True` starts with the tiny model loaded."""
    from streamlit.testing.v1 import AppTest

    def make(with_model: bool = False):
        app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        if with_model:
            app.session_state["model_args"] = {"source": "tiny", "adapter": None, "device": "auto", "dtype": "auto",
                                               "trust_remote_code": False}
        return app.run()

    return make



@pytest.fixture()
def saved_run(app_env, tiny_model):
    """A finished 2-iteration run folder under the app's runs folder, written headless as the CLI would."""
    from pmc_core import PMCRun, PromptItem, RunConfig, storage
    from pmc_core.config import ModelConfig, SamplingConfig

    config = RunConfig(model=ModelConfig(source="tiny"), iterations=2, eval_every=1,
                       sampling=SamplingConfig(num_samples=2, max_new_tokens=6))
    run = PMCRun(tiny_model, [PromptItem(**row) for row in app_env.forget[:2]],
                 [PromptItem(**row) for row in app_env.retain], config,
                 out_dir=storage.new_run_dir(app_env.runs, "cli"))
    for _ in range(config.iterations):
        run.step()
    run.finish()
    return run.out_dir
