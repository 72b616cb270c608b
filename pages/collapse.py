"""Collapse: the run's settings, Step / Run N / Pause / Stop / Reset, live progress, and any iteration's records."""

import dataclasses
import math
import typing
from concurrent import futures
from typing import Any, Literal

import pandas as pd
import streamlit as st

from pages.common import (PAGE_DRIFT, PAGE_FORGET, PAGE_MODEL, PAGE_RUNS, active_job, choose_iteration, clock,
                          default_model_source, forget_rows, job_manager, keep_default, loaded_model, open_with_model,
                          retain_rows, shown_run, status_text, to_items)
from pmc_core import ConfigError, MethodConfig, OptimConfig, RunConfig, RunInputError, SamplingConfig
from pmc_core.jobs import JobError
from pmc_core.methods import METHODS

GROUPS = {"method": MethodConfig, "sampling": SamplingConfig, "optim": OptimConfig, None: RunConfig}
GROUP_FIELDS = ("model", "method", "sampling", "optim")  # RunConfig fields that are groups, not form fields
# The main form, in display order; every other method/sampling/optim field goes under "More settings".
MAIN_FIELDS = [
    ("method", "name"), ("sampling", "num_samples"), ("sampling", "temperature"), ("sampling", "top_p"),
    ("method", "retain_weight"), ("method", "min_len"), ("method", "tau"), ("optim", "learning_rate"),
    ("method", "finetune"), ("method", "lora_rank"), (None, "iterations"), (None, "eval_every"), (None, "seed"),
]
LABELS = {
    "name": "Method", "num_samples": "n samples per question", "temperature": "Temperature T", "top_p": "top_p",
    "retain_weight": "λ retain weight", "min_len": "min_len (words, 0 = off)", "tau": "τ (0 = argmin)",
    "learning_rate": "Learning rate", "finetune": "Fine-tune", "lora_rank": "LoRA rank",
    "iterations": "Iterations (planned)", "eval_every": "Greedy evaluation every", "seed": "Seed",
}
HELP = {
    "num_samples": "Answers sampled per forget question and iteration: the main cost of PMC.",
    "retain_weight": "Weight of the retain loss next to the collapse loss.",
    "min_len": "Samples shorter than this many words get a penalty exp(−k), so empty answers stop winning.",
    "tau": "0 keeps the lowest-scoring sample; >0 draws one with probability softmax((1 − s)/τ).",
    "finetune": "LoRA adapters on all linear layers, or every weight.",
    "iterations": "The run finishes here; also the horizon of a linear learning-rate schedule.",
    "eval_every": "Greedy answers and retain ROUGE every k iterations (and at the start and the end).",
}
POLL_SECONDS = 1.5
GENERATE_WAIT_SECONDS = 60  # longer generations show up on a later refresh


# ----- the settings form, built from the config dataclasses -----------------------------------------------------------
def field_default(cls: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def field_key(group: str | None, name: str) -> str:
    return f"keep.cfg.{group}.{name}" if group else f"keep.cfg.{name}"


def float_step(default: float) -> float:
    """A step one decimal below the default's magnitude. Example: 1e-3 -> 1e-4; 1.25 -> 0.1; 0 -> 0.05."""
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.05


def config_widget(group: str | None, name: str) -> None:
    cls = GROUPS[group]
    hint = typing.get_type_hints(cls)[name]
    key = field_key(group, name)
    keep_default(key, field_default(cls, name))
    label, help_text = LABELS.get(name, name.replace("_", " ").capitalize()), HELP.get(name)
    if (group, name) == ("method", "name"):
        st.selectbox(label, list(METHODS), key=key, persist_state="session",
                     help="; ".join(f"{n}: {m.description}" for n, m in METHODS.items()))
    elif typing.get_origin(hint) is Literal:
        st.selectbox(label, typing.get_args(hint), key=key, persist_state="session", help=help_text)
    elif hint is bool:
        st.checkbox(label, key=key, persist_state="session", help=help_text)
    elif hint is int:
        st.number_input(label, step=1, key=key, persist_state="session", help=help_text)
    elif hint is float:
        st.number_input(label, step=float_step(field_default(cls, name)), format="%g", key=key,
                        persist_state="session", help=help_text)


def settings_form() -> None:
    columns = st.columns(4)
    for position, (group, name) in enumerate(MAIN_FIELDS):
        with columns[position % 4]:
            config_widget(group, name)
    more = [(group, f.name) for group, cls in GROUPS.items() if group for f in dataclasses.fields(cls)
            if (group, f.name) not in MAIN_FIELDS]
    with st.expander("More settings"):
        columns = st.columns(4)
        for position, (group, name) in enumerate(more):
            with columns[position % 4]:
                config_widget(group, name)


def form_config() -> dict[str, Any]:
    """The form's values as a RunConfig dict (the model group comes from the Model page)."""
    data: dict[str, Any] = {"model": st.session_state.get("model_args") or {"source": default_model_source()}}
    for group, cls in GROUPS.items():
        values = {f.name: st.session_state.get(field_key(group, f.name), field_default(cls, f.name))
                  for f in dataclasses.fields(cls) if f.name not in GROUP_FIELDS}
        if group:
            data[group] = values
        else:
            data.update(values)
    return data


def fill_form(config: RunConfig) -> None:
    """Put a run's settings into the form (after Reset, to start again from them)."""
    data = config.to_dict()
    for group, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            if f.name in GROUP_FIELDS:
                continue
            st.session_state[field_key(group, f.name)] = data[group][f.name] if group else data[f.name]


# ----- one iteration's records ----------------------------------------------------------------------------------------
def highlight_picked(row: pd.Series) -> list[str]:
    return ["background-color: rgba(255, 127, 14, 0.25); font-weight: 600" if row["picked"] else ""] * len(row)


def generated_answers(shown, iteration: int) -> list[list[str]] | None:
    """Answers generated on request at `iteration` (waits briefly when the job is idle)."""
    if not shown.job or iteration not in st.session_state.get("generate_requests", {}).get(shown.job.job_id, []):
        return None
    future = shown.job.generate_at(iteration)
    if not future.done() and not shown.job.status().busy:
        with st.spinner(f"Generating at iteration {iteration}…"):
            futures.wait([future], timeout=GENERATE_WAIT_SECONDS)
    if not future.done():
        st.info("Generation is queued: it runs as soon as the current iteration ends.", icon=":material/hourglass_top:")
        return None
    if future.exception() is not None:
        st.error(f"Generation failed: {future.exception()}")
        return None
    return future.result()


def show_record(shown, record: dict[str, Any], first: dict[str, Any]) -> None:
    iteration = record["iteration"]
    metrics = st.columns(5)
    delta = record["forget_nll"] - first["forget_nll"] if iteration and record["forget_nll"] is not None else None
    # Short labels: five metrics share the row, and longer labels are cut off ("Forget NLL (original ans…").
    metrics[0].metric("Forget NLL", f"{record['forget_nll']:.3f}",
                      delta=f"{delta:+.3f}" if delta is not None and abs(delta) >= 5e-4 else None,
                      help="Mean NLL of the original answers: higher = more forgotten.")
    score = record["mean_picked_score"]
    metrics[1].metric("Mean target score", "—" if score is None else f"{score:.3f}", help="Lower = more forgotten.")
    metrics[2].metric("Retain NLL", "—" if record["retain_nll"] is None else f"{record['retain_nll']:.3f}")
    rouge = record["forget_rouge"]
    metrics[3].metric("Forget ROUGE-L", "—" if rouge is None else f"{rouge:.3f}",
                      help="ROUGE-L recall of the greedy answers against the original answers: lower = more "
                           "forgotten. Only on iterations with greedy evaluation.")
    losses = record.get("losses") or {}
    metrics[4].metric("Total loss", "—" if losses.get("total") is None else f"{losses['total']:.3f}")

    generate_column, note_column = st.columns([1, 3])
    if shown.job:
        if generate_column.button(f"Generate at iteration {iteration}", key="btn_generate",
                                  help="Greedy answers of the model as it was after this iteration."):
            requests = st.session_state.setdefault("generate_requests", {})
            requests.setdefault(shown.job.job_id, [])
            if iteration not in requests[shown.job.job_id]:
                requests[shown.job.job_id].append(iteration)
        if shown.job.status().busy:
            note_column.caption("While the run trains, a generation waits for the current iteration to end.")
    elif generate_column.button("Load the run's model to generate", key="btn_open_model"):
        if open_with_model(shown.folder):
            st.rerun(scope="app")
    generated = generated_answers(shown, iteration)

    for position, prompt in enumerate(record["prompts"]):
        with st.container(border=True, key=f"prompt_{position}"):
            badge = (" · :material/ac_unit: frozen (its target scores 0: no sampling, it trains on its cached answer)"
                     if prompt["frozen"] else "")
            st.markdown(f"**#{prompt['index'] + 1} {prompt['question']}**{badge}")
            original, now = st.columns(2)
            original.caption("Original answer (iteration 0, greedy)")
            original.text(prompt["original_answer"] or "(empty)")
            if generated is not None:
                now.caption(f"Generated at iteration {iteration} (greedy)")
                now.text(generated[position][0] or "(empty)")
            elif prompt["greedy_answer"] is not None:
                now.caption(f"Greedy answer at iteration {iteration}")
                now.text(prompt["greedy_answer"] or "(empty)")
            else:
                now.caption(f"No greedy evaluation at iteration {iteration}: generate it above.")
            if prompt["candidates"]:
                candidates = pd.DataFrame(prompt["candidates"]).rename(columns={"text": "sample"})
                candidates["picked"] = candidates.index == prompt["picked_index"]
                st.dataframe(candidates.style.apply(highlight_picked, axis=1).format({"score": "{:.3f}"}),
                             hide_index=True, width="stretch", key=f"candidates_{position}",
                             column_config={"sample": st.column_config.TextColumn("sample", width="large")})
            if prompt["target_text"] is not None:
                st.caption(f"Training target (cached, score {prompt['target_score']:.3f}): {prompt['target_text']!r}")

    if record["retain"]:
        with st.expander(f"Retain set at iteration {iteration}"):
            st.dataframe(pd.DataFrame(record["retain"]), hide_index=True, width="stretch", key="retain_records")


def live_view() -> None:
    shown = shown_run()
    if shown is None:
        return
    if shown.job:
        job = shown.job
        status = job.status()
        if st.session_state.get("collapse_seen") != [job.job_id, status.state, status.pending]:
            st.rerun(scope="app")  # the buttons depend on the state: redraw the whole page
        if status.target_iteration and status.iteration >= 0 and status.state in ("running", "paused"):
            st.progress(min(status.iteration / status.target_iteration, 1.0),
                        text=f"Iteration {status.iteration} / {status.target_iteration}")
        st.markdown(f"**Status:** {status_text(status)}")
        if status.eta_seconds is not None:
            st.caption(f"About {status.eta_seconds:.0f} s left · started {clock(status.started_at)} · "
                       f"updated {clock(status.updated_at)}")
        if status.error:
            st.error(status.error, icon=":material/error:")
            if job.error_details:
                with st.expander("Details"):
                    st.code(job.error_details)
    history = shown.history
    if not history:
        st.info("No iterations yet: press Step or Run N. The first iteration also records the original answers "
                "(iteration 0).", icon=":material/cyclone:")
        return
    summary = shown.summary
    if summary:
        before_after = st.columns(3)
        for column, (name, label) in zip(before_after, (("forget_rouge", "Forget ROUGE-L (greedy)"),
                                                         ("retain_rouge", "Retain ROUGE-L (greedy)"),
                                                         ("forget_nll", "Forget NLL"))):
            before, after = summary.get(f"{name}_before"), summary.get(f"{name}_after")
            if before is not None and after is not None:
                column.metric(f"{label}: before → after", f"{after:.3f}", delta=f"{after - before:+.3f}",
                              delta_color="off")
    iteration = choose_iteration(history)
    record = next(r for r in history if r["iteration"] == iteration)
    show_record(shown, record, history[0])


# ----- the page -------------------------------------------------------------------------------------------------------
st.title("Collapse")
manager = job_manager()
job = active_job()
shown = shown_run()
status = job.status() if job else None
st.session_state["collapse_seen"] = [job.job_id, status.state, status.pending] if job else None

if shown is None:
    st.markdown("Each iteration samples answers to every forget question, keeps the one least like the original, "
                "and trains on it with the retain loss. Press **Step** to watch one iteration at a time.")
elif shown.job and not shown.job.read_only:
    st.markdown(f"Live run **{shown.job.label}**, saving to `{shown.folder}`.")
else:
    st.markdown(f"Saved run `{shown.folder}` (read-only). **Reset** to start a new run from its settings.")

with st.expander("Settings", expanded=shown is None):
    if shown is None:
        settings_form()
    else:
        st.caption("The settings of this run (Reset to change them).")
        st.json(shown.config.to_dict(), expanded=1)

config = None
if shown is None:
    try:
        config = RunConfig.from_dict(form_config())
    except (ConfigError, TypeError) as error:
        st.error(f"Settings: {error}")
    forget, retain = forget_rows(), retain_rows()
    model_ready = bool(st.session_state.get("model_args"))
    st.caption(f"{len(forget)} forget prompts and {len(retain)} retain pairs · model: "
               f"{st.session_state['model_args']['source'] if model_ready else 'not loaded'}")
    if not model_ready:
        st.warning("Load a model first.", icon=":material/memory:")
        st.page_link(PAGE_MODEL, label="Load a model", icon=":material/memory:")
    if not forget:
        st.page_link(PAGE_FORGET, label="Choose what to forget", icon=":material/edit_note:")
    can_train = config is not None and model_ready and bool(forget)
else:
    can_train = bool(job) and not status.read_only and not status.terminal and not status.busy

keep_default("keep.run_n", field_default(RunConfig, "iterations"))
buttons = st.columns([1, 1, 1, 1, 1, 1, 1])
step = buttons[0].button("Step", key="btn_step", type="primary", disabled=not can_train, width="stretch",
                         help="Run one iteration.")
buttons[1].number_input("N", min_value=1, step=1, key="keep.run_n", persist_state="session",
                        label_visibility="collapsed",
                        help="Iterations per Run N (never beyond the planned iterations).")
run_n = buttons[2].button("Run N", key="btn_run", disabled=not can_train, width="stretch",
                          help="Run N iterations in the background; you may leave the page.")
pause = buttons[3].button("Pause", key="btn_pause", width="stretch",
                          disabled=not (status and status.state == "running" and status.pending is None),
                          help="Pause after the current iteration.")
resume = buttons[4].button("Resume", key="btn_resume", width="stretch",
                           disabled=not (status and status.state == "paused"))
stop = buttons[5].button("Stop", key="btn_stop", width="stretch",
                         disabled=not (status and not status.terminal and status.pending in (None, "pause")
                                       and not status.read_only),
                         help="Finish the current iteration, evaluate and write the summary.")
reset = buttons[6].button("Reset", key="btn_reset", width="stretch", disabled=shown is None,
                          help="Leave this run (its folder stays on disk) and start a new one from its settings.")

try:
    if step or run_n:
        if job is None:
            loaded = loaded_model()
            if loaded is None:
                raise JobError("no model: load one on the Model page")
            with st.spinner("Preparing the run (copying the model)…"):
                job = manager.create(loaded, to_items(forget), to_items(retain), config)
            st.session_state["job_id"] = job.job_id
            st.session_state["view_run"] = None
        job.run_iterations(1 if step else int(st.session_state["keep.run_n"]))
        st.rerun()
    if pause:
        job.pause()
        st.rerun()
    if resume:
        job.resume()
        st.rerun()
    if stop:
        job.stop()
        st.rerun()
except (JobError, RunInputError, ConfigError) as error:
    st.error(str(error))
if reset:
    fill_form(shown.config)
    if job is not None and not job.read_only:
        manager.discard(job.job_id)
    st.session_state["job_id"] = None
    st.session_state["view_run"] = None
    st.rerun()

if shown is not None:
    st.page_link(PAGE_DRIFT, label="See the drift charts", icon=":material/trending_up:")
elif manager.statuses():
    st.page_link(PAGE_RUNS, label="Other live jobs and saved runs", icon=":material/folder_open:")
st.fragment(live_view, run_every=POLL_SECONDS if status and status.busy else None)()
