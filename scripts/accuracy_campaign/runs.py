"""Stages 2 and 3 through ``hf_ulmfit.stages``: the fine-tuned LMs (once per corpus, budget, direction and seed),
the classifiers of every method that trains one, ulmfit_tuned's selection and the bidirectional ensemble. Every run
resumes from its last checkpoint."""

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .draws import lm_corpus_file, task_files, validation_split
from .protocol import (
    ENSEMBLE_MEMBERS,
    IMDB_LM_TEXTS,
    LM_FINETUNE_DROPOUT_MULTIPLIER,
    LM_FINETUNE_LEARNING_RATE,
    METHOD_CHANGES,
    RECIPE,
    RUN_SETTINGS,
    corpus_of,
    lm_finetune_settings,
    stage3_grid,
)
from .records import read_results, selection_generation

logger = logging.getLogger("reproduce_accuracy")


@dataclass
class Campaign:
    """What every run of one ``run`` invocation shares: the stage-1 LM, the folders, the stage-2 budget."""

    pretrained_lm: str  # a directory, or a shipped model's name (awd-lstm-wiki-en)
    work_dir: Path
    data: Path
    imdb_lm_docs: int
    backward_lm: str = "awd-lstm-wiki-en-backward"  # the stage-1 LM of ulmfit_backward
    # the main runs' is 0; another repeats stage 2 to measure how far two stage-2 runs differ
    stage2_seed: int = 0

    @property
    def pretrained_dir(self) -> Path:
        from hf_ulmfit.pretrained import resolve_model_name

        return Path(resolve_model_name(self.pretrained_lm))

    def stage1_lm(self, backwards: bool = False) -> str:
        return self.backward_lm if backwards else self.pretrained_lm

    def lm_dir(self, corpus: str, backwards: bool = False) -> Path:
        budget = f"-{self.imdb_lm_docs}" if corpus == "imdb" else ""
        return (
            self.work_dir / f"lm-{corpus}{budget}{'-backward' if backwards else ''}{self.stage2_seed_suffix}"
        )

    @property
    def stage2_seed_suffix(self) -> str:
        return f"-seed{self.stage2_seed}" if self.stage2_seed else ""

    def stage3_name(self, task: str) -> str:
        """The task, and the stage-2 budget and seed where they are not the main ones: what names a task's
        stage-3 folders and held-out scores, so that runs from another stage 2 neither overwrite nor resume the
        main runs."""
        other_budget = corpus_of(task) == "imdb" and self.imdb_lm_docs != IMDB_LM_TEXTS
        name = f"{task}-lm{self.imdb_lm_docs}" if other_budget else task
        return name + self.stage2_seed_suffix


def resuming(output: Path) -> bool:
    """Whether an interrupted run left a complete checkpoint in ``output`` to continue from."""
    resume = any(output.glob("checkpoint-*/trainer_state.json"))
    if resume:
        logger.info("resuming from the last checkpoint in %s", output)
    return resume


def drop_checkpoints(output: Path) -> None:
    """Removes a finished run's checkpoints (the saved model is what stays)."""
    for checkpoint in output.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)


def finetune_lm(campaign: Campaign, corpus: str, backwards: bool = False) -> Path:
    """Stage 2 on the corpus's texts (once per corpus, budget, direction and seed); returns the fine-tuned LM's
    folder. An interrupted run resumes from its last checkpoint; the checkpoints go once the LM is saved."""
    from hf_ulmfit import stages

    output = campaign.lm_dir(corpus, backwards)
    if (output / "model.safetensors").exists():
        return output
    resume = resuming(output)
    started = time.time()
    results = stages.finetune_language_model(
        model_name_or_path=campaign.stage1_lm(backwards),
        dropout_multiplier=LM_FINETUNE_DROPOUT_MULTIPLIER,
        train_file=str(campaign.data / lm_corpus_file(corpus, campaign.imdb_lm_docs)),
        validation_split_percentage=5,
        output_dir=str(output),
        seed=campaign.stage2_seed,
        learning_rate=LM_FINETUNE_LEARNING_RATE,
        logging_steps=50,
        resume_from_checkpoint="true" if resume else None,
        **RUN_SETTINGS,
        **lm_finetune_settings(corpus, campaign.imdb_lm_docs),
    )
    drop_checkpoints(output)
    results["wall_seconds"] = time.time() - started
    results["resumed"] = resume
    (output / "stage2_summary.json").write_text(json.dumps(results, indent=2))
    logger.info(
        "stage 2 on %s%s: perplexity %.1f in %.0f s",
        corpus,
        " (backward)" if backwards else "",
        results["eval_perplexity"],
        results["wall_seconds"],
    )
    return output


def tokens_seen(lm_dir: Path) -> int | None:
    """Training tokens an LM's last run saw: the shipped LM's measurements, or, for a trainer's output folder or
    checkpoint, steps x batch x the mean window of variable BPTT, as scripts/package_pretrained_lm.py counts."""
    from hf_ulmfit.data import mean_window_length

    measured = lm_dir / "measurements.json"
    if measured.exists():
        return json.loads(measured.read_text())["training"]["tokens_seen"]
    state, config = lm_dir / "trainer_state.json", lm_dir / "config.json"
    if not (state.exists() and config.exists()):
        return None
    state = json.loads(state.read_text())
    bptt = json.loads(config.read_text())["bptt"]
    return round(state["global_step"] * state["train_batch_size"] * mean_window_length(bptt))


def schedule_finished(lm_dir: Path) -> bool:
    """Whether an LM's last run ended its learning-rate schedule: False for a checkpoint taken midway (STLR still
    near its peak), True for a finished run's model, the shipped LMs and random weights."""
    state = lm_dir / "trainer_state.json"
    if not state.exists():
        return True
    state = json.loads(state.read_text())
    return state["global_step"] >= state["max_steps"]


def random_lm(campaign: Campaign) -> Path:
    """The Wikipedia LM's architecture and tokenizer with fresh random weights: the from-scratch baseline, and,
    passed as ``--pretrained_lm``, the stage-1 compute study's point at zero tokens (the paper's "without
    pretraining", Table 4)."""
    import torch
    from transformers import AutoTokenizer

    from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM

    output = campaign.work_dir / "lm-random"
    if not (output / "model.safetensors").exists():
        torch.manual_seed(0)
        AWDLSTMForCausalLM(AWDLSTMConfig.from_pretrained(campaign.pretrained_dir)).save_pretrained(output)
        AutoTokenizer.from_pretrained(campaign.pretrained_dir).save_pretrained(output)
        (output / "measurements.json").write_text(json.dumps({"training": {"tokens_seen": 0}}))
    return output


def method_setup(method: str, campaign: Campaign, task: str) -> tuple[Path, dict]:
    """The LM a method starts from and how its stage 3 differs from the package's defaults."""
    if method == "scratch":
        return random_lm(campaign), METHOD_CHANGES[method]
    if method == "no_lm_finetune":
        return campaign.pretrained_dir, METHOD_CHANGES[method]
    lm = finetune_lm(campaign, corpus_of(task), backwards=method == "ulmfit_backward")
    if method == "ulmfit_tuned":
        return lm, select_stage3(task, campaign)
    return lm, METHOD_CHANGES[method]


def classifier_dir(campaign: Campaign, task: str, method: str, seed: int) -> Path:
    """Where a classifier's logs (and an ensemble member's weights) go; the generation in the name keeps the
    earlier generations' logs."""
    return campaign.work_dir / "classifiers" / f"{campaign.stage3_name(task)}-{method}-{RECIPE}-s{seed}"


def train_classifier(task: str, method: str, seed: int, campaign: Campaign) -> dict:
    """Stage 3 for one (task, method, seed); returns the test metrics. The ensemble's members keep their
    weights; the other classifiers keep only their logs."""
    start_from, changes = method_setup(method, campaign, task)
    train, test = task_files(campaign.data, task, seed)
    output = classifier_dir(campaign, task, method, seed)
    keep = method in ENSEMBLE_MEMBERS
    return fit_classifier(start_from, train, test, output, seed, changes, keep_weights=keep)


def bidirectional_ensemble(task: str, seed: int, campaign: Campaign) -> dict:
    """The paper's forward + backward ensemble (section 3.4) of one task and seed: the two members' classifiers
    (trained first where their weights are not kept), combined by ``hf_ulmfit.combine_bidirectional`` and scored
    on the test set through ``stages.predict``, as a user runs it. Returns its metrics and each member's."""
    from sklearn.metrics import accuracy_score, f1_score

    from hf_ulmfit import combine_bidirectional, stages

    members = {}
    for method in ENSEMBLE_MEMBERS:
        folder = classifier_dir(campaign, task, method, seed)
        if not (folder / "model.safetensors").exists():
            train_classifier(task, method, seed, campaign)
        members[method] = folder
    output = classifier_dir(campaign, task, "ulmfit_bidirectional", seed)
    combine_bidirectional(*(str(members[method]) for method in ENSEMBLE_MEMBERS), output)
    test = pd.read_parquet(task_files(campaign.data, task, seed)[1])
    truth = test["label"].astype(str).tolist()
    predicted = [p["label"] for p in stages.predict(str(output), test["text"].tolist())]
    member_accuracy = {
        f"{method}_accuracy": json.loads((folder / "eval_results.json").read_text())["eval_accuracy"]
        for method, folder in members.items()
    }
    (output / "model.safetensors").unlink(missing_ok=True)
    return {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro"),
        **member_accuracy,
    }


def fit_classifier(
    start_from: Path,
    train: Path,
    evaluation: Path,
    output: Path,
    seed: int,
    changes: dict,
    keep_weights: bool = False,
) -> dict:
    """Stage 3 with the package's defaults plus ``changes``; returns the metrics on ``evaluation`` (marked
    ``resumed`` when an interrupted run's checkpoint was continued: the record's seconds then count this part)."""
    from hf_ulmfit import stages

    resume = resuming(output)
    results = stages.train_classifier(
        model_name_or_path=str(start_from),
        train_file=str(train),
        validation_file=str(evaluation),
        output_dir=str(output),
        seed=seed,
        logging_steps=10,
        resume_from_checkpoint="true" if resume else None,
        **RUN_SETTINGS,
        **changes,
    )
    drop_checkpoints(output)
    if not keep_weights:
        _keep_only_logs(output)
    metrics = {"accuracy": results["eval_accuracy"], "macro_f1": results["eval_macro_f1"]}
    return {**metrics, "resumed": True} if resume else metrics


def select_stage3(task: str, campaign: Campaign) -> dict:
    """The ``stage3_grid`` setting with the best accuracy on labels held out of seed 0's training set
    (resumable: each setting's score is kept in WORK_DIR/selection/, a file per ``stage3_name``). The test set
    plays no part."""
    fit_file, validation_file = validation_split(campaign.data, task)
    start_from = finetune_lm(campaign, corpus_of(task))
    scores_file = campaign.work_dir / "selection" / f"{campaign.stage3_name(task)}.jsonl"
    scores_file.parent.mkdir(parents=True, exist_ok=True)
    grid = stage3_grid(task)
    scored = [r["setting"] for r in read_results(scores_file) if selection_generation(r) == RECIPE]
    for index, setting in enumerate(grid):
        if setting in scored:
            continue
        output = campaign.work_dir / "classifiers" / f"{campaign.stage3_name(task)}-select-{RECIPE}-{index}"
        metrics = fit_classifier(start_from, fit_file, validation_file, output, 0, setting)
        with scores_file.open("a") as f:
            f.write(json.dumps({"setting": setting, "stage3_schedule": RECIPE, **metrics}) + "\n")
        logger.info("%s selection: %s scores %.4f on held-out labels", task, setting, metrics["accuracy"])
    accuracy = {
        json.dumps(r["setting"], sort_keys=True): r["accuracy"]
        for r in read_results(scores_file)
        if selection_generation(r) == RECIPE
    }
    best = max(grid, key=lambda setting: accuracy[json.dumps(setting, sort_keys=True)])  # first of equals
    logger.info(
        "%s: stage 3 with %s (held-out accuracy %.4f)", task, best, accuracy[json.dumps(best, sort_keys=True)]
    )
    return best


def _keep_only_logs(output: Path) -> None:
    """Drops the weights of a finished classifier (dozens of runs); its logs and results stay."""
    (output / "model.safetensors").unlink(missing_ok=True)
