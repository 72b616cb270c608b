"""Home page (AppTest): intro, diagram, session state with links, the collapse toy."""

from __future__ import annotations

from pmc_core.plots import CAPTIONS


def test_home_shows_intro_diagram_state_and_toy(new_app):
    at = new_app()
    assert not at.exception, at.exception
    assert at.title[0].value == "PMC Lab"
    assert len(at.get("image")) == 1  # the PMC loop diagram
    assert "No model loaded" in at.warning[0].value
    assert {link.label for link in at.page_link} >= {"1 · Load a model", "2 · Choose what to forget",
                                                     "3 · Run the collapse", "4 · Watch the answers drift"}
    assert len(at.get("plotly_chart")) == 1
    assert CAPTIONS["toy"] in [caption.value for caption in at.caption]
    assert {metric.label for metric in at.metric} == {"Answers left: self-training only",
                                                      "Answers left: with retain data"}


def test_toy_sliders_recompute_instantly(new_app):
    at = new_app()
    at.slider(key="keep.toy_draws").set_value(5)
    at.slider(key="keep.toy_retain_weight").set_value(0.0).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1


def test_home_reports_a_loaded_model(new_app):
    at = new_app(with_model=True)
    assert "Model loaded: **tiny**" in at.success[0].value
    assert "4 forget prompts" not in at.info[0].value  # the first three are preselected
    assert at.info[0].value.startswith("3 forget prompts preselected")
