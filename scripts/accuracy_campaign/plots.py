"""The report's plots: accuracy against labels, accuracy against each stage's compute, and a classifier run's
learning rates."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .protocol import (
    COMPUTE_STUDY_METHODS,
    FEATURE_EXTRACTION_METHODS,
    PLOTTED_METHODS,
    corpus_of,
    labels_of,
    task_label,
)
from .tables import compute_study_runs


def labels_plot_name(corpus: str) -> str:
    return f"accuracy_vs_labels_{corpus}.png"


def compute_plot_name(task: str) -> str:
    return f"accuracy_vs_compute_{task}.png"


def pyplot():
    """matplotlib's pyplot on its file-only backend, imported when a plot is drawn (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_mean_and_spread(
    axes, runs: pd.DataFrame, column: str, label: str, x_unit: float = 1, **style
) -> None:
    """One line of ``runs``' mean test accuracy (%) by ``column`` (divided by ``x_unit``), with their standard
    deviation over seeds as error bars."""
    stats = runs.groupby(column)["accuracy"].agg(["mean", "std"]).fillna(0)
    axes.errorbar(
        stats.index / x_unit, 100 * stats["mean"], yerr=100 * stats["std"], capsize=3, label=label, **style
    )


def save_figure(figure, axes, path: Path, legend_outside: bool = False) -> None:
    """The plots' common finish: grid, one legend (in ``axes``) of every panel's lines, layout, and a PNG at
    ``path``. The legend goes beside the panels where there are several or ``legend_outside`` asks: inside, it
    would cover some lines."""
    axes.grid(alpha=0.3)
    lines = {}
    for panel in figure.axes:
        for line, label in zip(*panel.get_legend_handles_labels()):
            lines.setdefault(label, line)
    beside = legend_outside or len(figure.axes) > 1
    outside = {"loc": "upper left", "bbox_to_anchor": (1.02, 1)} if beside else {}
    axes.legend(lines.values(), lines.keys(), fontsize=8, **outside)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"Wrote {path}")


def plot_accuracy_by_labels(results: list[dict], corpus: str, path: Path) -> None:
    """Test accuracy against the number of labels (log scale), one line per method (mean, std as bars): where
    the feature-extraction and fine-tuning curves cross."""
    plt = pyplot()

    frame = pd.DataFrame([r for r in results if corpus_of(r["task"]) == corpus])
    if frame.empty:
        return
    frame["labels"] = frame["task"].map(labels_of)
    figure, axes = plt.subplots(figsize=(8, 4.2))
    present = set(frame["method"])
    for index, method in enumerate(method for method in PLOTTED_METHODS if method in present):
        # one look per method: the colour cycle's ten colours, then dashed lines and square markers
        style = {
            "color": f"C{index % 10}",
            "linestyle": "-" if index < 10 else "--",
            "marker": "o" if index < 10 else "s",
        }
        draw_mean_and_spread(axes, frame[frame["method"] == method], "labels", method, **style)
    axes.set_xscale("log")
    axes.set_xlabel("labelled training examples")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"{task_label(f'{corpus}-1').split(',')[0]}: accuracy against number of labels")
    save_figure(figure, axes, path, legend_outside=True)  # eleven methods' legend would cover their lines


def plot_accuracy_by_compute(results: list[dict], task: str, args: argparse.Namespace, path: Path) -> None:
    """ULMFiT on ``task``: test accuracy against the tokens stage 1 saw (the shipped LM's checkpoints, the main
    stage-2 budget) and, for IMDb, against the tokens stage 2 saw (the shipped LM, other stage-2 budgets; log
    scale). A panel is drawn where at least two budgets were run. The stage-1 panel's lines follow the shipped
    LM's run (random weights at 0, its mid-run checkpoints); a shorter stage 1 run to the end of its schedule is
    a star of its own."""
    plt = pyplot()

    runs = compute_study_runs(results, task)
    if runs.empty or "stage1_tokens" not in runs:
        return
    main_budget = args.imdb_lm_docs if corpus_of(task) == "imdb" else None
    main_stage2 = runs["stage2_docs"].isna() if main_budget is None else runs["stage2_docs"] == main_budget
    shorter_stage1 = (
        runs["stage1_finished"] & (runs["stage1_tokens"] > 0) & (runs["stage1_lm"] != args.stage1_lm)
    )
    corpus = {"imdb": "IMDb", "trec": "TREC-6"}[corpus_of(task)]
    panels = [
        (runs[main_stage2 & ~shorter_stage1], "stage1_tokens", "stage-1 tokens seen (Wikipedia)"),
        (runs[runs["stage1_lm"] == args.stage1_lm], "stage2_tokens", f"stage-2 tokens seen ({corpus})"),
    ]
    panels = [panel for panel in panels if panel[1] in panel[0] and panel[0][panel[1]].nunique() >= 2]
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (frame, column, what) in zip(axes[0], panels):
        for method, of_method in frame.groupby("method"):
            # one look per method in every panel: its colour by its place in COMPUTE_STUDY_METHODS
            dashed = method in FEATURE_EXTRACTION_METHODS
            style = {"color": f"C{COMPUTE_STUDY_METHODS.index(method)}", "linestyle": "--" if dashed else "-",
                     "marker": "s" if dashed else "o"}  # fmt: skip
            draw_mean_and_spread(ax, of_method, column, method, x_unit=1e6, **style)
        if column == "stage1_tokens":
            for method, of_method in runs[main_stage2 & shorter_stage1].groupby("method"):
                star = {"color": f"C{COMPUTE_STUDY_METHODS.index(method)}", "marker": "*", "markersize": 13,
                        "markerfacecolor": "none", "linestyle": "none"}  # fmt: skip
                label = f"{method}, shorter stage-1 runs, each to its end"
                draw_mean_and_spread(ax, of_method, column, label, x_unit=1e6, **star)
        ax.set_xlabel(f"{what}, millions" + (" (log scale)" if column == "stage2_tokens" else ""))
        if column == "stage2_tokens":  # each budget a multiple of another: equal steps for equal factors
            budgets = sorted(frame[column].unique() / 1e6)
            ax.set_xscale("log")
            ax.set_xticks(budgets, [f"{tokens:.1f}" for tokens in budgets])
            ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].set_title(f"{task_label(task)}: what each stage's compute buys", fontsize=9)
    save_figure(figure, axes[0][-1], path)


def plot_learning_rates(trainer_state: Path, path: Path) -> None:
    """Each layer group's learning rate over a classifier run: discriminative rates under STLR, drawn solid where
    the group trains and dotted while gradual unfreezing (if the run's training_args.json asked for it) keeps it
    frozen."""
    plt = pyplot()

    from hf_ulmfit.callbacks import num_trainable_groups

    logs = [
        entry
        for entry in json.loads(trainer_state.read_text())["log_history"]
        if "learning_rate/group_0" in entry
    ]
    num_groups = len([key for key in logs[0] if key.startswith("learning_rate/group_")])
    names = ["embedding", *(f"LSTM {i}" for i in range(num_groups - 2)), "head"]
    steps = np.array([entry["step"] for entry in logs])
    unfreezes = json.loads(trainer_state.with_name("training_args.json").read_text())["gradual_unfreezing"]
    trainable = np.array(
        [
            num_trainable_groups(entry["epoch"] - 1e-9, num_groups) if unfreezes else num_groups
            for entry in logs
        ]
    )
    figure, axes = plt.subplots(figsize=(7, 4))
    for group in reversed(range(num_groups)):
        rates = np.array([entry[f"learning_rate/group_{group}"] for entry in logs])
        trains = trainable >= num_groups - group
        line = axes.plot(steps, np.where(trains, rates, np.nan), label=names[group])[0]
        axes.plot(steps, np.where(trains, np.nan, rates), linestyle=":", color=line.get_color(), alpha=0.6)
    axes.set_yscale("log")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.set_title(
        "Classifier fine-tuning: discriminative STLR"
        + (" with gradual unfreezing (dotted: frozen)" if unfreezes else ", every group from the start")
    )
    axes.title.set_fontsize(9)
    save_figure(figure, axes, path)
