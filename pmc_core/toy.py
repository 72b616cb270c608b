"""The categorical warm-up of the PMC theory: an "urn" refit on its own samples collapses unless retain data anchor it.

Each generation draws `draws` answers from the current categorical distribution p and refits p by maximum likelihood
(the counts over their total). With retain data, the refit also sees a fixed retain set: `retain_weight * draws`
answers spread evenly over the first `retained` categories. The retain set is data, not model output, so it is not
redrawn: its exact expected counts are added each generation. Categories outside the retain set drift to 0 (once a
count is 0 it stays 0); retained ones keep at least retain_weight / (1 + retain_weight) of the mass between them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SELF_TRAINING = "self-training only"
WITH_RETAIN = "with retain data"


def category_labels(num_categories: int) -> list[str]:
    """Readable category names. Example: 3 -> ["answer A", "answer B", "answer C"]."""
    return [f"answer {chr(65 + i)}" if i < 26 else f"answer {i + 1}" for i in range(num_categories)]


def _validate(num_categories: int, draws: int, generations: int, retained: int, retain_weight: float) -> None:
    if num_categories < 2:
        raise ValueError(f"num_categories must be at least 2, got {num_categories}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if generations < 0:
        raise ValueError(f"generations must be 0 or more, got {generations}")
    if not 0 <= retained <= num_categories:
        raise ValueError(f"retained must be between 0 and num_categories ({num_categories}), got {retained}")
    if retain_weight < 0:
        raise ValueError(f"retain_weight must be 0 or more, got {retain_weight}")


def simulate_urn(num_categories: int = 8, draws: int = 20, generations: int = 50, retained: int = 4,
                 retain_weight: float = 1.0, with_retain: bool = True, seed: int = 0) -> pd.DataFrame:
    """Probabilities of each category per generation (0 = the uniform start) of one urn.

    Columns: generation, category, probability, retained (the category is in the retain set; flagged in both
    scenarios so they can be compared), scenario ("self-training only" or "with retain data").
    """
    _validate(num_categories, draws, generations, retained, retain_weight)
    rng = np.random.default_rng(seed)
    retain_counts = np.zeros(num_categories)
    if with_retain and retained > 0:
        retain_counts[:retained] = retain_weight * draws / retained
    probs = np.full(num_categories, 1.0 / num_categories)
    trajectory = np.empty((generations + 1, num_categories))  # (G+1, K)
    trajectory[0] = probs
    for generation in range(1, generations + 1):
        counts = rng.multinomial(draws, probs) + retain_counts
        probs = counts / counts.sum()
        trajectory[generation] = probs
    labels = category_labels(num_categories)
    return pd.DataFrame({
        "generation": np.repeat(np.arange(generations + 1), num_categories),
        "category": np.tile(labels, generations + 1),
        "probability": trajectory.ravel(),
        "retained": np.tile(np.arange(num_categories) < retained, generations + 1),
        "scenario": WITH_RETAIN if with_retain else SELF_TRAINING,
    })


def compare_urns(num_categories: int = 8, draws: int = 20, generations: int = 50, retained: int = 4,
                 retain_weight: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Both scenarios (self-training only, then with retain data) with the same settings and seed, stacked."""
    settings = dict(num_categories=num_categories, draws=draws, generations=generations, retained=retained,
                    retain_weight=retain_weight, seed=seed)
    return pd.concat([simulate_urn(with_retain=False, **settings), simulate_urn(with_retain=True, **settings)],
                     ignore_index=True)


def surviving_categories(frame: pd.DataFrame, generation: int | None = None) -> pd.Series:
    """Number of categories with probability > 0 per scenario at `generation` (default: the last one)."""
    at = frame["generation"].max() if generation is None else generation
    final = frame[frame["generation"] == at]
    return final.groupby("scenario", sort=False)["probability"].apply(lambda p: int((p > 0).sum()))
