"""The campaign's protocol: its tasks and methods, the stage-3 settings each method trains with under each
generation of the package's recipe, and the stage-2 budget and settings."""

import functools
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
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


def lm_finetune_settings(corpus: str, imdb_lm_docs: int) -> dict:
    """Stage 2's batch and passes over the corpus."""
    if corpus == "trec":
        return LM_FINETUNE_SETTINGS[corpus]
    return {**LM_FINETUNE_SETTINGS[corpus], "num_train_epochs": imdb_stage2_budget(imdb_lm_docs)[1]}


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
