"""The categorical warm-up: mass is conserved, retain data anchor their categories, few draws collapse faster."""

import time

import numpy as np
import pytest

from pmc_core import toy


def _last(frame):
    return frame[frame["generation"] == frame["generation"].max()]


def test_frame_shape_and_columns():
    frame = toy.simulate_urn(num_categories=3, generations=4, retained=1)
    assert list(frame.columns) == ["generation", "category", "probability", "retained", "scenario"]
    assert len(frame) == 3 * 5
    assert frame["category"].unique().tolist() == ["answer A", "answer B", "answer C"]
    assert frame.loc[frame["generation"] == 0, "probability"].tolist() == pytest.approx([1 / 3] * 3)
    assert frame.loc[frame["category"] == "answer A", "retained"].all()
    assert not frame.loc[frame["category"] != "answer A", "retained"].any()


def test_probabilities_sum_to_one_per_generation_and_scenario():
    frame = toy.compare_urns()
    sums = frame.groupby(["scenario", "generation"])["probability"].sum()
    assert np.allclose(sums, 1.0)
    assert set(frame["scenario"]) == {toy.SELF_TRAINING, toy.WITH_RETAIN}
    assert (frame["probability"] >= 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_retain_data_anchor_retained_categories_and_the_rest_vanish(seed):
    last = _last(toy.simulate_urn(generations=50, with_retain=True, seed=seed))
    assert (last.loc[last["retained"], "probability"] > 0).all()
    # every retained category keeps at least its share of the fixed retain data: weight / (1 + weight) / retained
    assert (last.loc[last["retained"], "probability"] >= 0.5 / 4 - 1e-12).all()
    assert (last.loc[~last["retained"], "probability"] == 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_self_training_alone_collapses_onto_few_categories(seed):
    frame = toy.simulate_urn(generations=200, with_retain=False, seed=seed)
    assert toy.surviving_categories(frame).item() <= 2
    assert _last(frame)["probability"].max() >= 0.5


def test_fewer_draws_collapse_faster():
    def mean_surviving(draws: int, with_retain: bool, generations: int) -> float:
        counts = []
        for seed in range(20):
            last = _last(toy.simulate_urn(draws=draws, generations=generations, with_retain=with_retain, seed=seed))
            counts.append(int(((last["probability"] > 0) & ~last["retained"]).sum()))
        return float(np.mean(counts))

    assert mean_surviving(5, False, 30) < mean_surviving(200, False, 30) - 1
    assert mean_surviving(5, True, 5) < mean_surviving(1000, True, 5)


def test_same_seed_same_result_and_compare_stacks_both():
    assert toy.simulate_urn(seed=3).equals(toy.simulate_urn(seed=3))
    both = toy.compare_urns(seed=3)
    assert both[both["scenario"] == toy.WITH_RETAIN].reset_index(drop=True).equals(toy.simulate_urn(seed=3))


def test_surviving_categories_counts_per_scenario():
    counts = toy.surviving_categories(toy.compare_urns())
    assert counts[toy.WITH_RETAIN] == 4 and 1 <= counts[toy.SELF_TRAINING] <= 8


@pytest.mark.parametrize("kwargs, message", [
    ({"num_categories": 1}, "num_categories"), ({"draws": 0}, "draws"), ({"generations": -1}, "generations"),
    ({"retained": 9}, "retained"), ({"retain_weight": -1.0}, "retain_weight"),
])
def test_invalid_settings_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        toy.simulate_urn(**kwargs)


def test_defaults_are_fast():
    toy.compare_urns()  # warm-up
    started = time.perf_counter()
    toy.simulate_urn()
    assert time.perf_counter() - started < 0.05
