"""A stepping unlearning run: one call to `step()` runs one iteration and returns a plain record."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import threading
import time
from pathlib import Path
from statistics import fmean
from typing import Any, Iterator

import torch

from pmc_core.config import RunConfig
from pmc_core.lm import answer_nll, batch_loss, generate_answers, token_logprobs
from pmc_core.methods import METHODS, ForgetTargets, MethodContext
from pmc_core.models import LoadedModel
from pmc_core.prompts import PromptItem, build_batch
from pmc_core.rewards import distinct_bigram_ratio, rouge_l_recall
from pmc_core import storage

# Seeding and drawing from torch's global generator (LoRA init, sampling) must not interleave across runs in other
# threads (other browser tabs), or a seed would no longer fix a run.
_SAMPLING_LOCK = threading.Lock()


class RunInputError(ValueError):
    """The prompts or settings given to a run cannot be used; the message names the problem."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its history."""


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def _safe_exp(value: float | None) -> float | None:
    return math.exp(-value) if value is not None and math.isfinite(value) else None


def validate_prompt_sets(forget: list[PromptItem], retain: list[PromptItem], config: RunConfig) -> None:
    """Raise RunInputError for a forget or retain set the run cannot use."""
    if not forget:
        raise RunInputError("the forget set is empty: pick or upload at least one question to forget")
    for index, item in enumerate(retain):
        if not item.answer:
            raise RunInputError(f"retain item {index + 1} ({item.question[:60]!r}) has no answer: retain pairs need one")
    if config.method.retain_weight > 0 and not retain:
        raise RunInputError("the retain set is empty while retain_weight > 0: add retain pairs or set retain_weight to 0")


class PMCRun:
    """Owns a private copy of the model, its optimizer, the method's state, the history and the snapshots."""

    def __init__(self, base: LoadedModel, forget: list[PromptItem], retain: list[PromptItem], config: RunConfig,
                 out_dir: str | Path | None = None):
        validate_prompt_sets(forget, retain, config)
        self.config, self.forget, self.retain = config, list(forget), list(retain)
        self.tokenizer, self.device = base.tokenizer, base.device
        self.model_info = base.describe()
        self.out_dir = Path(out_dir) if out_dir else None
        with _SAMPLING_LOCK:  # LoRA's A matrices come from torch's global generator, which other runs seed too
            torch.manual_seed(config.seed)
            self.model = self._trainable_copy(base.model)
        self.trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.method = METHODS[config.method.name](config)
        self.history: list[dict[str, Any]] = []
        self.references: list[str] = []
        self.phase = "not started"  # read by other threads to show progress
        self.error: str | None = None
        self._memory_snapshots: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        self._lock = threading.RLock()

    # ----- set-up -------------------------------------------------------------------------------------------------
    def _trainable_copy(self, base_model):
        model = copy.deepcopy(base_model)
        for parameter in model.parameters():
            parameter.requires_grad_(self.config.method.finetune == "full")
        if self.config.method.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            method = self.config.method
            lora = LoraConfig(r=method.lora_rank, lora_alpha=method.lora_alpha, lora_dropout=method.lora_dropout,
                              target_modules="all-linear", task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
        model.eval()
        return model

    def _lr_factor(self, step: int) -> float:
        """Warm-up over the first iterations, then constant or linear decay to 0 at the planned iterations."""
        optim = self.config.optim
        steps_per = optim.steps_per_iteration
        warmup = optim.warmup_iterations * steps_per
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if optim.schedule == "linear":
            total = self.config.iterations * steps_per
            return max(0.0, (total - step) / max(1, total - warmup))
        return 1.0

    @classmethod
    def from_folder(cls, base: LoadedModel, folder: str | Path) -> "PMCRun":
        """Reopen a saved run on `base` (its model): history, original answers, and the last snapshot's weights and
        method state, so earlier iterations can be generated from. Nothing is written until the run is stepped."""
        saved = storage.load_run(folder)
        if not saved.history:
            raise RunInputError(f"{folder} holds no iterations yet: nothing to reopen")
        run = cls(base, saved.forget, saved.retain, saved.config, out_dir=folder)
        run.history = saved.history
        run.references = [prompt["original_answer"] for prompt in saved.history[0]["prompts"]]
        snapshots = run.snapshot_iterations()
        if snapshots:
            state, method_state = run._load_snapshot(snapshots[-1])
            run._apply_state(state)
            if method_state:
                run.method.load_state_dict(method_state)
        run.phase = "idle"
        return run

    @property
    def iteration(self) -> int:
        """The last finished iteration; -1 before `start()`."""
        return self.history[-1]["iteration"] if self.history else -1

    @property
    def started(self) -> bool:
        return bool(self.history)

    # ----- the loop -----------------------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Record the reference answers (the initial model's greedy answers) and iteration 0."""
        with self._lock:
            if self.started:
                return self.history[0]
            started = time.perf_counter()
            self.phase = "reference answers"
            self.references = [answers[0] for answers in self._greedy([item.question for item in self.forget])]
            if self.out_dir:
                storage.write_run_start(self.out_dir, self.config, self.forget, self.retain, self.model_info)
            prompt_records = [
                {"index": i, "question": item.question, "frozen": False, "candidates": [], "picked_index": None,
                 "picked_text": None, "picked_score": None, "target_text": None, "target_score": None}
                for i, item in enumerate(self.forget)
            ]
            timings = {"reference": time.perf_counter() - started}
            record = self._finish_record(0, prompt_records, None, timings, started)
            self.phase = "idle"
            return record

    def step(self) -> dict[str, Any]:
        """Run one iteration: sample and pick targets, train, evaluate; returns (and saves) its record."""
        with self._lock:
            if self.error:
                raise TrainingDivergedError(self.error)
            if not self.started:
                self.start()
            iteration = self.iteration + 1
            started = time.perf_counter()
            timings: dict[str, float] = {}
            self.phase = "sampling"
            context = MethodContext(self.model, self.tokenizer, self.forget, self.references, self.config, iteration,
                                    self._sampler(iteration), timings)
            targets = self.method.targets(context)
            self.phase = "training"
            train_started = time.perf_counter()
            losses = self._train(iteration, targets)
            timings["train"] = time.perf_counter() - train_started
            record = self._finish_record(iteration, targets.prompt_records, losses, timings, started)
            self.phase = "idle"
            return record

    def _sampler(self, iteration: int):
        sampling = self.config.sampling

        def sample(questions: list[str]) -> list[list[str]]:
            with _SAMPLING_LOCK:
                torch.manual_seed(self.config.seed * 100_003 + iteration)
                return generate_answers(self.model, self.tokenizer, questions, num_samples=sampling.num_samples,
                                        greedy=False, temperature=sampling.temperature, top_p=sampling.top_p,
                                        max_new_tokens=sampling.max_new_tokens)
        return sample

    def _retain_draw(self, iteration: int, step: int) -> list[PromptItem]:
        size = min(self.config.optim.retain_batch_size, len(self.retain))
        return random.Random(f"{self.config.seed}-retain-{iteration}-{step}").sample(self.retain, size)

    def _train(self, iteration: int, targets: ForgetTargets) -> dict[str, float]:
        """steps_per_iteration optimizer steps on collapse + λ·retain; stops the run on a non-finite loss."""
        weight = self.config.method.retain_weight
        sums = {"collapse": 0.0, "retain": 0.0, "total": 0.0}
        self.model.train()
        try:
            for step in range(self.config.optim.steps_per_iteration):
                collapse = self.method.forget_loss(self.model, self.tokenizer, targets)
                retain_items = self._retain_draw(iteration, step) if weight > 0 else []
                retain = (batch_loss(self.model, build_batch(self.tokenizer, [r.question for r in retain_items],
                                                             [r.answer for r in retain_items]))
                          if retain_items else torch.zeros((), device=collapse.device))
                total = collapse + weight * retain
                if not torch.isfinite(total):
                    self.error = (
                        f"iteration {iteration}: the loss is not finite (collapse={collapse.item():.4g}, "
                        f"retain={retain.item():.4g}); the run stopped and its history up to iteration "
                        f"{iteration - 1} is kept. Lower the learning rate or use float32."
                    )
                    self.optimizer.zero_grad(set_to_none=True)
                    self.phase = "failed"
                    raise TrainingDivergedError(self.error)
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), self.config.optim.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                for key, value in (("collapse", collapse), ("retain", retain), ("total", total)):
                    sums[key] += value.item()
        finally:
            self.model.eval()
        steps = self.config.optim.steps_per_iteration
        return {key: value / steps for key, value in sums.items()}

    def _greedy(self, questions: list[str]) -> list[list[str]]:
        return generate_answers(self.model, self.tokenizer, questions, greedy=True,
                                max_new_tokens=self.config.sampling.max_new_tokens)

    def _wants_greedy_eval(self, iteration: int) -> bool:
        return iteration == 0 or iteration % self.config.eval_every == 0 or iteration == self.config.iterations

    def _evaluate(self, iteration: int, prompt_records: list[dict[str, Any]], greedy: bool) -> dict[str, Any]:
        """Monitoring only, never in the gradient: likelihood drift, retain quality, greedy answers."""
        self.phase = "evaluating"
        questions = [item.question for item in self.forget]
        original_nll = answer_nll(self.model, self.tokenizer, questions, self.references)
        with_truth = [i for i, item in enumerate(self.forget) if item.answer]
        truth_nll = dict(zip(with_truth, answer_nll(self.model, self.tokenizer, [questions[i] for i in with_truth],
                                                     [self.forget[i].answer for i in with_truth])))
        with_para = [i for i, item in enumerate(self.forget) if item.paraphrase]
        paraphrase_nll = dict(zip(with_para, answer_nll(self.model, self.tokenizer,
                                                         [self.forget[i].paraphrase for i in with_para],
                                                         [self.references[i] for i in with_para])))
        forget_greedy = [a[0] for a in self._greedy(questions)] if greedy else [None] * len(questions)
        for i, record in enumerate(prompt_records):
            texts = [c["text"] for c in record["candidates"]]
            record.update(
                original_answer=self.references[i],
                original_nll=original_nll[i],
                original_prob=_safe_exp(original_nll[i]),
                truth_nll=truth_nll.get(i),
                paraphrase_nll=paraphrase_nll.get(i),
                greedy_answer=forget_greedy[i],
                forget_rouge=rouge_l_recall(self.references[i], forget_greedy[i]) if greedy else None,
                sample_mean_words=fmean(len(t.split()) for t in texts) if texts else None,
                sample_diversity=distinct_bigram_ratio(texts) if texts else None,
            )
        retain_records: list[dict[str, Any]] = []
        if self.retain:
            retain_q = [item.question for item in self.retain]
            retain_a = [item.answer for item in self.retain]
            retain_nll = answer_nll(self.model, self.tokenizer, retain_q, retain_a)
            retain_greedy = [a[0] for a in self._greedy(retain_q)] if greedy else [None] * len(retain_q)
            for q, a, nll, g in zip(retain_q, retain_a, retain_nll, retain_greedy):
                retain_records.append({"question": q, "answer": a, "nll": nll, "greedy_answer": g,
                                       "rouge": rouge_l_recall(a, g) if g is not None else None})
        return {
            "prompts": prompt_records,
            "retain": retain_records,
            "forget_nll": _mean(original_nll),
            "forget_rouge": _mean([r["forget_rouge"] for r in prompt_records]) if greedy else None,
            "mean_picked_score": _mean([r["target_score"] for r in prompt_records]),
            "retain_nll": _mean([r["nll"] for r in retain_records]),
            "retain_rouge": _mean([r["rouge"] for r in retain_records]) if greedy and retain_records else None,
            "sample_mean_words": _mean([r["sample_mean_words"] for r in prompt_records]),
            "sample_diversity": _mean([r["sample_diversity"] for r in prompt_records]),
        }

    def _finish_record(self, iteration: int, prompt_records, losses, timings, started) -> dict[str, Any]:
        eval_started = time.perf_counter()
        record: dict[str, Any] = {"iteration": iteration, "lr": self.scheduler.get_last_lr()[0] if iteration else 0.0}
        record.update(self._evaluate(iteration, prompt_records, self._wants_greedy_eval(iteration)))
        record["losses"] = losses
        timings["evaluate"] = time.perf_counter() - eval_started
        timings["total"] = time.perf_counter() - started
        record["timings"] = timings
        self.history.append(record)
        self._snapshot(iteration)
        if self.out_dir:
            storage.append_record(self.out_dir, record)
        return record

    # ----- snapshots and rewinding ----------------------------------------------------------------------------------
    def _snapshot_path(self, iteration: int) -> Path:
        return self.out_dir / "snapshots" / f"iter_{iteration:04d}.safetensors"

    def _snapshot(self, iteration: int) -> None:
        """Keep the trainable weights (LoRA adapters, or all weights) of this iteration: on disk, else in memory."""
        state = {name: p.detach().to("cpu", copy=True).contiguous() for name, p in self.trainable.items()}
        method_state = self.method.state_dict()
        if self.out_dir:
            from safetensors.torch import save_file

            save_file(state, str(self._snapshot_path(iteration)), metadata={"iteration": str(iteration)})
            self._snapshot_path(iteration).with_suffix(".json").write_text(json.dumps(method_state))
        else:
            self._memory_snapshots[iteration] = (state, method_state)

    def snapshot_iterations(self) -> list[int]:
        if self.out_dir:
            return storage.snapshot_iterations(self.out_dir)
        return sorted(self._memory_snapshots)

    def _load_snapshot(self, iteration: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if self.out_dir:
            from safetensors.torch import load_file

            path = self._snapshot_path(iteration)
            if not path.is_file():
                raise KeyError(f"no snapshot of iteration {iteration} in {path.parent}")
            return load_file(str(path)), json.loads(path.with_suffix(".json").read_text())
        if iteration not in self._memory_snapshots:
            raise KeyError(f"no snapshot of iteration {iteration} (have {self.snapshot_iterations()})")
        return self._memory_snapshots[iteration]

    def _apply_state(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, parameter in self.trainable.items():
                parameter.copy_(state[name].to(parameter.device))

    @contextlib.contextmanager
    def model_at(self, iteration: int) -> Iterator[Any]:
        """The run's model as it was after `iteration`, restored to the present on exit."""
        with self._lock:
            state, _ = self._load_snapshot(iteration)
            present = {name: p.detach().clone() for name, p in self.trainable.items()}
            self._apply_state(state)
            try:
                yield self.model
            finally:
                self._apply_state(present)

    def generate_at(self, iteration: int, questions: list[str], greedy: bool = True, num_samples: int = 1,
                    seed: int | None = None) -> list[list[str]]:
        """Answers from the model as it was after `iteration` (greedy, or seeded samples)."""
        sampling = self.config.sampling
        with self.model_at(iteration) as model:
            with _SAMPLING_LOCK:
                torch.manual_seed(self.config.seed if seed is None else seed)
                return generate_answers(model, self.tokenizer, questions, greedy=greedy, num_samples=num_samples,
                                        temperature=sampling.temperature, top_p=sampling.top_p,
                                        max_new_tokens=sampling.max_new_tokens)

    def token_logprobs_at(self, iteration: int, prompt_index: int) -> tuple[list[str], list[float]]:
        """Per-token log-probabilities of a forget prompt's original answer after `iteration`."""
        with self.model_at(iteration) as model:
            return token_logprobs(model, self.tokenizer, self.forget[prompt_index].question,
                                  self.references[prompt_index])

    def rewind(self, iteration: int) -> None:
        """Go back to `iteration` for good: weights, method state and history after it are dropped."""
        with self._lock:
            state, method_state = self._load_snapshot(iteration)
            self._apply_state(state)
            if method_state:
                self.method.load_state_dict(method_state)
            self.history = [r for r in self.history if r["iteration"] <= iteration]
            self.error = None
            for later in [i for i in self.snapshot_iterations() if i > iteration]:
                if self.out_dir:
                    self._snapshot_path(later).unlink(missing_ok=True)
                    self._snapshot_path(later).with_suffix(".json").unlink(missing_ok=True)
                else:
                    del self._memory_snapshots[later]
            if self.out_dir:
                storage.write_history(self.out_dir, self.history)

    # ----- results ------------------------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Make sure the last iteration has greedy answers, then write (and return) summary.json."""
        with self._lock:
            last = self.history[-1]
            if last["forget_rouge"] is None:
                self.phase = "final evaluation"
                last.update(self._evaluate(last["iteration"], last["prompts"], greedy=True))
                if self.out_dir:
                    storage.write_history(self.out_dir, self.history)
            summary = summarize(self.history)
            if self.out_dir:
                storage.write_json(self.out_dir / "summary.json", summary)
            self.phase = "finished"
            return summary


    def save_adapter(self, folder: str | Path) -> None:
        """Save the current LoRA adapter in PEFT format (loadable as the Model page's adapter)."""
        if self.config.method.finetune != "lora":
            raise RunInputError("save_adapter needs a LoRA run; a full fine-tune saves its weights in the snapshots")
        self.model.save_pretrained(str(folder), safe_serialization=True)


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Before/after figures of a run from its history (first record vs last greedy-evaluated record)."""
    first = history[0]
    evaluated = [r for r in history if r["forget_rouge"] is not None]
    last, last_eval = history[-1], evaluated[-1]
    steps = [r["timings"]["total"] for r in history[1:]]
    return {
        "iterations": last["iteration"],
        "forget_rouge_before": first["forget_rouge"],
        "forget_rouge_after": last_eval["forget_rouge"],
        "retain_rouge_before": first["retain_rouge"],
        "retain_rouge_after": last_eval["retain_rouge"],
        "forget_nll_before": first["forget_nll"],
        "forget_nll_after": last["forget_nll"],
        "retain_nll_before": first["retain_nll"],
        "retain_nll_after": last["retain_nll"],
        "mean_picked_score_after": last["mean_picked_score"],
        "evaluated_at_iteration": last_eval["iteration"],
        "seconds_per_iteration": fmean(steps) if steps else None,
    }
