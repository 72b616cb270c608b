"""Home: what PMC is, where this session stands, and the collapse toy."""

import inspect
from pathlib import Path

import streamlit as st

from pages.common import (PAGE_COLLAPSE, PAGE_DRIFT, PAGE_FORGET, PAGE_MODEL, PAGE_RUNS, active_job, forget_rows,
                          keep_default, retain_rows, status_text)
from pmc_core.plots import CAPTIONS, toy_figure
from pmc_core.toy import compare_urns, surviving_categories

DIAGRAM = Path(__file__).resolve().parent.parent / "assets" / "pmc_loop.svg"
TOY_DEFAULTS = {name: p.default for name, p in inspect.signature(compare_urns).parameters.items()}

st.title("PMC Lab")
st.markdown(
    "**Partial Model Collapse** (Scholten et al., arXiv 2507.04219) makes a language model forget chosen facts by "
    "collapsing it *on purpose*, only for those questions. For each question to forget the model samples a few "
    "answers; the one that overlaps least with its **original answer** becomes the training target, while a "
    "**retain** loss on ordinary question–answer pairs anchors everything else. Repeated, the answers drift away "
    "from the original information. The private answer itself never enters the gradient: only the question, the "
    "model's own samples and the retain data do."
)

left, right = st.columns([3, 2], gap="large")
with left:
    st.image(str(DIAGRAM), caption="One PMC iteration", width="stretch")
with right:
    st.subheader("Where you are")
    model_args = st.session_state.get("model_args")
    if model_args:
        st.success(f"Model loaded: **{model_args['source']}**", icon=":material/check_circle:")
    else:
        st.warning("No model loaded yet.", icon=":material/warning:")
    st.page_link(PAGE_MODEL, label="1 · Load a model", icon=":material/memory:")

    chosen = "chosen" if "forget_items" in st.session_state else "preselected (built-in)"
    st.info(f"{len(forget_rows())} forget prompts {chosen}, {len(retain_rows())} retain pairs.", icon=":material/edit_note:")
    st.page_link(PAGE_FORGET, label="2 · Choose what to forget", icon=":material/edit_note:")

    job = active_job()
    if job is not None:
        st.info("Run: " + status_text(job.status()), icon=":material/cyclone:")
    elif st.session_state.get("view_run"):
        st.info(f"Viewing the saved run {Path(st.session_state['view_run']).name}.", icon=":material/folder_open:")
    else:
        st.info("No run in progress.", icon=":material/cyclone:")
    st.page_link(PAGE_COLLAPSE, label="3 · Run the collapse", icon=":material/cyclone:")
    st.page_link(PAGE_DRIFT, label="4 · Watch the answers drift", icon=":material/trending_up:")
    st.page_link(PAGE_RUNS, label="Saved runs", icon=":material/folder_open:")

st.divider()
st.subheader("The collapse toy")
st.markdown(
    "The theory in miniature: an *urn* (a categorical distribution over 'answers') is refit, generation after "
    "generation, on draws from itself. Alone it collapses onto a few answers at random. Mixed with retain data, "
    "the retained answers stay and the others vanish: that is the partial collapse PMC relies on."
)
keep_default("keep.toy_draws", TOY_DEFAULTS["draws"])
keep_default("keep.toy_retain_weight", float(TOY_DEFAULTS["retain_weight"]))
draws_column, weight_column = st.columns(2)
draws = draws_column.slider("Draws per generation", min_value=1, max_value=200, key="keep.toy_draws",
                            persist_state="session",
                            help="Fewer draws: more sampling noise, faster collapse.")
retain_weight = weight_column.slider("Retain weight", min_value=0.0, max_value=5.0, step=0.1,
                                     key="keep.toy_retain_weight", persist_state="session",
                                     help="Retain data per generation, relative to the draws (λ of the toy).")
frame = compare_urns(draws=draws, retain_weight=retain_weight)
st.plotly_chart(toy_figure(frame), key="toy_chart")
st.caption(CAPTIONS["toy"])
survivors = surviving_categories(frame)
metric_columns = st.columns(len(survivors))
for column, (scenario, count) in zip(metric_columns, survivors.items()):
    column.metric(f"Answers left: {scenario}", f"{count} of {TOY_DEFAULTS['num_categories']}")
