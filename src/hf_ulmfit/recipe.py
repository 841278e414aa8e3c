"""ULMFiT's recipe: the defaults of each stage, in one place, for the command line and the Python stages alike.

Howard & Ruder (2018), section 4, "Hyperparameters": a batch size of 64, Adam with beta1 = 0.7 and beta2 = 0.99,
a base learning rate of 0.004 for fine-tuning the LM and 0.01 for the classifier, STLR with cut_frac = 0.1 and
ratio = 32, discriminative rates divided by 2.6 per layer group, gradual unfreezing (one group per epoch), and the
AWD-LSTM dropouts of ``AWDLSTMConfig``'s presets. The paper tunes the number of epochs per task; the classifier's 6
here are the fewest that run the paper's stage 3 whole (gradual unfreezing opens five groups in five epochs, and
one more trains all of them). Pretraining (section 3.1) has no rate in the paper; 5e-3 with STLR is what stage 1
of the shipped LM used. Weight decay 0.01 is the usual AdamW setting (the paper does not state one).

Two measured departures for the classifier, on the shipped 300/512/3 LM (``scripts/reproduce_accuracy.py``,
README "Accuracy"): half the paper's dropouts (``dropout_multiplier`` 0.5) and every layer group trained from the
first step, no gradual unfreezing. Each beat the paper's choice on every task where both ran, and together they
beat the paper's stage 3 by 4.8 points on TREC-6 with all labels (the paper found unfreezing helps its larger
400/1152/3 model, section 5, Table 7). ``--gradual_unfreezing true`` brings unfreezing back; with
``--dropout_multiplier 1 --few_label_schedule false`` as well, stage 3 is the paper's.

With few labels the paper's batch of 64 and 6 epochs leave the classifier undertrained: 12 optimizer steps for 100
labelled examples. Since the paper tunes epochs per task anyway, the classifier's batch size and epochs follow the
size of the training set (``few_label_schedule``): up to 1,000 examples, smaller batches and more epochs. Giving
either yourself (or ``max_steps``) turns it off.

On a CPU with native bfloat16 (AVX512-BF16 or AMX), the LM stages train in bf16 autocast: that is faster with the
LM's perplexity within 2% of fp32's after the same tokens (``scripts/pretrain_study.py``; README, "Speed").
"""

from collections.abc import Collection

from .cpu import cpu_has_native_bf16
from .pretrained import DEFAULT_LANGUAGE_MODEL

PAPER_BATCH_SIZE = 64
_COMMON = {
    "per_device_train_batch_size": PAPER_BATCH_SIZE,
    "per_device_eval_batch_size": PAPER_BATCH_SIZE,
    "weight_decay": 0.01,
    "report_to": "none",
}
_STAGES = {
    "pretrain": {
        **_COMMON,
        "learning_rate": 5e-3,
        "num_train_epochs": 1,
        "discriminative_lr_factor": 1.0,  # one model trained from scratch: no layer knows more than another
        "variable_bptt": True,
    },
    "finetune-lm": {
        **_COMMON,
        "model_name_or_path": DEFAULT_LANGUAGE_MODEL,
        "learning_rate": 4e-3,
        "num_train_epochs": 3,
        "paper_adam_betas": True,
        "variable_bptt": True,
    },
    "train-classifier": {
        **_COMMON,
        "learning_rate": 1e-2,
        "num_train_epochs": 6,
        "paper_adam_betas": True,
        "dropout_multiplier": 0.5,  # half the paper's classifier dropouts (measured: see the docstring)
        "few_label_schedule": True,
        "eval_strategy": "epoch",
    },
}
# The values the few-label schedule sets: asking for any of them yourself means choosing the schedule yourself.
SCHEDULE_FIELDS = ("per_device_train_batch_size", "num_train_epochs", "max_steps")
# (at most this many training examples, the schedule): batch size and epochs.
FEW_LABEL_SCHEDULES = (
    (100, {"per_device_train_batch_size": 16, "num_train_epochs": 10}),
    (1000, {"per_device_train_batch_size": 32, "num_train_epochs": 8}),
)
STAGES = tuple(_STAGES)
LANGUAGE_MODEL_STAGES = ("pretrain", "finetune-lm")


def bf16_by_default() -> bool:
    """LM stages train in bf16 autocast on a CPU-only machine whose CPU has native bf16."""
    import torch

    return not torch.cuda.is_available() and cpu_has_native_bf16()


def stage_defaults(stage: str, given: Collection[str] = ()) -> dict:
    """The recipe's value of every argument a stage sets (fields of ``ModelArguments``, ``DataArguments`` and
    ``ULMFiTTrainingArguments``); what is not listed keeps its dataclass default (``gradual_unfreezing`` off).

    ``given``: the arguments the user sets; one of ``SCHEDULE_FIELDS`` among them turns the few-label schedule
    off."""
    if stage not in _STAGES:
        raise ValueError(f"Unknown stage {stage!r}; the stages are {list(STAGES)}.")
    defaults = dict(_STAGES[stage])
    if defaults.get("few_label_schedule") and set(given) & set(SCHEDULE_FIELDS):
        defaults["few_label_schedule"] = False
    if stage in LANGUAGE_MODEL_STAGES and bf16_by_default():
        defaults.update(bf16=True, use_cpu=True)
    return defaults


def few_label_schedule(num_examples: int) -> dict | None:
    """The classifier's batch size and epochs for a training set of ``num_examples`` (70 optimizer steps for 100
    examples, 256 for 1,000, against the paper's 12 and 96), or None above 1,000: the paper's schedule."""
    return next((dict(s) for limit, s in FEW_LABEL_SCHEDULES if num_examples <= limit), None)


__all__ = [
    "DEFAULT_LANGUAGE_MODEL",
    "FEW_LABEL_SCHEDULES",
    "LANGUAGE_MODEL_STAGES",
    "SCHEDULE_FIELDS",
    "STAGES",
    "bf16_by_default",
    "few_label_schedule",
    "stage_defaults",
]
