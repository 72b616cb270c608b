"""Collapse page (AppTest): settings from RunConfig, Step / Run N / Pause / Resume / Stop / Reset on a background job
with the tiny model, the records of any iteration, and a refreshed tab finding its job again."""

from __future__ import annotations

import time

from pages.common import job_manager
from pmc_core import RunConfig

DEADLINE = 90  # seconds for any wait; tiny-model iterations take a fraction of one


def open_collapse(new_app, iterations: int = 5, **settings):
    at = new_app(with_model=True)
    small = {"keep.cfg.sampling.num_samples": 2, "keep.cfg.sampling.max_new_tokens": 6, "keep.cfg.eval_every": 2,
             "keep.cfg.optim.learning_rate": 5e-2, "keep.cfg.optim.warmup_iterations": 0,
             "keep.cfg.iterations": iterations, **settings}
    for key, value in small.items():
        at.session_state[key] = value
    return at.switch_page("pages/collapse.py").run()


def job_status(at):
    return job_manager().get(at.session_state["job_id"]).status()


def wait_for(at, done=lambda status: not status.busy):
    """Rerun the page (as the polling fragment does) until the job's status satisfies `done`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        at.run()
        status = job_status(at)
        if done(status):
            return status
        assert time.monotonic() < deadline, f"timed out; last status {status}"
        time.sleep(0.1)


def status_line(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Status:**"))


def captions(at) -> list[str]:
    return [caption.value for caption in at.caption]


def test_settings_come_from_run_config(app_env, new_app):
    at = new_app(with_model=True).switch_page("pages/collapse.py").run()
    assert not at.exception, at.exception
    defaults = RunConfig()
    assert at.number_input(key="keep.cfg.sampling.num_samples").value == defaults.sampling.num_samples
    assert at.number_input(key="keep.cfg.optim.learning_rate").value == defaults.optim.learning_rate
    assert at.selectbox(key="keep.cfg.method.name").value == defaults.method.name
    assert at.selectbox(key="keep.cfg.method.finetune").value == defaults.method.finetune
    assert at.number_input(key="keep.cfg.iterations").value == defaults.iterations
    assert not at.button(key="btn_step").disabled and at.button(key="btn_pause").disabled


def test_step_then_run_n_advance_and_show_the_records(app_env, new_app):
    at = open_collapse(new_app)
    at.button(key="btn_step").click().run()
    assert not at.exception, at.exception
    status = wait_for(at)
    assert (status.state, status.iteration) == ("idle", 1)
    assert status_line(at).startswith("**Status:** idle · iteration 1 of 5")
    assert captions(at).count("Original answer (iteration 0, greedy)") == 3
    candidates = [table.value for table in at.dataframe if "picked" in table.value.columns]
    assert len(candidates) == 3 and all(table["picked"].sum() == 1 for table in candidates)
    assert len(candidates[0]) == 2  # n samples

    at.number_input(key="keep.run_n").set_value(2)
    at.button(key="btn_run").click().run()
    status = wait_for(at)
    assert (status.state, status.iteration) == ("idle", 3)
    slider = at.slider(key="keep.iteration")
    assert (slider.value, slider.max) == (3, 3)

    slider.set_value(1).run()  # rewind the view: iteration 1 had no greedy evaluation (eval_every=2)
    assert any(c.startswith("No greedy evaluation at iteration 1") for c in captions(at))
    at.button(key="btn_generate").click().run()
    assert not at.exception, at.exception
    assert captions(at).count("Generated at iteration 1 (greedy)") == 3


def test_pause_resume_stop_and_reset(app_env, new_app):
    at = open_collapse(new_app, iterations=300)
    at.number_input(key="keep.run_n").set_value(300)
    at.button(key="btn_run").click().run()
    wait_for(at, lambda status: status.iteration >= 1)
    at.button(key="btn_pause").click().run()
    status = wait_for(at)
    assert status.state == "paused" and status.iteration < 300
    assert at.button(key="btn_pause").disabled and not at.button(key="btn_resume").disabled

    paused_at = status.iteration
    at.button(key="btn_resume").click().run()
    wait_for(at, lambda status: status.iteration > paused_at)
    at.button(key="btn_stop").click().run()
    status = wait_for(at)
    assert status.state == "stopped" and status.summary["iterations"] == status.iteration
    assert at.button(key="btn_step").disabled
    assert any(metric.label.startswith("Forget NLL: before → after") for metric in at.metric)
    run_dir = status.run_dir

    at.button(key="btn_reset").click().run()
    assert not at.exception, at.exception
    assert at.session_state["job_id"] is None
    assert at.number_input(key="keep.cfg.iterations").value == 300  # the form starts from the reset run's settings
    assert not at.button(key="btn_step").disabled
    assert (app_env.runs / run_dir.split("/")[-1] / "summary.json").is_file()  # the run stays on disk


def test_a_running_job_survives_page_switches_and_a_new_tab(app_env, new_app):
    at = open_collapse(new_app, iterations=300)
    at.number_input(key="keep.run_n").set_value(300)
    at.button(key="btn_run").click().run()
    started = wait_for(at, lambda status: status.iteration >= 1)
    at.switch_page("pages/drift.py").run()
    at.switch_page("pages/collapse.py").run()
    assert job_status(at).iteration >= started.iteration and job_status(at).state == "running"

    second_tab = new_app()  # a refresh: a new session finds the unfinished job
    assert second_tab.session_state["job_id"] == at.session_state["job_id"]
    second_tab.switch_page("pages/collapse.py").run()
    assert status_line(second_tab).startswith("**Status:** running")
    second_tab.button(key="btn_stop").click().run()
    assert wait_for(at).state == "stopped"


def test_a_failing_run_shows_its_error_and_keeps_its_history(app_env, new_app, monkeypatch):
    from pmc_core.methods.pmc import PartialModelCollapse

    original = PartialModelCollapse.forget_loss
    monkeypatch.setattr(PartialModelCollapse, "forget_loss", lambda self, *args: original(self, *args) * float("nan"))
    at = open_collapse(new_app)
    at.button(key="btn_step").click().run()
    status = wait_for(at)
    assert status.state == "failed" and status.iteration == 0
    assert "the loss is not finite" in at.error[0].value
    assert captions(at).count("Original answer (iteration 0, greedy)") == 3  # iteration 0 is kept


def test_bad_settings_are_named_and_block_the_run(app_env, new_app):
    at = open_collapse(new_app, **{"keep.cfg.sampling.top_p": 0.0})
    assert "sampling.top_p" in at.error[0].value
    assert at.button(key="btn_step").disabled


def test_without_a_model_the_page_points_to_the_model_page(app_env, new_app):
    at = new_app().switch_page("pages/collapse.py").run()
    assert not at.exception, at.exception
    assert "Load a model first." in at.warning[0].value
    assert at.button(key="btn_step").disabled and at.button(key="btn_run").disabled
