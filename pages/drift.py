"""Drift: how the forget answers' likelihood, the targets, the retain set, the losses and the samples evolve."""

from concurrent import futures

import streamlit as st

from pages.common import (PAGE_COLLAPSE, PAGE_RUNS, choose_iteration, keep_default, open_with_model, shown_run)
from pmc_core.plots import (CAPTIONS, drift_figure, loss_figure, picked_score_figure, prompt_label, retain_figure,
                            samples_figure, timing_figure, token_figure)

POLL_SECONDS = 2.0
TOKEN_WAIT_SECONDS = 30  # when the job is idle; a running job answers between iterations, shown on a later poll
METRICS = {"nll": "NLL (nats/token)", "prob": "Probability exp(−NLL)"}


def chart(figure, name: str) -> None:
    st.plotly_chart(figure, key=f"chart_{name}")
    st.caption(CAPTIONS[name])


def token_view(shown, iteration: int) -> None:
    st.subheader("Token by token")
    forget = shown.forget
    keep_default("keep.token_prompt", 0)
    if not 0 <= st.session_state["keep.token_prompt"] < len(forget):
        st.session_state["keep.token_prompt"] = 0
    index = st.selectbox("Forget prompt", range(len(forget)), key="keep.token_prompt", persist_state="session",
                         format_func=lambda i: prompt_label(i, forget[i].question, width=70))
    if shown.job is None:
        st.info("The per-token view needs the run's model: load it to compute the log-probabilities.", icon=":material/memory:")
        if st.button("Load the run's model", key="btn_open_model_drift"):
            if open_with_model(shown.folder):
                st.rerun(scope="app")
        st.caption(CAPTIONS["token"])
        return
    iterations = [0] if iteration == 0 else [0, iteration]
    requests = [shown.job.token_logprobs_at(i, index) for i in iterations]
    if not all(r.done() for r in requests) and not shown.job.status().busy:
        with st.spinner("Computing token log-probabilities…"):
            futures.wait(requests, timeout=TOKEN_WAIT_SECONDS)
    if not all(r.done() for r in requests):
        st.info("Queued: computed as soon as the current iteration ends.", icon=":material/hourglass_top:")
    elif any(r.exception() is not None for r in requests):
        failure = next(r.exception() for r in requests if r.exception() is not None)
        st.error(f"Could not compute the token log-probabilities: {failure}")
    else:
        tokens = requests[0].result()[0]
        chart(token_figure(tokens, {f"iteration {i}": r.result()[1] for i, r in zip(iterations, requests)}), "token")


def charts() -> None:
    shown = shown_run()
    if shown is None:
        return
    history = shown.history
    if not history:
        st.info("No iterations yet: start the run on the Collapse page.", icon=":material/cyclone:")
        return
    if shown.job:
        st.caption(f"Run **{shown.job.label}**: {shown.job.status().state}, {len(history) - 1} iterations.")
    iteration = choose_iteration(history)
    keep_default("keep.drift_metric", "nll")
    metric = st.radio("Likelihood shown as", list(METRICS), format_func=METRICS.get, key="keep.drift_metric",
                      persist_state="session",
                      horizontal=True)
    chart(drift_figure(history, metric=metric, highlight_iteration=iteration), "drift")
    token_view(shown, iteration)
    left, right = st.columns(2)
    with left:
        chart(picked_score_figure(history), "picked_score")
        chart(loss_figure(history), "loss")
        chart(timing_figure(history), "timing")
    with right:
        chart(retain_figure(history), "retain")
        chart(samples_figure(history), "samples")


st.title("Drift")
shown = shown_run()
if shown is None:
    st.info("No run yet: start one on the Collapse page, or open a saved run.", icon=":material/trending_up:")
    st.page_link(PAGE_COLLAPSE, label="Run the collapse", icon=":material/cyclone:")
    st.page_link(PAGE_RUNS, label="Open a saved run", icon=":material/folder_open:")
    st.stop()
busy = shown.job is not None and shown.job.status().busy
st.fragment(charts, run_every=POLL_SECONDS if busy else None)()
