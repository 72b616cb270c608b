"""Probing a model before unlearning: its greedy answers, how likely it finds the ground truth, and what it knows."""

from __future__ import annotations

import math
from typing import Any

from pmc_core.lm import answer_nll, generate_answers
from pmc_core.models import LoadedModel
from pmc_core.prompts import PromptItem
from pmc_core.rewards import rouge_l_recall

# The model "knows" a fact when its greedy answer recalls at least half of the ground truth's longest common
# subsequence: ROUGE-L recall, the paper's evaluation metric, so a probe and a run's evaluation agree.
KNOWS_THRESHOLD = 0.5


def knows_fact(answer: str | None, greedy_answer: str) -> bool | None:
    """ROUGE-L recall of the ground truth in the greedy answer ≥ KNOWS_THRESHOLD; None without a ground truth.

    Example: knows_fact("Paris", "The capital is Paris.") -> True
    """
    if not answer:
        return None
    return rouge_l_recall(answer, greedy_answer) >= KNOWS_THRESHOLD


def probe(loaded: LoadedModel, items: list[PromptItem], max_new_tokens: int = 40) -> list[dict[str, Any]]:
    """One plain row per prompt: greedy answer, per-token NLL and probability exp(-NLL) of the ground-truth answer,
    its ROUGE-L recall in the greedy answer, and whether the model knows the fact (None where no answer is given)."""
    if not items:
        return []
    questions = [item.question for item in items]
    greedy = [answers[0] for answers in generate_answers(loaded.model, loaded.tokenizer, questions, greedy=True,
                                                         max_new_tokens=max_new_tokens)]
    with_answer = [i for i, item in enumerate(items) if item.answer]
    nll = dict(zip(with_answer, answer_nll(loaded.model, loaded.tokenizer, [questions[i] for i in with_answer],
                                           [items[i].answer for i in with_answer])))
    rows = []
    for index, (item, answer) in enumerate(zip(items, greedy)):
        answer_nll_value = nll.get(index)
        rows.append({
            "question": item.question,
            "answer": item.answer,
            "greedy_answer": answer,
            "answer_nll": answer_nll_value,
            "answer_prob": math.exp(-answer_nll_value) if answer_nll_value is not None else None,
            "answer_recall": rouge_l_recall(item.answer, answer) if item.answer else None,
            "knows": knows_fact(item.answer, answer),
        })
    return rows
