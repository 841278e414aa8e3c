"""The results file: reading it, what a record is reported as (the stage 3 it trained, under today's names), and
what identifies a run."""

import json
from pathlib import Path

from .protocol import (
    METHOD_CHANGES,
    PAPER_STAGE3,
    RECIPE,
    RETIRED_METHOD_CHANGES,
    SCHEDULE_VARIANTS,
    WITHOUT_STAGE2,
    corpus_of,
    stage3_settings,
)


def stage3_generation(record: dict) -> str | None:
    """The generation of the recipe a record's stage 3 ran under (None: no stage 3 of ours). ulmfit_tuned, marked
    "tuned", ran under the few-label generation only."""
    generation = record.get("stage3_schedule")
    return "few-label" if generation == "tuned" else generation


def reported_method(record: dict) -> str:
    """A record's row in the tables and plots: its method where its stage 3 is the one the method trains now; else
    the current method that trains the same stage 3 (ulmfit of the few-label generation is gradual_unfreezing
    now); else the method with what differed ("no_discr (gradual unfreezing)")."""
    method, task, generation = record["method"], record["task"], stage3_generation(record)
    if generation is None:
        return method
    ran = stage3_settings(method, task, generation)
    if method not in RETIRED_METHOD_CHANGES and ran == stage3_settings(method, task):
        return method
    if method in (*SCHEDULE_VARIANTS, *RETIRED_METHOD_CHANGES):
        same = [variant for variant in SCHEDULE_VARIANTS if stage3_settings(variant, task) == ran]
        if same:
            return same[0]
        method = "ulmfit"
    return f"{method} ({settings_difference(ran, stage3_settings(method, task))})"


def settings_difference(ran: dict, now: dict) -> str:
    """What a record's stage 3 did otherwise than its method does now, in words."""
    if ran == PAPER_STAGE3:
        return "paper recipe"
    parts = []
    schedule = ("per_device_train_batch_size", "num_train_epochs")
    if any(ran.get(key) != now.get(key) for key in schedule):
        batch, epochs = (ran[key] for key in schedule)
        parts.append("paper schedule" if (batch, epochs) == (64, 6) else f"batch {batch}, {epochs:g} epochs")
    if ran.get("dropout_multiplier") != now.get("dropout_multiplier"):
        multiplier = ran["dropout_multiplier"]
        parts.append("paper dropouts" if multiplier == 1 else f"dropouts x{multiplier:g}")
    if ran["gradual_unfreezing"] != now["gradual_unfreezing"]:
        parts.append("gradual unfreezing" if ran["gradual_unfreezing"] else "every group from the start")
    return ", ".join(parts)


def selection_generation(record: dict) -> str:
    """The recipe generation a held-out score was trained under (the first selections, unmarked: few-label)."""
    return record.get("stage3_schedule", "few-label")


def new_record(task: str, method: str, seed: int, stage1: dict, imdb_lm_docs: int, stage2_seed: int) -> dict:
    """A run's record before it runs: what identifies it (``run_key``). A method that reads the stage-2 LM
    names the stage-2 budget (on IMDb) and a stage-2 seed other than the main runs' 0; a stage 3 of ours names
    the recipe generation it trains under."""
    uses_stage2 = method not in WITHOUT_STAGE2
    record = {"task": task, "method": method, "seed": seed, **stage1}
    record["stage2_docs"] = imdb_lm_docs if corpus_of(task) == "imdb" and uses_stage2 else None
    if uses_stage2 and stage2_seed:  # the main runs' records name no stage-2 seed
        record["stage2_seed"] = stage2_seed
    record["stage3_schedule"] = RECIPE if method in METHOD_CHANGES or method == "ulmfit_tuned" else None
    return record


def run_key(record: dict) -> tuple:
    """What identifies a run: the task, the stage 3 it trained (``reported_method``), the seed, the stage-1 LM
    and the stage-2 budget and seed. A run whose stage 3 an earlier one trained already, under another method's
    name, is not run again."""
    keys = ("task", "seed", "stage1_lm", "stage2_docs", "stage2_seed")
    return (reported_method(record), *(record.get(k) for k in keys))


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main_runs(results: list[dict], stage1_lm: str, stage2_docs: int) -> list[dict]:
    """The runs from the main stage-1 LM and the full stage-2 budget, seed 0 (the compute study's others left
    out)."""
    return [
        r
        for r in results
        if r.get("stage1_lm", stage1_lm) == stage1_lm
        and r.get("stage2_docs") in (None, stage2_docs)
        and not r.get("stage2_seed")
    ]
