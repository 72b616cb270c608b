"""Plot builders: pure functions from a run history (a list of plain records) or a DataFrame to a plotly Figure."""

from __future__ import annotations

import html
import math
import textwrap
from typing import Any, Literal

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

History = list[dict[str, Any]]

HEIGHT = 380
EMPTY_TEXT = "no iterations yet"
PALETTE = qualitative.D3
TIMING_PHASES = ("reference", "sample", "score", "train", "evaluate")
_PHASE_COLORS = dict(zip(TIMING_PHASES + ("other",), qualitative.Set2))

CAPTIONS: dict[str, str] = {
    "drift": "How likely the model still finds each forget question's original answer (solid), and the ground truth "
             "(dashed) and paraphrased question (dotted) where given: higher NLL / lower probability = more forgotten.",
    "token": "Log-probability of each token of the original answer, per iteration: darker = less likely = more "
             "forgotten; tokens that stay bright are what the model still knows.",
    "picked_score": "ROUGE-L recall of each question's cached training target against its original answer, and their "
                    "mean (thick): lower = more forgotten; 0 freezes a question.",
    "retain": "Retain set: mean NLL of the retain answers (lower = better) and greedy ROUGE-L recall on the iterations "
              "with greedy evaluation (higher = better); both should stay close to iteration 0.",
    "loss": "Training losses per iteration: collapse (cross-entropy on the model's own picked answers), retain, and "
            "total = collapse + λ·retain; lower = the model fits its targets.",
    "samples": "Sampled answers: mean length in words and distinct-bigram diversity; a fall towards empty or "
               "repetitive answers means the ROUGE reward is being gamed.",
    "timing": "Seconds per phase of each iteration (stacked); sampling grows with the samples per question.",
    "toy": "A categorical 'urn' refit on its own samples: alone it collapses onto few answers (left); with retain "
           "data the retained answers (solid) stay, the others (dashed) go to 0.",
}

_PROMPT_COLUMNS = ["iteration", "index", "question", "label", "original_nll", "original_prob", "truth_nll",
                   "paraphrase_nll", "picked_score", "target_score", "forget_rouge", "frozen", "sample_mean_words",
                   "sample_diversity"]
_PROMPT_FLOATS = ["original_nll", "original_prob", "truth_nll", "paraphrase_nll", "picked_score", "target_score",
                  "forget_rouge", "sample_mean_words", "sample_diversity"]
_RUN_FLOATS = ["lr", "forget_nll", "forget_rouge", "mean_picked_score", "retain_nll", "retain_rouge",
               "sample_mean_words", "sample_diversity"]
_LOSSES = ("collapse", "retain", "total")


# ----- tables -------------------------------------------------------------------------------------------------------
def prompt_label(index: int, question: str, width: int = 18) -> str:
    """Legend label. Example: 0, "What is the capital of France?" -> "#1 What is the capita…"."""
    question = " ".join(question.split())
    return f"#{index + 1} " + (question if len(question) <= width else question[:width].rstrip() + "…")


def prompt_frame(history: History) -> pd.DataFrame:
    """One row per (iteration, forget prompt); missing numbers are NaN."""
    rows = [
        {"iteration": record["iteration"], "index": prompt["index"], "question": prompt["question"],
         "label": prompt_label(prompt["index"], prompt["question"]), "frozen": bool(prompt.get("frozen", False)),
         **{name: prompt.get(name) for name in _PROMPT_FLOATS}}
        for record in history for prompt in record.get("prompts", [])
    ]
    frame = pd.DataFrame(rows, columns=_PROMPT_COLUMNS)
    return frame.astype({name: float for name in _PROMPT_FLOATS} | {"iteration": int, "index": int, "frozen": bool})


def run_frame(history: History) -> pd.DataFrame:
    """One row per iteration: the scalar metrics, losses as loss_<name> and timings as time_<phase> (seconds)."""
    timing_keys = list(TIMING_PHASES) + ["total"]
    for record in history:
        timing_keys += [key for key in (record.get("timings") or {}) if key not in timing_keys]
    rows = []
    for record in history:
        losses, timings = record.get("losses") or {}, record.get("timings") or {}
        rows.append({"iteration": record["iteration"], **{name: record.get(name) for name in _RUN_FLOATS},
                     **{f"loss_{name}": losses.get(name) for name in _LOSSES},
                     **{f"time_{key}": timings.get(key) for key in timing_keys}})
    columns = (["iteration"] + _RUN_FLOATS + [f"loss_{name}" for name in _LOSSES]
               + [f"time_{key}" for key in timing_keys])
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({name: float for name in columns[1:]} | {"iteration": int})


# ----- shared styling -----------------------------------------------------------------------------------------------
def _hover_question(question: str) -> str:
    """The full question, HTML-escaped and wrapped for a hover box."""
    return "<br>".join(textwrap.wrap(html.escape(" ".join(question.split())), 60)) or "(empty question)"


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _style(fig: go.Figure, title: str, x_title: str | None, y_title: str | None, legend_entries: int = 0,
           subtitle: str | None = None) -> go.Figure:
    """Common look: white template, title (and subtitle), horizontal legend below the plot, ~380 px high."""
    legend_rows = math.ceil(legend_entries / 4)
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "subtitle": {"text": subtitle or ""}, "x": 0.0, "xanchor": "left"},
        height=HEIGHT + 22 * max(0, legend_rows - 1),
        margin={"l": 70, "r": 20, "t": 70 if subtitle or fig.layout.annotations else 50, "b": 40},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "xanchor": "left",
                "traceorder": "normal"},
        showlegend=legend_entries > 0,
        hoverlabel={"align": "left"},
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def _empty(fig: go.Figure, text: str = EMPTY_TEXT) -> go.Figure:
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 16, "color": "gray"})
    return fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)


def _has_data(fig: go.Figure) -> bool:
    return any(trace.y is not None and len(trace.y) > 0 for trace in fig.data)


def _finish(fig: go.Figure, iterations: list[int]) -> go.Figure:
    """Whole-number iteration ticks; the empty-state note when nothing (or only iteration 0) can be drawn."""
    if not _has_data(fig):
        return _empty(fig)
    span = max(iterations) - min(iterations)
    if span <= 12:
        fig.update_xaxes(tick0=0, dtick=1)
    if span == 0:
        fig.update_xaxes(range=[min(iterations) - 0.5, min(iterations) + 1.5])
    else:  # every panel spans the run, also one whose series has a single point (e.g. one greedy evaluation)
        fig.update_xaxes(range=[min(iterations) - 0.3, max(iterations) + 0.3])
    if max(iterations) == 0:
        fig.add_annotation(text=EMPTY_TEXT, x=1, y=1, xref="paper", yref="paper", xanchor="right", yanchor="top",
                           showarrow=False, font={"color": "gray"})
    return fig.update_xaxes(tickformat="d")


def _mode(iterations: list[int]) -> str:
    """Markers help while points are few; past ~60 iterations they only clutter."""
    return "lines+markers" if len(set(iterations)) <= 60 else "lines"


# ----- run figures --------------------------------------------------------------------------------------------------
_DRIFT_SERIES = (("original_nll", "original answer", "solid"), ("truth_nll", "ground truth", "dash"),
                 ("paraphrase_nll", "original answer to the paraphrased question", "dot"))


def drift_figure(history: History, metric: Literal["nll", "prob"] = "nll",
                 highlight_iteration: int | None = None) -> go.Figure:
    """Per forget prompt: NLL (or probability exp(-NLL)) of the original answer vs iteration; truth and paraphrase
    dashed / dotted in the prompt's colour when given."""
    if metric not in ("nll", "prob"):
        raise ValueError(f"metric must be 'nll' or 'prob', got {metric!r}")
    frame = prompt_frame(history)
    iterations = frame["iteration"].tolist()
    fig = go.Figure()
    value_name = "NLL" if metric == "nll" else "p"
    for index, rows in frame.groupby("index", sort=True):
        question, label = rows["question"].iloc[0], rows["label"].iloc[0]
        for column, series, dash in _DRIFT_SERIES:
            present = rows.dropna(subset=[column])
            if present.empty:
                continue
            values = present[column] if metric == "nll" else (-present[column]).map(math.exp)
            fig.add_trace(go.Scatter(
                x=present["iteration"].tolist(), y=values.tolist(), mode=_mode(iterations), name=html.escape(label),
                legendgroup=f"prompt-{index}", showlegend=column == "original_nll",
                line={"color": _color(index), "dash": dash, "width": 2}, marker={"size": 5},
                customdata=[[_hover_question(question)]] * len(present), meta={"prompt": index, "series": column},
                hovertemplate=(f"%{{customdata[0]}}<br><i>{series}</i><br>iteration %{{x}}<br>"
                               f"{value_name} = %{{y:.4g}}<extra>{html.escape(label)}</extra>"),
            ))
    if metric == "nll":
        title, y_title = "Likelihood drift (NLL)", "NLL of original answer, nats/token<br>(higher = more forgotten)"
    else:
        title, y_title = "Likelihood drift (probability)", "p = exp(−NLL) per token<br>(lower = more forgotten)"
    styles = ["solid: original answer"]
    if frame["truth_nll"].notna().any():
        styles.append("dashed: ground truth")
    if frame["paraphrase_nll"].notna().any():
        styles.append("dotted: original answer to the paraphrased question")
    _style(fig, title, "iteration", y_title, legend_entries=frame["index"].nunique(),
           subtitle=" · ".join(styles) if len(styles) > 1 else None)
    if metric == "prob":
        fig.update_yaxes(rangemode="tozero")
    if highlight_iteration is not None and _has_data(fig):
        fig.add_vline(x=highlight_iteration, line={"color": "gray", "dash": "dot", "width": 1.5})
        fig.add_annotation(x=highlight_iteration, y=1, yref="paper", xanchor="left", yanchor="top", showarrow=False,
                           text=f" iteration {highlight_iteration}", font={"color": "gray"},
                           bgcolor="rgba(255,255,255,0.7)")
    return _finish(fig, iterations)


def readable_token(token: str) -> str:
    """A token made visible on an axis. Example: " Paris\\n" -> "␣Paris↵"."""
    shown = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "")
    return shown or "∅"


def token_figure(tokens: list[str], logprobs_by_label: dict[str, list[float]]) -> go.Figure:
    """Heatmap of per-token log-probabilities: rows = labels (e.g. "iteration 0"), columns = answer tokens."""
    for label, values in logprobs_by_label.items():
        if len(values) != len(tokens):
            raise ValueError(f"{label!r} has {len(values)} log-probabilities for {len(tokens)} tokens")
    fig = go.Figure()
    _style(fig, "Per-token log-probability of the original answer", "answer token", None)
    if not tokens or not logprobs_by_label:
        return _empty(fig, "no tokens to show")
    labels = list(logprobs_by_label)
    z = [[v if math.isfinite(v) else None for v in logprobs_by_label[label]] for label in labels]  # (labels, tokens)
    lowest = min([v for row in z for v in row if v is not None], default=-1.0)
    shown = [readable_token(token) for token in tokens]
    text = [[f"#{i + 1} '{html.escape(token)}'" + ("" if v is None else f" (p = {math.exp(v):.3g})")
             for i, (token, v) in enumerate(zip(shown, row))] for row in z]
    fig.add_trace(go.Heatmap(
        x=list(range(len(tokens))), y=labels, z=z, text=text, colorscale="Viridis", zmin=min(lowest, -1.0), zmax=0.0,
        colorbar={"title": {"text": "log p<br>(token)"}, "thickness": 14},
        hovertemplate="%{y}<br>token %{text}<br>log p = %{z:.3f}<extra></extra>", xgap=1, ygap=2,
        texttemplate="%{z:.1f}" if len(tokens) <= 16 else None,
    ))
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(tokens))),
                     ticktext=[html.escape(t if len(t) <= 12 else t[:11] + "…") for t in shown],
                     tickangle=0 if len(tokens) <= 8 else -50, showgrid=False)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return fig.update_layout(height=max(HEIGHT - 100, 140 + 45 * len(labels)), margin={"b": 80})


def picked_score_figure(history: History) -> go.Figure:
    """Cached target score per prompt vs iteration, with their mean as a thick line (lower = more forgotten)."""
    frame = prompt_frame(history).dropna(subset=["target_score"])
    iterations = frame["iteration"].tolist()
    fig = go.Figure()
    for index, rows in frame.groupby("index", sort=True):
        fig.add_trace(go.Scatter(
            x=rows["iteration"].tolist(), y=rows["target_score"].tolist(), mode=_mode(iterations),
            name=html.escape(rows["label"].iloc[0]), line={"color": _color(index), "width": 1.5}, marker={"size": 4},
            opacity=0.7,
            customdata=[[_hover_question(rows["question"].iloc[0]), "frozen" if frozen else "sampling"]
                        for frozen in rows["frozen"]],
            hovertemplate="%{customdata[0]}<br>iteration %{x}: score %{y:.3f} (%{customdata[1]})<extra></extra>",
        ))
    if not frame.empty:
        mean = frame.groupby("iteration")["target_score"].mean()
        fig.add_trace(go.Scatter(
            x=mean.index.tolist(), y=mean.tolist(), mode="lines", name="mean over prompts",
            line={"color": "rgba(0, 0, 0, 0.65)", "width": 4},
            hovertemplate="iteration %{x}: mean score %{y:.3f}<extra></extra>",
        ))
    _style(fig, "Picked (cached target) score", "iteration",
           "ROUGE-L recall vs original answer<br>(lower = more forgotten)", legend_entries=len(fig.data))
    fig.update_yaxes(range=[-0.03, 1.03])
    return _finish(fig, iterations)


def retain_figure(history: History) -> go.Figure:
    """Retain NLL (left panel) and greedy retain ROUGE-L recall where evaluated (right panel)."""
    frame = run_frame(history)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("retain NLL ↓", "greedy retain ROUGE-L ↑"))
    nll = frame.dropna(subset=["retain_nll"])
    rouge = frame.dropna(subset=["retain_rouge"])
    fig.add_trace(go.Scatter(x=nll["iteration"].tolist(), y=nll["retain_nll"].tolist(),
                             mode=_mode(nll["iteration"].tolist()),
                             name="retain NLL", line={"color": PALETTE[0]}, marker={"size": 5},
                             hovertemplate="iteration %{x}: NLL %{y:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=rouge["iteration"].tolist(), y=rouge["retain_rouge"].tolist(), mode="lines+markers",
                             name="retain ROUGE-L recall", line={"color": PALETTE[2], "dash": "dot"},
                             marker={"size": 9, "symbol": "diamond"},
                             hovertemplate="iteration %{x}: ROUGE-L %{y:.3f}<extra></extra>"), row=1, col=2)
    _style(fig, "Retained knowledge", "iteration", None)
    fig.update_yaxes(title_text="NLL, nats/token", row=1, col=1)
    fig.update_yaxes(title_text="ROUGE-L recall", range=[-0.03, 1.03], row=1, col=2)
    return _finish(fig, frame["iteration"].tolist())


def loss_figure(history: History) -> go.Figure:
    """Collapse, retain and total training loss vs iteration (iteration 1 on; iteration 0 has no training)."""
    frame = run_frame(history)
    frame = frame[frame["iteration"] >= 1]
    fig = go.Figure()
    styles = {"collapse": (PALETTE[3], "solid", 2), "retain": (PALETTE[0], "solid", 2), "total": ("black", "dash", 2.5)}
    for name, (color, dash, width) in styles.items():
        present = frame.dropna(subset=[f"loss_{name}"])
        if present.empty:
            continue
        fig.add_trace(go.Scatter(x=present["iteration"].tolist(), y=present[f"loss_{name}"].tolist(),
                                 mode=_mode(present["iteration"].tolist()), name=f"{name} loss", marker={"size": 4},
                                 line={"color": color, "dash": dash, "width": width},
                                 hovertemplate=f"iteration %{{x}}: {name} %{{y:.4g}}<extra></extra>"))
    _style(fig, "Training losses", "iteration", "cross-entropy, nats/token<br>(lower = targets fitted)",
           legend_entries=3)
    return _finish(fig, frame["iteration"].tolist())


def samples_figure(history: History) -> go.Figure:
    """Mean sample length in words (left) and distinct-bigram diversity (right) vs iteration."""
    frame = run_frame(history)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=("mean length (words)", "diversity (distinct bigrams)"))
    for col, (column, name, color) in enumerate((("sample_mean_words", "words per sample", PALETTE[4]),
                                                  ("sample_diversity", "distinct-bigram ratio", PALETTE[1])), start=1):
        present = frame.dropna(subset=[column])
        fig.add_trace(go.Scatter(x=present["iteration"].tolist(), y=present[column].tolist(),
                                 mode=_mode(present["iteration"].tolist()),
                                 name=name, line={"color": color}, marker={"size": 5},
                                 hovertemplate=f"iteration %{{x}}: {name} %{{y:.3g}}<extra></extra>"), row=1, col=col)
    _style(fig, "Sampled answers", "iteration", None)
    fig.update_yaxes(title_text="words", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="ratio (↑ more varied)", range=[-0.03, 1.03], row=1, col=2)
    return _finish(fig, frame["iteration"].tolist())


def timing_figure(history: History) -> go.Figure:
    """Stacked seconds per phase per iteration; "other" is the total not covered by the named phases."""
    frame = run_frame(history)
    phases = [p for p in TIMING_PHASES if f"time_{p}" in frame and frame[f"time_{p}"].notna().any()]
    extra = [c.removeprefix("time_") for c in frame.columns
             if c.startswith("time_") and c.removeprefix("time_") not in TIMING_PHASES + ("total",)]
    phases += [p for p in extra if frame[f"time_{p}"].notna().any()]
    seconds = frame[[f"time_{p}" for p in phases]].fillna(0.0)
    other = (frame["time_total"] - seconds.sum(axis=1)).clip(lower=0.0)
    fig = go.Figure()
    for phase, values in [(p, seconds[f"time_{p}"]) for p in phases] + [("other", other)]:
        if not (values.fillna(0.0) > 0).any():
            continue
        fig.add_trace(go.Bar(x=frame["iteration"].tolist(), y=values.fillna(0.0).tolist(), name=phase,
                             marker={"color": _PHASE_COLORS.get(phase, "lightgray")},
                             hovertemplate=f"iteration %{{x}}: {phase} %{{y:.2f}} s<extra></extra>"))
    _style(fig, "Time per iteration", "iteration", "seconds", legend_entries=len(fig.data))
    fig.update_layout(barmode="stack", bargap=0.2)
    return _finish(fig, frame["iteration"].tolist())


def toy_figure(frame: pd.DataFrame) -> go.Figure:
    """Small multiples of the urn toy (pmc_core.toy): one panel per scenario, probability of each category vs
    generation; retained categories solid, the others dashed."""
    scenarios = list(dict.fromkeys(frame["scenario"])) if not frame.empty else []
    fig = make_subplots(rows=1, cols=max(1, len(scenarios)), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=scenarios or None)
    categories = list(dict.fromkeys(frame["category"])) if not frame.empty else []
    for col, scenario in enumerate(scenarios, start=1):
        in_scenario = frame[frame["scenario"] == scenario]
        for position, category in enumerate(categories):
            rows = in_scenario[in_scenario["category"] == category].sort_values("generation")
            if rows.empty:
                continue
            retained = bool(rows["retained"].iloc[0])
            fig.add_trace(go.Scatter(
                x=rows["generation"].tolist(), y=rows["probability"].tolist(), mode="lines",
                name=f"{category} ({'retained' if retained else 'to forget'})", legendgroup=category,
                showlegend=col == 1, line={"color": _color(position), "dash": "solid" if retained else "dash",
                                           "width": 2.5 if retained else 1.8},
                hovertemplate=f"{html.escape(category)}<br>generation %{{x}}: p = %{{y:.3f}}<extra></extra>",
            ), row=1, col=col)
    _style(fig, "Categorical warm-up: refitting on own samples", "generation", None,
           legend_entries=len(categories))
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text="probability", row=1, col=1)
    if not _has_data(fig):
        return _empty(fig, "no generations to show")
    return fig
