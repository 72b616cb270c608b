"""Model: choose a source, load it once (cached for every tab) and see what was loaded."""

from pathlib import Path

import streamlit as st

from pages.common import PAGE_FORGET, default_model_source, keep_default, load_model_args
from pmc_core import ConfigError, ModelLoadError

SOURCES = {
    "embedded": "Embedded SmolLM2-135M-Instruct (offline)",
    "hub": "Hugging Face hub id",
    "folder": "Local model folder",
    "tiny": "Tiny random model (instant; answers are gibberish)",
}
DEVICES = ["auto", "cpu", "cuda", "mps"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]


def source_kind(source: str) -> str:
    if source in ("embedded", "tiny"):
        return source
    return "folder" if Path(source).expanduser().is_dir() else "hub"


default_source = default_model_source()
default_kind = source_kind(default_source)
keep_default("keep.model.kind", default_kind)
keep_default("keep.model.hub", default_source if default_kind == "hub" else "")
keep_default("keep.model.folder", default_source if default_kind == "folder" else "")
keep_default("keep.model.adapter", "")
keep_default("keep.model.device", "auto")
keep_default("keep.model.dtype", "auto")
keep_default("keep.model.trust", False)

st.title("Model")
st.markdown("The model to unlearn from. It is loaded once and shared read-only: every run trains its own copy.")

settings, facts = st.columns([3, 2], gap="large")
with settings:
    kind = st.radio("Model source", list(SOURCES), format_func=SOURCES.get, key="keep.model.kind",
                    persist_state="session")
    if kind == "hub":
        st.text_input("Hub id", key="keep.model.hub", persist_state="session",
                      placeholder="HuggingFaceTB/SmolLM2-135M-Instruct",
                      help="Read from the local Hugging Face cache when this machine has no network.")
    elif kind == "folder":
        st.text_input("Model folder", key="keep.model.folder", persist_state="session", placeholder="/path/to/model",
                      help="A folder written by save_pretrained: config.json, tokenizer files, *.safetensors.")
    st.text_input("Adapter folder (optional)", key="keep.model.adapter", persist_state="session",
                  help="A saved PEFT (LoRA) adapter, merged into the model before any run.")
    device_column, dtype_column = st.columns(2)
    device_column.selectbox("Device", DEVICES, key="keep.model.device", persist_state="session",
                            help="auto: CUDA, then MPS, then CPU.")
    dtype_column.selectbox("Precision", DTYPES, key="keep.model.dtype", persist_state="session",
                           help="auto: bfloat16 on CUDA, float32 elsewhere.")
    trust = st.checkbox("Trust remote code", key="keep.model.trust", persist_state="session",
                        help="Runs Python code shipped with a hub model on this machine. Leave it off unless you "
                             "trust the model.")
    if trust:
        st.warning("Remote code from the model's repository will run on this machine.", icon=":material/warning:")

    source = {"hub": st.session_state["keep.model.hub"].strip(),
              "folder": st.session_state["keep.model.folder"].strip()}.get(kind, kind)
    args = {"source": source, "adapter": st.session_state["keep.model.adapter"].strip() or None,
            "device": st.session_state["keep.model.device"], "dtype": st.session_state["keep.model.dtype"],
            "trust_remote_code": trust}
    if st.button("Load model", key="btn_load_model", type="primary", disabled=not source):
        try:
            with st.spinner(f"Loading {source}… (the embedded model is rebuilt once, then cached)"):
                loaded = load_model_args(args)
        except (ConfigError, ModelLoadError) as error:
            st.error(str(error))
        except Exception as error:  # anything else the loaders raise: shown, and the loaded model is kept
            st.error(f"Loading {source} failed: {type(error).__name__}: {error}")
        else:
            st.session_state["model_args"] = args
            st.session_state["model_info"] = loaded.describe()
            st.rerun()  # the sidebar, drawn before this page, still says "not loaded"

with facts:
    info = st.session_state.get("model_info")
    if not st.session_state.get("model_args") or not info:
        st.info("No model loaded yet.", icon=":material/memory:")
    else:
        st.subheader(info["source"])
        st.caption(f"{info['architecture']} · {'chat template' if info['chat_template'] else 'Question/Answer tags'}")
        # Two to a row: three to a row cut values such as "bfloat16" or "134.52 M" off in this narrow column.
        weights_mb = info["weights_mb"]
        facts_grid = st.columns(2)
        for position, (label, value) in enumerate([
            ("Parameters", f"{info['parameters'] / 1e6:,.2f} M"),
            ("Weights", f"{weights_mb:,.0f} MB" if weights_mb >= 10 else f"{weights_mb:.1f} MB"),
            ("Device", info["device"]), ("Precision", info["dtype"]),
            ("Load time", f"{info['load_seconds']:.1f} s"),
        ]):
            facts_grid[position % 2].metric(label, value)
        if st.session_state["model_args"] != args:
            st.caption("The settings on the left differ from the loaded model: press Load model to switch.")
        st.page_link(PAGE_FORGET, label="Next: choose what to forget", icon=":material/edit_note:")
