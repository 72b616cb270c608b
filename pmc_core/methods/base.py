"""The shape every unlearning method shares: choose forget targets for an iteration, then a forget loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from pmc_core.config import RunConfig
from pmc_core.lm import batch_loss
from pmc_core.prompts import PromptItem, build_batch


@dataclass
class MethodContext:
    """What a method may use in one iteration: the model as it is now and how to sample from it."""

    model: Any
    tokenizer: Any
    forget: list[PromptItem]
    references: list[str]  # the initial model's greedy answers: the reward reference
    config: RunConfig
    iteration: int
    sample: Callable[[list[str]], list[list[str]]]  # questions -> n sampled answers each (seeded by the run)
    timings: dict[str, float] = field(default_factory=dict)  # the method adds its phases' seconds here


@dataclass
class ForgetTargets:
    """A method's output for one iteration: pairs to train on and a plain record per forget prompt."""

    questions: list[str]
    answers: list[str]
    prompt_records: list[dict[str, Any]]


class UnlearningMethod:
    """Base class: subclasses override `targets` and, if their loss is not plain cross-entropy, `forget_loss`."""

    name = "base"
    description = ""

    def __init__(self, config: RunConfig):
        self.config = config

    def targets(self, context: MethodContext) -> ForgetTargets:
        raise NotImplementedError

    def forget_loss(self, model, tokenizer, targets: ForgetTargets) -> torch.Tensor:
        """Cross-entropy of the target answers given the forget questions (answer tokens only)."""
        return batch_loss(model, build_batch(tokenizer, targets.questions, targets.answers))

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready state to save with a snapshot (empty for stateless methods)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
