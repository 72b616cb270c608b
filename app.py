"""PMC Lab: explore Partial Model Collapse unlearning. Entry point: `streamlit run app.py` (or `make run`).

Session state holds plain data only:
    model_args       dict | None   load arguments of the session's model (ModelConfig fields); the model itself is
                                   in st.cache_resource, shared read-only by all tabs
    model_info       dict          LoadedModel.describe() of that model
    forget_items     list[dict]    chosen forget prompts {question, answer?, paraphrase?}
    retain_items     list[dict]    chosen retain pairs
    forget_custom_*, retain_table_*  the prompt tables' rows, upload bookkeeping and editor version
    probe            dict          last probe: {"model": source, "forget": rows, "retain": rows | None}
    job_id           str | None    the session's background job (pmc_core.jobs, in st.cache_resource)
    view_run         str | None    a run folder opened on the Runs page
    keep.*           widget values kept across page switches (persist_state="session"), e.g. keep.cfg.<group>.<field>
                     for the Collapse settings, keep.iteration for the rewind slider shared by Collapse and Drift
    generate_requests  dict[job_id, list[int]]  iterations whose answers this session asked to generate
    collapse_seen    [job_id, state, pending]  what the Collapse page last drew (its poller redraws on a change)
    view_last        int           newest iteration at the last draw (the slider follows it while left there)
    confirm_delete   str | None    run folder awaiting delete confirmation on the Runs page
"""

import streamlit as st

from pages.common import attach_on_first_visit, session_summary

st.set_page_config(page_title="PMC Lab", page_icon=":material/science:", layout="wide")
attach_on_first_visit()

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/model.py", title="Model", icon=":material/memory:"),
    st.Page("pages/forget_set.py", title="Forget set", icon=":material/edit_note:"),
    st.Page("pages/collapse.py", title="Collapse", icon=":material/cyclone:"),
    st.Page("pages/drift.py", title="Drift", icon=":material/trending_up:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]
# Our own sidebar links (client.showSidebarNavigation is off): Streamlit would otherwise list the raw pages/ folder
# on the first visit after a server start, before st.navigation has run once.
page = st.navigation(pages, position="hidden")
with st.sidebar:
    for entry in pages:
        st.page_link(entry)
    st.divider()
    summary = st.container()
try:
    page.run()
finally:
    # Drawn after the page, so it shows what the page just changed (and still drawn when a page calls st.stop()).
    with summary:
        session_summary()
