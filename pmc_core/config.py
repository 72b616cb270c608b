"""Run configuration: one dataclass per group, validated on construction, saved as JSON with every run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration field holds a value the run cannot use."""


def _check(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{field_name}: {message}")


@dataclass
class ModelConfig:
    source: str = "embedded"  # "embedded", "tiny" (random test model), a hub id, or a local folder
    adapter: str | None = None  # optional folder of an existing PEFT adapter to load on top
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    dtype: str = "auto"  # "auto": bf16 on CUDA, fp32 elsewhere; or "float32", "bfloat16", "float16"
    trust_remote_code: bool = False  # off unless the user asks: remote code runs on this machine

    def __post_init__(self) -> None:
        _check(bool(self.source and self.source.strip()), "model.source", "must name a model")
        _check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
               "model.device", f"unknown device {self.device!r} (auto, cpu, cuda, cuda:N, mps)")
        _check(self.dtype in ("auto", "float32", "bfloat16", "float16"),
               "model.dtype", f"unknown dtype {self.dtype!r} (auto, float32, bfloat16, float16)")


@dataclass
class MethodConfig:
    name: str = "pmc"  # key in pmc_core.methods.METHODS
    retain_weight: float = 1.0  # λ: weight of the retain loss next to the forget loss
    min_len: int = 0  # words below which a sample's reward is penalised; 0 turns the penalty off
    tau: float = 0.0  # 0 picks the argmin sample; >0 samples softmax((1 - s) / tau)
    finetune: Literal["lora", "full"] = "lora"  # LoRA on all linear layers, or every weight
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0

    def __post_init__(self) -> None:
        from pmc_core.methods import METHODS

        _check(self.name in METHODS, "method.name", f"unknown method {self.name!r} (known: {', '.join(METHODS)})")
        _check(math.isfinite(self.retain_weight) and self.retain_weight >= 0, "method.retain_weight",
               "must be a finite number ≥ 0")
        _check(self.min_len >= 0, "method.min_len", "must be ≥ 0")
        _check(math.isfinite(self.tau) and self.tau >= 0, "method.tau", "must be a finite number ≥ 0")
        _check(self.finetune in ("lora", "full"), "method.finetune", "must be 'lora' or 'full'")
        _check(self.lora_rank >= 1, "method.lora_rank", "must be ≥ 1")
        _check(self.lora_alpha >= 1, "method.lora_alpha", "must be ≥ 1")
        _check(0 <= self.lora_dropout < 1, "method.lora_dropout", "must be in [0, 1)")


@dataclass
class SamplingConfig:
    num_samples: int = 5  # n: answers sampled per forget question and iteration
    temperature: float = 1.25
    top_p: float = 0.95
    max_new_tokens: int = 40  # cap on sampled and greedy answers

    def __post_init__(self) -> None:
        _check(self.num_samples >= 1, "sampling.num_samples", "must be ≥ 1")
        _check(math.isfinite(self.temperature) and self.temperature > 0, "sampling.temperature", "must be > 0")
        _check(0 < self.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "sampling.max_new_tokens", "must be ≥ 1")


@dataclass
class OptimConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_iterations: int = 1
    schedule: Literal["constant", "linear"] = "constant"  # after warm-up; "linear" decays to 0 at `iterations`
    steps_per_iteration: int = 1  # optimizer steps on the same targets per iteration
    retain_batch_size: int = 8  # retain pairs drawn per optimizer step
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _check(math.isfinite(self.learning_rate) and self.learning_rate > 0, "optim.learning_rate", "must be > 0")
        _check(self.weight_decay >= 0, "optim.weight_decay", "must be ≥ 0")
        _check(self.warmup_iterations >= 0, "optim.warmup_iterations", "must be ≥ 0")
        _check(self.schedule in ("constant", "linear"), "optim.schedule", "must be 'constant' or 'linear'")
        _check(self.steps_per_iteration >= 1, "optim.steps_per_iteration", "must be ≥ 1")
        _check(self.retain_batch_size >= 0, "optim.retain_batch_size", "must be ≥ 0")
        _check(self.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    iterations: int = 30  # planned iterations (the CLI runs this many; the schedule's horizon)
    seed: int = 0
    eval_every: int = 5  # greedy answers and retain ROUGE every k iterations (and at the start and end)

    def __post_init__(self) -> None:
        _check(self.iterations >= 1, "iterations", "must be ≥ 1")
        _check(self.eval_every >= 1, "eval_every", "must be ≥ 1")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", "must be a whole number ≥ 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build a config from a dict such as `to_dict()` wrote; unknown keys are an error, missing ones default."""
        groups = {"model": ModelConfig, "method": MethodConfig, "sampling": SamplingConfig, "optim": OptimConfig}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        _check(not unknown, "config", f"unknown field(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in groups:
                group_fields = {f.name for f in dataclasses.fields(groups[name])}
                bad = set(value) - group_fields
                _check(not bad, name, f"unknown field(s) {sorted(bad)}")
                kwargs[name] = groups[name](**value)
            else:
                kwargs[name] = value
        return cls(**kwargs)

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        payload = {"config": self.to_dict(), **(extra or {})}
        Path(path).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        try:
            payload = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from error
        return cls.from_dict(payload.get("config", payload))
