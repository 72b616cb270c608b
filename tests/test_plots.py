"""Plot builders: known values from a hand-made history, empty states, and a smoke test on a real tiny-model run."""

import math

import plotly.graph_objects as go
import pytest

from pmc_core import plots, toy

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?"]
NLL = {0: [1.0, 2.0], 1: [1.5, 2.5], 2: [3.0, 2.75]}  # iteration -> original NLL per prompt
SCORES = {1: [0.5, 0.25], 2: [0.0, 0.25]}  # iteration -> cached target score per prompt


def _prompt(iteration: int, index: int, truth: bool) -> dict:
    score = SCORES.get(iteration, [None, None])[index]
    nll = NLL[iteration][index]
    return {
        "index": index, "question": QUESTIONS[index], "frozen": score == 0.0, "candidates": [],
        "picked_index": 0 if score is not None else None, "picked_text": None, "picked_score": score,
        "target_text": None, "target_score": score, "original_answer": "Paris", "original_nll": nll,
        "original_prob": math.exp(-nll), "truth_nll": nll + 1 if truth and index == 0 else None,
        "paraphrase_nll": None, "greedy_answer": "x" if iteration != 1 else None,
        "forget_rouge": 0.5 if iteration != 1 else None,
        "sample_mean_words": 4.0 if iteration else None, "sample_diversity": 0.8 if iteration else None,
    }


def make_history(truth: bool = False) -> list[dict]:
    """Three records (iterations 0-2) of two forget prompts; greedy evaluation at 0 and 2."""
    history = []
    for iteration in range(3):
        history.append({
            "iteration": iteration, "lr": 0.0 if iteration == 0 else 1e-5,
            "prompts": [_prompt(iteration, i, truth) for i in range(2)],
            "retain": [{"question": "Sky?", "answer": "Blue.", "nll": 0.5 + iteration, "greedy_answer": None,
                        "rouge": None}],
            "forget_nll": sum(NLL[iteration]) / 2, "forget_rouge": 0.5 if iteration != 1 else None,
            "mean_picked_score": sum(SCORES[iteration]) / 2 if iteration else None,
            "retain_nll": 0.5 + iteration, "retain_rouge": 0.9 - 0.1 * iteration if iteration != 1 else None,
            "sample_mean_words": 4.0 if iteration else None, "sample_diversity": 0.8 if iteration else None,
            "losses": None if iteration == 0 else {"collapse": 3.0 / iteration, "retain": 1.0,
                                                   "total": 3.0 / iteration + 1.5},
            "timings": ({"reference": 2.0, "evaluate": 1.0, "total": 3.5} if iteration == 0 else
                        {"sample": 4.0, "score": 0.5, "train": 2.0, "evaluate": 1.0, "total": 8.0}),
        })
    return history


HISTORY_BUILDERS = [plots.drift_figure, plots.picked_score_figure, plots.retain_figure, plots.loss_figure,
                    plots.samples_figure, plots.timing_figure]


def _annotations(fig: go.Figure) -> list[str]:
    return [annotation.text for annotation in fig.layout.annotations]


def _original_traces(fig: go.Figure) -> list:
    return [trace for trace in fig.data if trace.meta and trace.meta["series"] == "original_nll"]


def test_prompt_frame_has_one_row_per_iteration_and_prompt():
    frame = plots.prompt_frame(make_history())
    assert len(frame) == 6
    assert frame["label"].iloc[0] == "#1 What is the capita…"
    assert frame.loc[frame["iteration"] == 2, "original_nll"].tolist() == NLL[2]
    assert frame["truth_nll"].isna().all() and frame["truth_nll"].dtype == float
    assert frame.loc[(frame["iteration"] == 2) & (frame["index"] == 0), "frozen"].item()


def test_run_frame_flattens_losses_and_timings():
    frame = plots.run_frame(make_history())
    assert frame["iteration"].tolist() == [0, 1, 2]
    assert math.isnan(frame["loss_total"].iloc[0]) and frame["loss_total"].iloc[1] == 4.5
    assert frame["time_reference"].iloc[0] == 2.0 and math.isnan(frame["time_sample"].iloc[0])
    assert frame["retain_rouge"].isna().tolist() == [False, True, False]


def test_frames_of_an_empty_history_are_empty_with_columns():
    assert plots.prompt_frame([]).empty and "original_nll" in plots.prompt_frame([]).columns
    assert plots.run_frame([]).empty and "loss_total" in plots.run_frame([]).columns


def test_drift_figure_has_one_trace_per_prompt_with_its_values():
    fig = plots.drift_figure(make_history())
    assert len(fig.data) == 2
    for index, trace in enumerate(fig.data):
        assert list(trace.x) == [0, 1, 2]
        assert list(trace.y) == [NLL[i][index] for i in range(3)]
        hover = " ".join(str(c[0]) for c in trace.customdata).replace("<br>", " ")
        assert QUESTIONS[index] in hover
    assert "higher = more forgotten" in fig.layout.yaxis.title.text
    assert fig.layout.template.layout.paper_bgcolor is not None  # plotly_white applied


def test_drift_probability_is_exp_of_minus_nll():
    fig = plots.drift_figure(make_history(), metric="prob")
    for index, trace in enumerate(_original_traces(fig)):
        assert list(trace.y) == pytest.approx([math.exp(-NLL[i][index]) for i in range(3)])
    assert "lower = more forgotten" in fig.layout.yaxis.title.text


def test_drift_adds_ground_truth_dashed_in_the_prompts_colour():
    fig = plots.drift_figure(make_history(truth=True))
    assert len(_original_traces(fig)) == 2
    truth = [trace for trace in fig.data if trace.meta["series"] == "truth_nll"]
    assert len(truth) == 1 and truth[0].line.dash == "dash" and not truth[0].showlegend
    assert truth[0].line.color == _original_traces(fig)[0].line.color
    assert list(truth[0].y) == [NLL[i][0] + 1 for i in range(3)]
    assert "dashed: ground truth" in fig.layout.title.subtitle.text


def test_drift_marks_the_highlighted_iteration():
    fig = plots.drift_figure(make_history(), highlight_iteration=1)
    assert any(shape.x0 == 1 and shape.x1 == 1 for shape in fig.layout.shapes)
    assert "iteration 1" in " ".join(_annotations(fig))


def test_drift_rejects_an_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        plots.drift_figure(make_history(), metric="loss")


def test_token_figure_z_matches_input_and_tokens_are_readable():
    tokens = [" Paris", ".", " Paris", "\n"]
    logprobs = {"iteration 0": [-0.1, -1.0, -0.5, -2.0], "iteration 7": [-6.0, -2.0, -4.0, -3.0]}
    fig = plots.token_figure(tokens, logprobs)
    heatmap = fig.data[0]
    assert [list(row) for row in heatmap.z] == list(logprobs.values())
    assert list(heatmap.y) == ["iteration 0", "iteration 7"]
    # a repeated token keeps its own column
    assert list(fig.layout.xaxis.ticktext) == ["␣Paris", ".", "␣Paris", "↵"]
    assert "␣Paris" in heatmap.text[1][0] and heatmap.colorbar.title.text


def test_token_figure_rejects_mismatched_lengths_and_handles_no_tokens():
    with pytest.raises(ValueError, match="2 log-probabilities for 3 tokens"):
        plots.token_figure(["a", "b", "c"], {"iteration 0": [-1.0, -2.0]})
    assert "no tokens to show" in _annotations(plots.token_figure([], {}))


def test_picked_score_figure_has_prompts_and_a_thick_mean():
    fig = plots.picked_score_figure(make_history())
    assert len(fig.data) == 3
    for index, trace in enumerate(fig.data[:2]):
        assert list(trace.x) == [1, 2] and list(trace.y) == [SCORES[1][index], SCORES[2][index]]
    mean = fig.data[2]
    assert list(mean.y) == pytest.approx([0.375, 0.125]) and mean.line.width > fig.data[0].line.width
    assert tuple(fig.layout.yaxis.range) == (-0.03, 1.03)


def test_retain_figure_plots_rouge_only_where_evaluated():
    fig = plots.retain_figure(make_history())
    nll, rouge = fig.data
    assert list(nll.x) == [0, 1, 2] and list(nll.y) == [0.5, 1.5, 2.5]
    assert list(rouge.x) == [0, 2] and list(rouge.y) == pytest.approx([0.9, 0.7])
    assert rouge.xaxis != nll.xaxis  # second panel


def test_loss_figure_starts_at_iteration_one():
    fig = plots.loss_figure(make_history())
    assert [trace.name for trace in fig.data] == ["collapse loss", "retain loss", "total loss"]
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[2].y) == [4.5, 3.0]


def test_samples_figure_has_length_and_diversity_panels():
    fig = plots.samples_figure(make_history())
    words, diversity = fig.data
    assert list(words.y) == [4.0, 4.0] and list(diversity.y) == [0.8, 0.8]
    assert words.xaxis != diversity.xaxis


def test_timing_figure_stacks_phases_and_the_rest():
    fig = plots.timing_figure(make_history())
    assert fig.layout.barmode == "stack"
    by_phase = {trace.name: list(trace.y) for trace in fig.data}
    assert by_phase["sample"] == [0.0, 4.0, 4.0]
    assert by_phase["other"] == pytest.approx([0.5, 0.5, 0.5])  # total minus the named phases
    assert sum(values[1] for values in by_phase.values()) == pytest.approx(8.0)


@pytest.mark.parametrize("builder", HISTORY_BUILDERS)
def test_empty_history_gives_the_no_iterations_note(builder):
    fig = builder([])
    assert plots.EMPTY_TEXT in _annotations(fig)
    assert fig.layout.template is not None and fig.layout.height >= plots.HEIGHT


@pytest.mark.parametrize("builder", HISTORY_BUILDERS)
def test_iteration_zero_only_gives_the_no_iterations_note(builder):
    assert plots.EMPTY_TEXT in _annotations(builder(make_history()[:1]))


@pytest.mark.parametrize("records", [2, 3])
@pytest.mark.parametrize("builder", HISTORY_BUILDERS)
def test_trained_history_has_no_empty_note_and_a_legend_below(builder, records):
    fig = builder(make_history()[:records])
    assert plots.EMPTY_TEXT not in _annotations(fig)
    assert fig.layout.legend.orientation == "h" and fig.layout.title.text


def test_toy_figure_has_a_panel_per_scenario_and_dashes_forgotten_categories():
    frame = toy.compare_urns(num_categories=4, draws=10, generations=5, retained=2)
    fig = plots.toy_figure(frame)
    assert len(fig.data) == 8  # 4 categories x 2 scenarios
    assert {trace.xaxis for trace in fig.data} == {"x", "x2"}
    dashes = {trace.name: trace.line.dash for trace in fig.data}
    assert dashes["answer A (retained)"] == "solid" and dashes["answer D (to forget)"] == "dash"
    assert "no generations to show" in _annotations(plots.toy_figure(frame.iloc[0:0]))


def test_every_figure_builder_has_a_caption():
    builders = [name for name in dir(plots) if name.endswith("_figure")]
    assert len(builders) == 8
    assert {name.removesuffix("_figure") for name in builders} == set(plots.CAPTIONS)
    assert all(caption.strip() for caption in plots.CAPTIONS.values())


@pytest.fixture(scope="module")
def tiny_run():
    from pmc_core import PMCRun, PromptItem, RunConfig, SamplingConfig, load_model

    forget = [PromptItem("What is the capital of France?", "Paris", "Which city is France's capital?"),
              PromptItem("Who wrote Hamlet?")]
    run = PMCRun(load_model("tiny"), forget, [PromptItem("What color is the sky?", "Blue.")],
                 RunConfig(iterations=3, eval_every=2, sampling=SamplingConfig(num_samples=3, max_new_tokens=12)))
    run.start()
    for _ in range(3):
        run.step()
    return run


def test_every_figure_builds_from_a_real_tiny_run(tiny_run):
    history = tiny_run.history
    for builder in HISTORY_BUILDERS:
        fig = builder(history)
        assert isinstance(fig, go.Figure) and plots.EMPTY_TEXT not in _annotations(fig)
        fig.to_json()  # serialisable, as Streamlit needs
    plots.drift_figure(history, metric="prob", highlight_iteration=2).to_json()
    labels = {}
    for iteration in (0, 3):
        tokens, logprobs = tiny_run.token_logprobs_at(iteration, 0)
        labels[f"iteration {iteration}"] = logprobs
    plots.token_figure(tokens, labels).to_json()
    assert len(plots.prompt_frame(history)) == 8 and len(plots.run_frame(history)) == 4
