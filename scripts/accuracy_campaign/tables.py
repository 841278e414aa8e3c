"""The report's tables: accuracy by method and task, the compute study, the stage-2 seed repeat, ulmfit_tuned's
held-out scores and SetFit's cost, as markdown."""

from pathlib import Path

import numpy as np
import pandas as pd

from .baselines import setfit_default_steps
from .draws import label_quota
from .protocol import (
    COMPUTE_STUDY_METHODS,
    DATA,
    LABEL_COUNTS,
    METHODS,
    RECIPE,
    TASKS,
    corpus_of,
    labels_of,
    task_label,
)
from .records import read_results, selection_generation


def seed_cells(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Accuracy (%) grouped ``by``, one row per group, its ``cell``: "mean ± standard deviation (seeds)"."""
    cells = frame.groupby(by)["accuracy"].agg(["mean", "std", "count"]).reset_index()
    cells["cell"] = [
        f"{m:.1f} ± {s:.1f} ({n})" if n > 1 else f"{m:.1f} (1)"
        for m, s, n in zip(cells["mean"], cells["std"], cells["count"])
    ]
    return cells


def summary_table(results: list[dict]) -> pd.DataFrame:
    """Test accuracy (%) per method and task: mean ± standard deviation over seeds, and the number of seeds."""
    frame = pd.DataFrame(results)
    frame["accuracy"] *= 100
    cells = seed_cells(frame, ["method", "task"])
    table = cells.pivot(index="method", columns="task", values="cell")
    order = sorted(table.index, key=lambda method: (METHODS.index(method.split(" ")[0]), method))
    return table.loc[order, [t for t in TASKS if t in table.columns]].fillna("")


def stage2_seed_table(results: list[dict]) -> pd.DataFrame:
    """Test accuracy (%) of the runs repeated from another stage 2 (``--stage2_seed``), beside the runs from the
    main stage 2 (seed 0) of the same stage-1 LM, budget, task and method: how far one stage 2 moves its
    classifiers. Empty where nothing was repeated."""

    def study(r: dict) -> tuple:
        return r["task"], r["method"], r.get("stage1_lm"), r.get("stage2_docs")

    repeated = {study(r) for r in results if r.get("stage2_seed")}
    frame = pd.DataFrame(
        [{**r, "stage2_seed": r.get("stage2_seed", 0)} for r in results if study(r) in repeated]
    )
    if frame.empty:
        return frame
    frame["accuracy"] *= 100
    frame["run"] = [
        f"{task}, {method}, from {lm}" for task, method, lm, _ in map(study, frame.to_dict("records"))
    ]
    cells = seed_cells(frame, ["run", "stage2_seed"])
    cells["stage2_seed"] = [f"stage-2 seed {seed}" for seed in cells["stage2_seed"]]
    return cells.pivot(index="run", columns="stage2_seed", values="cell").fillna("")


def compute_study_runs(results: list[dict], task: str) -> pd.DataFrame:
    """The compute study's runs on ``task`` from the main stage-2 seed; a record that does not say whether its
    stage 1 ended its schedule came from a finished LM (the mid-run checkpoints' records say so)."""
    return pd.DataFrame(
        [
            {"stage1_finished": True, **r}
            for r in results
            if r["task"] == task and r["method"] in COMPUTE_STUDY_METHODS and not r.get("stage2_seed")
        ]
    )


def compute_table(results: list[dict], task: str) -> pd.DataFrame:
    """Test accuracy (%) on ``task`` of the compute study's methods, one row per stage-1 LM and stage-2 budget
    run (the main stage-2 seed), by the tokens each stage saw and whether stage 1 ended its schedule or was a
    checkpoint taken midway: the numbers behind its plot. Empty where the task was run from one LM and budget
    only."""
    frame = compute_study_runs(results, task)
    lms = ["stage1_tokens", "stage1_finished", "stage2_tokens"]
    if not frame.empty and "stage2_tokens" in frame:
        frame = frame.dropna(subset=["stage2_tokens"])
    if frame.empty or len(frame.groupby(lms)) < 2:
        return pd.DataFrame()
    frame["accuracy"] *= 100
    cells = seed_cells(frame, [*lms, "method"])
    table = cells.pivot(index=lms, columns="method", values="cell").sort_index()
    table.index = [
        f"{stage1 / 1e6:.1f}M{'' if finished else ' (mid-run checkpoint)'}, {stage2 / 1e6:.1f}M"
        for stage1, finished, stage2 in table.index
    ]
    table.index.name = "tokens seen: stage 1, stage 2"
    return table[[m for m in COMPUTE_STUDY_METHODS if m in table.columns]].fillna("")


def selection_table(folder: Path) -> pd.DataFrame:
    """Held-out accuracy (%) of each stage-3 setting tried (rows) on each task (columns); a setting tried under
    an earlier generation of the recipe names it."""
    rows = {}
    for task in TASKS:
        for record in read_results(folder / f"{task}.jsonl"):
            name = ", ".join(
                f"{key} {value}" if isinstance(value, bool) else f"{key} {value:g}"
                for key, value in record["setting"].items()
            )
            if selection_generation(record) != RECIPE:
                name += f" ({selection_generation(record)} generation)"
            rows.setdefault(name, {})[task_label(task)] = f"{100 * record['accuracy']:.1f}"
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    table.index.name = "stage-3 setting"
    return table


def setfit_cost_table(results: list[dict]) -> pd.DataFrame:
    """Per task, the optimizer steps a seed of SetFit's default recipe takes, the minutes a seed took where it ran,
    and the hours a seed would take at the seconds per step of the largest task of its corpus run so far (the test
    set's prediction included), so that a row that ran estimates what it measured."""
    label_counts = {
        corpus: pd.read_parquet(DATA / corpus / "train.parquet", columns=["label"])["label"].value_counts()
        for corpus in LABEL_COUNTS
    }
    rows, seconds_per_step = {}, {}
    for task in TASKS:
        steps = setfit_default_steps(
            list(label_quota(label_counts[corpus_of(task)], labels_of(task)).values())
        )
        seconds = [r["seconds"] for r in results if r["method"] == "setfit" and r["task"] == task]
        if seconds:
            seconds_per_step[corpus_of(task)] = np.mean(seconds) / steps
        rate = seconds_per_step.get(corpus_of(task))
        rows[task_label(task)] = {
            "steps a seed": f"{steps:,}",
            "minutes a seed (run)": f"{np.mean(seconds) / 60:.0f}" if seconds else "",
            "hours a seed (estimated)": f"{steps * rate / 3600:,.1f}" if rate else "",
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "SetFit's default recipe"
    return table


def markdown_table(table: pd.DataFrame) -> str:
    header = [table.index.name or "", *table.columns]
    rows = [[str(index), *map(str, values)] for index, values in zip(table.index, table.values)]
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
