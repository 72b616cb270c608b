"""Runs: live jobs of this server and run folders on disk (dashboard and CLI runs): open, download, delete."""

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from pages.common import PAGE_COLLAPSE, PAGE_DRIFT, clock, job_manager
from pmc_core import storage

LIVE_WAIT_SECONDS = 30  # for a discarded job's current iteration to end before its folder is deleted


def go_to_run_pages() -> None:
    st.page_link(PAGE_COLLAPSE, label="Open in Collapse", icon=":material/cyclone:")
    st.page_link(PAGE_DRIFT, label="Open in Drift", icon=":material/trending_up:")


st.title("Runs")
manager = job_manager()

st.subheader("Live jobs")
statuses = manager.statuses()
if not statuses:
    st.caption("No job is running in this server.")
else:
    st.dataframe(pd.DataFrame([{
        "job": s.label, "state": s.state, "iteration": s.iteration, "planned": s.planned_iterations,
        "phase": s.phase, "updated": clock(s.updated_at), "read-only": s.read_only, "folder": s.run_dir,
    } for s in statuses]), hide_index=True, width="stretch", key="live_jobs")
    by_id = {s.job_id: s for s in statuses}
    chosen_job = st.selectbox("Live job", list(by_id), key="runs_job_pick",
                              format_func=lambda i: f"{by_id[i].label} ({by_id[i].state})")
    if st.button("Attach to this job", key="btn_attach"):
        st.session_state["job_id"] = chosen_job
        st.session_state["view_run"] = None
        st.success(f"Attached to {by_id[chosen_job].label}.")
        go_to_run_pages()

st.subheader("Saved runs")
root = storage.runs_root()
st.caption(f"In `{root.resolve()}` (set PMC_LAB_RUNS to use another folder); runs written by the CLI appear here too.")
rows = storage.list_runs(root)
if not rows:
    st.info("No saved runs yet.", icon=":material/folder_open:")
    st.stop()
st.dataframe(pd.DataFrame(rows).drop(columns=["path"]), hide_index=True, width="stretch", key="saved_runs")
by_path = {row["path"]: row for row in rows}
if st.session_state.get("runs_pick") not in by_path:
    st.session_state.pop("runs_pick", None)
path = st.selectbox("Run", list(by_path), key="runs_pick", format_func=lambda p: by_path[p]["name"])
row = by_path[path]
if row.get("error"):
    st.error(f"This folder cannot be read: {row['error']}")

live = manager.find_by_folder(path)
open_column, download_column, delete_column = st.columns(3)
if open_column.button("Open run", key="btn_open_run", type="primary", disabled=bool(row.get("error")),
                      help="Show this run on the Collapse and Drift pages."):
    st.session_state["job_id"] = live.job_id if live else None
    st.session_state["view_run"] = path
    st.success(f"Opened {row['name']}" + (" (its live job)." if live else "."))
    go_to_run_pages()
download_column.download_button("Download zip", data=partial(storage.zip_run, path), file_name=f"{row['name']}.zip",
                                mime="application/zip", key="btn_download", on_click="ignore")
if delete_column.button("Delete…", key="btn_delete"):
    st.session_state["confirm_delete"] = path

if st.session_state.get("confirm_delete") == path:
    busy = live is not None and live.status().busy
    if busy:
        st.error("This run is still running: stop it on the Collapse page first.")
    else:
        st.warning(f"Delete {row['name']} and all its files for good?", icon=":material/delete:")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", key="btn_confirm_delete", type="primary"):
            if live is not None:
                manager.discard(live.job_id, finish=False)
                live.join(LIVE_WAIT_SECONDS)
            try:
                storage.delete_run(path)
            except (storage.RunFolderError, OSError) as error:
                st.error(f"Could not delete: {error}")
            else:
                for key in ("view_run", "confirm_delete"):
                    if st.session_state.get(key) == path:
                        st.session_state[key] = None
                if live is not None and st.session_state.get("job_id") == live.job_id:
                    st.session_state["job_id"] = None
                st.toast(f"Deleted {Path(path).name}")
                st.rerun()
        if no.button("Cancel", key="btn_cancel_delete"):
            st.session_state["confirm_delete"] = None
            st.rerun()

try:
    summary = storage.load_run(path).summary
except (storage.RunFolderError, ValueError, OSError):
    summary = {}
if summary:
    with st.expander("Summary"):
        st.json(summary)
