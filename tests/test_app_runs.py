"""Runs page (AppTest): saved runs (CLI ones too) listed, opened, downloaded, deleted; live jobs re-attached."""

from __future__ import annotations

from pages.common import job_manager
from pmc_core import PromptItem, RunConfig


def open_runs(new_app):
    return new_app().switch_page("pages/runs.py").run()


def test_no_runs_yet(app_env, new_app):
    at = open_runs(new_app)
    assert not at.exception, at.exception
    assert "No saved runs yet." in [info.value for info in at.info]
    assert "No job is running in this server." in [caption.value for caption in at.caption]


def test_a_saved_run_opens_downloads_and_deletes(app_env, new_app, saved_run):
    at = open_runs(new_app)
    assert not at.exception, at.exception
    listed = next(table.value for table in at.dataframe if "name" in table.value.columns)
    assert list(listed["name"]) == [saved_run.name] and bool(listed["finished"][0])

    at.button(key="btn_open_run").click().run()
    assert at.session_state["view_run"] == str(saved_run)
    assert {link.label for link in at.page_link} >= {"Open in Collapse", "Open in Drift"}
    at.switch_page("pages/collapse.py").run()
    assert not at.exception, at.exception
    assert "(read-only)" in at.markdown[0].value
    assert at.slider(key="keep.iteration").max == 2
    assert at.button(key="btn_step").disabled

    at.switch_page("pages/runs.py").run()
    download = at.download_button(key="btn_download")
    assert download.label == "Download zip" and not download.disabled
    download.click().run()  # the zip is built on click (deferred data)
    assert not at.exception, at.exception

    at.button(key="btn_delete").click().run()
    assert "for good?" in at.warning[0].value
    at.button(key="btn_confirm_delete").click().run()
    assert not at.exception, at.exception
    assert not saved_run.exists()
    assert at.session_state["view_run"] is None
    assert "No saved runs yet." in [info.value for info in at.info]


def test_live_jobs_can_be_attached(app_env, new_app, tiny_model):
    config = RunConfig(iterations=2)
    job = job_manager().create(tiny_model, [PromptItem(**app_env.forget[0])], [PromptItem(**app_env.retain[0])],
                               config)
    at = open_runs(new_app)
    at.session_state["job_id"] = None
    at.selectbox(key="runs_job_pick").set_value(job.job_id)
    at.button(key="btn_attach").click().run()
    assert not at.exception, at.exception
    assert at.session_state["job_id"] == job.job_id
