"""App-side helpers shared by the pages: cached resources, session-state defaults, the run a page shows.

Session state holds plain data only (see app.py for the list of keys); models and jobs live in st.cache_resource,
shared read-only by every tab of this process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pmc_core import (ConfigError, LoadedModel, ModelLoadError, PromptFileError, PromptItem, RunConfig, load_builtin,
                      load_model, storage)
from pmc_core.config import ModelConfig
from pmc_core.jobs import TERMINAL_STATES, Job, JobManager, JobStatus
from pmc_core.prompts import FIELDS, read_prompt_bytes

MODEL_ENV = "PMC_LAB_MODEL"
DEFAULT_FORGET_COUNT = 3  # built-in forget prompts preselected
PAGE_HOME, PAGE_MODEL, PAGE_FORGET = "pages/home.py", "pages/model.py", "pages/forget_set.py"
PAGE_COLLAPSE, PAGE_DRIFT, PAGE_RUNS = "pages/collapse.py", "pages/drift.py", "pages/runs.py"


def _run_through_app_py() -> None:
    """Streamlit takes a folder named pages/ for a legacy multipage app until st.navigation first runs in this process,
    so a first visit straight to a page's URL would run that page without app.py. Turn the legacy mode off and rerun:
    app.py and its st.navigation then run first and open the same page."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        st.rerun()


_run_through_app_py()  # at the first import, i.e. in the first script run of this process


# ----- shared resources (one per process, shared read-only by every tab) ---------------------------------------------
@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """All background jobs of this server: a refreshed or second tab finds its running job here."""
    return JobManager()


@st.cache_resource(show_spinner=False, max_entries=3)
def cached_model(source: str, adapter: str | None, device: str, dtype: str, trust_remote_code: bool) -> LoadedModel:
    """A loaded model, keyed by its load arguments; runs copy it, so it is shared read-only."""
    return load_model(source, adapter=adapter, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def default_model_source() -> str:
    """$PMC_LAB_MODEL (e.g. "tiny" in tests), else the embedded model."""
    return os.environ.get(MODEL_ENV, "").strip() or "embedded"


def load_model_args(args: dict[str, Any]) -> LoadedModel:
    """Validate the arguments (ConfigError) and load or fetch the cached model (ModelLoadError)."""
    checked = ModelConfig(**args)
    return cached_model(checked.source, checked.adapter, checked.device, checked.dtype, checked.trust_remote_code)


def loaded_model() -> LoadedModel | None:
    """The model this session loaded on the Model page, or None."""
    args = st.session_state.get("model_args")
    if not args:
        return None
    try:
        with st.spinner(f"Loading {args['source']}…"):
            return load_model_args(args)
    except (ConfigError, ModelLoadError) as error:
        st.error(f"The model could not be loaded again: {error}")
        return None


# ----- widget values that survive page switches -----------------------------------------------------------------------
def keep_default(key: str, value: Any) -> None:
    """Give a kept widget its first value; the widget is then created without `value=` (its key holds it)."""
    if key not in st.session_state:
        st.session_state[key] = value


# ----- prompt sets ----------------------------------------------------------------------------------------------------
def builtin_rows(name: str, quiet: bool = False) -> list[dict[str, str]]:
    """A built-in prompt set as plain dicts; an empty list (and, unless quiet, an error) if it cannot be read."""
    try:
        return [item.to_dict() for item in load_builtin(name)]
    except PromptFileError as error:
        if not quiet:
            st.error(f"The built-in {name} set cannot be read: {error}")
        return []


def forget_rows(quiet: bool = False) -> list[dict[str, str]]:
    """The chosen forget prompts; until the Forget set page is visited, the first built-in ones."""
    if "forget_items" not in st.session_state:
        return builtin_rows("forget", quiet)[:DEFAULT_FORGET_COUNT]
    return st.session_state["forget_items"]


def retain_rows(quiet: bool = False) -> list[dict[str, str]]:
    """The chosen retain pairs; until the Forget set page is visited, the built-in set."""
    if "retain_items" not in st.session_state:
        return builtin_rows("retain", quiet)
    return st.session_state["retain_items"]


def to_items(rows: list[dict[str, str]]) -> list[PromptItem]:
    return [PromptItem(**row) for row in rows]


def rows_from_frame(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Rows of an edited prompt table as dicts of non-empty text; rows without a question are dropped."""
    rows = []
    for record in frame.to_dict("records"):
        row = {key: value.strip() for key, value in record.items()
               if key in FIELDS and isinstance(value, str) and value.strip()}
        if "question" in row:
            rows.append(row)
    return rows


def prompt_table(name: str, default_rows: list[dict[str, str]], what: str) -> list[dict[str, str]]:
    """An editable prompt table with a JSONL/CSV upload; returns its rows and keeps them in session state.

    `name`_rows holds the current rows. The editor only keeps its edits while it is shown, so each time it appears
    afresh it starts from the kept rows; an accepted upload replaces them, a bad one changes nothing.
    """
    rows_key, base_key, version_key = f"{name}_rows", f"{name}_base", f"{name}_version"
    error_key, done_key = f"{name}_upload_error", f"{name}_upload_done"
    st.session_state.setdefault(rows_key, default_rows)
    st.session_state.setdefault(version_key, 0)
    editor_key = f"{name}_editor_{st.session_state[version_key]}"
    if editor_key not in st.session_state:
        st.session_state[base_key] = st.session_state[rows_key]

    upload = st.file_uploader(f"Upload {what} (JSONL or CSV with a 'question' column; 'answer', 'paraphrase' "
                              "optional)", type=["jsonl", "json", "csv"], key=f"{name}_upload")
    if upload is not None and st.session_state.get(done_key) != upload.file_id:
        st.session_state[done_key] = upload.file_id
        st.session_state[error_key] = None
        try:
            items = read_prompt_bytes(upload.getvalue(), upload.name)
        except PromptFileError as error:
            st.session_state[error_key] = f"Nothing loaded, your table is unchanged. {error}"
        else:
            st.session_state[rows_key] = st.session_state[base_key] = [item.to_dict() for item in items]
            st.session_state[version_key] += 1
            editor_key = f"{name}_editor_{st.session_state[version_key]}"
            st.toast(f"Loaded {len(items)} {what} from {upload.name}")
    if upload is not None and st.session_state.get(error_key):
        st.error(st.session_state[error_key])

    frame = pd.DataFrame(st.session_state[base_key], columns=list(FIELDS)).astype("string")  # text even when empty
    edited = st.data_editor(
        frame, key=editor_key, num_rows="dynamic", width="stretch", hide_index=True,
        column_config={
            "question": st.column_config.TextColumn("question", width="large", required=True),
            "answer": st.column_config.TextColumn("answer", width="medium"),
            "paraphrase": st.column_config.TextColumn("paraphrase", width="medium"),
        },
    )
    rows = rows_from_frame(edited)
    st.session_state[rows_key] = rows
    return rows


# ----- the run a page shows: a live job, or a run folder opened from disk ---------------------------------------------
@dataclasses.dataclass
class ShownRun:
    """What Collapse and Drift display; rebuilt on every script run (never stored in session state)."""

    job: Job | None
    saved: storage.SavedRun | None

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.job.history() if self.job else self.saved.history

    @property
    def config(self) -> RunConfig:
        return self.job.config if self.job else self.saved.config

    @property
    def forget(self) -> list[PromptItem]:
        return self.job.forget if self.job else self.saved.forget

    @property
    def folder(self) -> str:
        return self.job.run_dir if self.job else str(self.saved.folder)

    @property
    def summary(self) -> dict[str, Any] | None:
        if self.job:
            return self.job.status().summary
        return self.saved.summary or None


def attach_on_first_visit() -> None:
    """A fresh session (a refreshed or new tab) reattaches to the newest unfinished job saving under this runs
    folder."""
    if "job_id" in st.session_state:
        return
    root = storage.runs_root().resolve()
    for status in job_manager().statuses():
        ours = Path(status.run_dir).resolve().parent == root
        if ours and status.state not in TERMINAL_STATES and not status.read_only:
            st.session_state["job_id"] = status.job_id
            return
    st.session_state["job_id"] = None


def active_job() -> Job | None:
    return job_manager().get(st.session_state.get("job_id"))


def shown_run() -> ShownRun | None:
    """The live job of this session, else the run folder opened on the Runs page, else None."""
    job = active_job()
    if job is not None:
        return ShownRun(job, None)
    folder = st.session_state.get("view_run")
    if folder:
        try:
            saved = storage.load_run(folder)
        except (storage.RunFolderError, ConfigError, PromptFileError, OSError) as error:
            st.error(f"The run folder {folder} cannot be read: {error}")
            return None
        return ShownRun(None, saved)
    return None


def open_with_model(folder: str) -> Job | None:
    """Load a saved run's model (cached) and reopen the run as a read-only job for this session."""
    saved = storage.load_run(folder)
    try:
        with st.spinner(f"Loading {saved.config.model.source} and the run's last snapshot…"):
            loaded = load_model_args(dataclasses.asdict(saved.config.model))
            job = job_manager().open_folder(loaded, folder)
    except (ConfigError, ModelLoadError, ValueError, KeyError, OSError) as error:
        st.error(f"The run's model could not be loaded: {error}")
        return None
    st.session_state["job_id"] = job.job_id
    st.session_state["view_run"] = folder
    return job


def choose_iteration(history: list[dict[str, Any]]) -> int:
    """The iteration slider (the rewind); it follows the newest iteration while left on the newest."""
    last = history[-1]["iteration"]
    chosen = st.session_state.get("keep.iteration")
    if chosen is None or chosen == st.session_state.get("view_last") or not 0 <= chosen <= last:
        chosen = last
    st.session_state["keep.iteration"] = chosen
    st.session_state["view_last"] = last
    if last == 0:
        st.caption("Iteration 0: the original answers (the reward's reference).")
        return 0
    return st.slider("Iteration", min_value=0, max_value=last, key="keep.iteration", persist_state="session",
                     help="Look at any earlier iteration; left on the newest, it follows the run.")


def status_text(status: JobStatus) -> str:
    """One line about a job. Example: "running · iteration 3 of 10 (target 5) · sampling"."""
    where = "not started" if status.iteration < 0 else f"iteration {status.iteration} of {status.planned_iterations}"
    parts = [status.state, where]
    if status.state in ("running", "paused") and status.target_iteration is not None:
        parts[-1] += f" (target {status.target_iteration})"
    if status.busy:
        parts.append(status.phase)
    if status.pending in ("pause", "stop"):
        parts.append(f"{status.pending} requested: after this iteration")
    if status.seconds_per_iteration is not None:
        parts.append(f"{status.seconds_per_iteration:.2f} s/iteration")
    return " · ".join(parts)


def clock(stamp: float | None) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%H:%M:%S") if stamp else "—"


def session_summary() -> None:
    """Where this session stands (model, prompt sets, run), for the sidebar."""
    args = st.session_state.get("model_args")
    st.caption("**Model:** " + (args["source"] if args else "not loaded"))
    forget, retain = forget_rows(quiet=True), retain_rows(quiet=True)
    st.caption(f"**Forget prompts:** {len(forget)} · **retain pairs:** {len(retain)}")
    job = active_job()
    if job is not None:
        st.caption("**Run:** " + status_text(job.status()))
    elif st.session_state.get("view_run"):
        st.caption("**Run:** viewing " + Path(st.session_state["view_run"]).name)
    else:
        st.caption("**Run:** none yet")
