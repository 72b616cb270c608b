"""Drift page (AppTest): every chart with its caption, the NLL/probability toggle, the token view for a live job and
for a saved run opened from disk."""

from __future__ import annotations

from pages.common import job_manager
from pmc_core import PromptItem, RunConfig
from pmc_core.config import SamplingConfig
from pmc_core.plots import CAPTIONS

WAIT = 90


def test_without_a_run_the_page_says_where_to_start(app_env, new_app):
    at = new_app().switch_page("pages/drift.py").run()
    assert not at.exception, at.exception
    assert "No run yet" in at.info[0].value
    assert {link.label for link in at.page_link} >= {"Run the collapse", "Open a saved run"}


def test_charts_and_token_view_of_a_live_job(app_env, new_app, tiny_model):
    config = RunConfig(iterations=3, eval_every=2, sampling=SamplingConfig(num_samples=2, max_new_tokens=6))
    job = job_manager().create(tiny_model, [PromptItem(**row) for row in app_env.forget[:2]],
                               [PromptItem(**row) for row in app_env.retain], config)
    job.run_iterations(2)
    job.wait(WAIT)
    at = new_app(with_model=True)
    at.session_state["job_id"] = job.job_id
    at.switch_page("pages/drift.py").run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 7
    assert set(CAPTIONS.values()) - {CAPTIONS["toy"]} <= {caption.value for caption in at.caption}
    assert at.slider(key="keep.iteration").value == 2

    at.radio(key="keep.drift_metric").set_value("prob")
    at.selectbox(key="keep.token_prompt").set_value(1).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 7


def test_a_saved_run_shows_its_history_and_loads_its_model_for_tokens(app_env, new_app, saved_run):
    at = new_app()
    at.session_state["view_run"] = str(saved_run)
    at.switch_page("pages/drift.py").run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 6  # everything but the token view
    assert "needs the run's model" in at.info[0].value
    at.button(key="btn_open_model_drift").click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 7
    job = job_manager().get(at.session_state["job_id"])
    assert job.status().read_only and job.status().state == "finished"
