"""Forget set: what to forget (built-in, typed or uploaded), the retain set, and a probe of what the model knows now."""

import pandas as pd
import streamlit as st

from pages.common import (DEFAULT_FORGET_COUNT, PAGE_COLLAPSE, PAGE_MODEL, builtin_rows, keep_default, loaded_model,
                          prompt_table, to_items)
from pmc_core.probe import KNOWS_THRESHOLD, probe

# Pixel widths that add up to ~920: every column, the verdicts included, fits the main area of a 1400 px window.
PROBE_COLUMNS = {
    "question": st.column_config.TextColumn("question", width=190),
    "answer": st.column_config.TextColumn("ground truth", width=150),
    "greedy_answer": st.column_config.TextColumn("model's answer (greedy)", width=220),
    "answer_nll": st.column_config.NumberColumn("NLL (truth)", format="%.3f", width=95,
                                                help="Mean per-token negative log-likelihood of the ground truth "
                                                     "(nats)."),
    "answer_prob": st.column_config.ProgressColumn("p per token", min_value=0.0, max_value=1.0, format="%.3f",
                                                   width=110,
                                                   help="exp(−NLL): the geometric-mean token probability."),
    "answer_recall": st.column_config.NumberColumn("ROUGE-L", format="%.2f", width=80,
                                                   help="ROUGE-L recall of the greedy answer against the ground "
                                                        "truth."),
    "knows": st.column_config.CheckboxColumn("knows it", width=75, help=f"ROUGE-L recall ≥ {KNOWS_THRESHOLD}"),
}


def probe_table(rows: list[dict], what: str, key: str) -> None:
    known = [row["knows"] for row in rows if row["knows"] is not None]
    st.markdown(f"**{what}:** the model knows {sum(known)} of {len(known)} facts with a ground truth "
                f"(its greedy answer recalls ≥ {KNOWS_THRESHOLD:.0%} of the ground truth, ROUGE-L).")
    st.dataframe(pd.DataFrame(rows, columns=list(PROBE_COLUMNS)), column_config=PROBE_COLUMNS, hide_index=True,
                 width="stretch", key=key)


st.title("Forget set")
st.markdown("Pick the questions to forget and the retain pairs that anchor everything else. Ground-truth answers "
            "are optional and used only to monitor forgetting, never in the training signal.")

st.subheader("Forget prompts")
builtin_forget = builtin_rows("forget")
by_question = {row["question"]: row for row in builtin_forget}
keep_default("keep.forget_builtin", list(by_question)[:DEFAULT_FORGET_COUNT])
st.session_state["keep.forget_builtin"] = [q for q in st.session_state["keep.forget_builtin"] if q in by_question]
picked = st.multiselect("Built-in forget prompts", list(by_question), key="keep.forget_builtin",
                        persist_state="session",
                        placeholder="Choose questions to forget")
with st.expander("Your own forget prompts (type them in, or upload a file)", expanded=False):
    custom = prompt_table("forget_custom", [], "forget prompts")
forget = [by_question[q] for q in picked] + custom
st.session_state["forget_items"] = forget
if forget:
    st.dataframe(pd.DataFrame(forget, columns=["question", "answer", "paraphrase"]), hide_index=True, width="stretch",
                 key="forget_chosen")

st.subheader("Retain set")
st.caption("Question–answer pairs the model should keep; every pair needs an answer. Starts as the built-in set.")
with st.expander("Retain pairs", expanded=False):
    retain = prompt_table("retain_table", builtin_rows("retain"), "retain pairs")
st.session_state["retain_items"] = retain
missing_answers = [row["question"] for row in retain if not row.get("answer")]
if missing_answers:
    st.error(f"{len(missing_answers)} retain pairs have no answer (first: {missing_answers[0]!r}); a run needs one "
             "for each.")

count_column, retain_column = st.columns(2)
count_column.metric("Forget prompts", len(forget))
retain_column.metric("Retain pairs", len(retain))
if not forget:
    st.warning("The forget set is empty: pick or add at least one question.")
else:
    st.page_link(PAGE_COLLAPSE, label="Next: run the collapse", icon=":material/cyclone:")

st.divider()
st.subheader("Probe: what does the model know now?")
loaded = loaded_model()
if loaded is None:
    st.info("Load a model to probe it.", icon=":material/memory:")
    st.page_link(PAGE_MODEL, label="Load a model", icon=":material/memory:")
keep_default("keep.probe_retain", False)
with_retain = st.checkbox("Also probe the retain set", key="keep.probe_retain", persist_state="session")
if st.button("Probe the model", key="btn_probe", disabled=loaded is None or not forget):
    with st.spinner("Asking the model (greedy)…"):
        st.session_state["probe"] = {
            "model": loaded.source,
            "forget": probe(loaded, to_items(forget)),
            "retain": probe(loaded, to_items(retain)) if with_retain else None,
        }
result = st.session_state.get("probe")
if result:
    st.caption(f"Probed {result['model']}.")
    probe_table(result["forget"], "Forget prompts", "probe_forget")
    if result["retain"] is not None:
        probe_table(result["retain"], "Retain pairs", "probe_retain")
