"""Partial Model Collapse: train each forget question on the model's own sample least like its original answer."""

from __future__ import annotations

import random
import time
from typing import Any

from pmc_core.methods.base import ForgetTargets, MethodContext, UnlearningMethod
from pmc_core.rewards import pick_index, reward_score


class PartialModelCollapse(UnlearningMethod):
    name = "pmc"
    description = "Partial Model Collapse (arXiv 2507.04219): self-generated targets picked by lowest ROUGE-L recall"

    def __init__(self, config):
        super().__init__(config)
        self.cached_answers: list[str | None] = []
        self.cached_scores: list[float | None] = []

    def targets(self, context: MethodContext) -> ForgetTargets:
        count = len(context.forget)
        if not self.cached_scores:
            self.cached_answers, self.cached_scores = [None] * count, [None] * count
        # A cached score of exactly 0 freezes the question: nothing of the original answer is left to remove.
        active = [i for i in range(count) if self.cached_scores[i] != 0.0]
        started = time.perf_counter()
        samples = context.sample([context.forget[i].question for i in active])
        context.timings["sample"] = time.perf_counter() - started

        started = time.perf_counter()
        method = self.config.method
        rng = random.Random(f"{self.config.seed}-pick-{context.iteration}")
        records: list[dict[str, Any]] = []
        samples_of = dict(zip(active, samples, strict=True))
        for index, item in enumerate(context.forget):
            record: dict[str, Any] = {"index": index, "question": item.question, "frozen": index not in samples_of}
            if index in samples_of:
                candidates = samples_of[index]
                scores = [reward_score(context.references[index], text, method.min_len) for text in candidates]
                picked = pick_index(scores, method.tau, rng)
                cached = self.cached_scores[index]
                # The cache never gets worse: keep the new pick only if it scores no higher.
                if cached is None or scores[picked] <= cached:
                    self.cached_answers[index], self.cached_scores[index] = candidates[picked], scores[picked]
                record.update(
                    candidates=[{"text": text, "score": score} for text, score in zip(candidates, scores)],
                    picked_index=picked,
                    picked_text=candidates[picked],
                    picked_score=scores[picked],
                )
            else:
                record.update(candidates=[], picked_index=None, picked_text=None, picked_score=None)
            record.update(target_text=self.cached_answers[index], target_score=self.cached_scores[index])
            records.append(record)
        context.timings["score"] = time.perf_counter() - started
        questions = [item.question for item in context.forget]
        return ForgetTargets(questions, [answer or "" for answer in self.cached_answers], records)

    def state_dict(self) -> dict[str, Any]:
        return {"cached_answers": list(self.cached_answers), "cached_scores": list(self.cached_scores)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cached_answers = list(state["cached_answers"])
        self.cached_scores = list(state["cached_scores"])
