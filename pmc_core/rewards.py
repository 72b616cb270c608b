"""The PMC reward: ROUGE-L recall of a sample against the original answer (lower = more forgotten)."""

from __future__ import annotations

import math
import random
from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(reference: str, candidate: str) -> float:
    """Share of the reference's longest common subsequence found in the candidate.

    Example: rouge_l_recall("Paris is the capital", "Paris is the capital") -> 1.0
    """
    return float(_scorer().score(reference, candidate)["rougeL"].recall)


def reward_score(reference: str, candidate: str, min_len: int = 0) -> float:
    """PMC score of one sample: ROUGE-L recall, plus exp(-k) for a sample of k < min_len words (capped at 1)."""
    score = rouge_l_recall(reference, candidate)
    if min_len > 0:
        words = len(candidate.split())
        if words < min_len:
            score = min(1.0, score + math.exp(-words))
    return score


def pick_index(scores: list[float], tau: float, rng: random.Random) -> int:
    """Which sample to keep: argmin for tau == 0, else a draw with probability softmax((1 - s) / tau)."""
    if not scores:
        raise ValueError("pick_index needs at least one score")
    if tau == 0:
        return min(range(len(scores)), key=scores.__getitem__)
    logits = [(1.0 - s) / tau for s in scores]
    top = max(logits)
    weights = [math.exp(logit - top) for logit in logits]
    return rng.choices(range(len(scores)), weights=weights, k=1)[0]


def distinct_bigram_ratio(texts: list[str]) -> float:
    """Diversity of samples: unique word bigrams over all bigrams (0 when there are none).

    Example: ["a b", "a b"] -> 0.5
    """
    bigrams = [tuple(words[i: i + 2]) for text in texts for words in [text.lower().split()] for i in range(len(words) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0
