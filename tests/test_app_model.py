"""Model page (AppTest): the PMC_LAB_MODEL source is preselected, Load shows the facts, errors keep the old model."""

from __future__ import annotations


def open_model_page(new_app):
    at = new_app()
    return at.switch_page("pages/model.py").run()


def test_env_model_is_preselected_and_loads(new_app):
    at = open_model_page(new_app)
    assert not at.exception, at.exception
    assert at.radio(key="keep.model.kind").value == "tiny"
    assert not at.checkbox(key="keep.model.trust").value  # remote code stays off by default
    at.button(key="btn_load_model").click().run()
    assert not at.exception and not at.error, at.error
    assert at.session_state["model_args"]["source"] == "tiny"
    metrics = {metric.label: metric.value for metric in at.metric}
    assert set(metrics) >= {"Parameters", "Load time", "Device", "Precision", "Weights"}
    assert metrics["Device"] == "cpu"


def test_a_failed_load_shows_the_error_and_keeps_the_model(new_app, tmp_path):
    at = open_model_page(new_app)
    at.button(key="btn_load_model").click().run()
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    at.radio(key="keep.model.kind").set_value("folder").run()
    at.text_input(key="keep.model.folder").input(str(empty)).run()
    at.button(key="btn_load_model").click().run()
    assert not at.exception, at.exception
    assert "holds no model" in at.error[0].value
    assert at.session_state["model_args"]["source"] == "tiny"  # nothing lost


def test_a_hub_id_in_the_environment_is_preselected(new_app, monkeypatch):
    monkeypatch.setenv("PMC_LAB_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
    at = open_model_page(new_app)
    assert at.radio(key="keep.model.kind").value == "hub"
    assert at.text_input(key="keep.model.hub").value == "HuggingFaceTB/SmolLM2-135M-Instruct"
