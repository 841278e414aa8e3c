"""ULMFiT's recipe: the defaults of each stage, in one place, for the command line and the Python stages alike.

Howard & Ruder (2018), section 4, "Hyperparameters": a batch size of 64, Adam with beta1 = 0.7 and beta2 = 0.99,
a base learning rate of 0.004 for fine-tuning the LM and 0.01 for the classifier, STLR with cut_frac = 0.1 and
ratio = 32, discriminative rates divided by 2.6 per layer group, gradual unfreezing (one group per epoch), and the
AWD-LSTM dropouts of ``AWDLSTMConfig``'s presets. The paper tunes the number of epochs per task; the defaults here
are the smallest that run the recipe whole (the classifier unfreezes its five groups in five epochs and trains one
more with all of them). Pretraining (section 3.1) has no rate in the paper; 5e-3 with STLR is what stage 1 of the
shipped LM used. Weight decay 0.01 is the usual AdamW setting (the paper does not state one).

On a CPU with native bfloat16 (AVX512-BF16 or AMX), the LM stages train in bf16 autocast: that is faster with the
LM's perplexity within 2% of fp32's after the same tokens (``scripts/pretrain_study.py``; README, "Speed").
"""

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
        "gradual_unfreezing": True,
        "eval_strategy": "epoch",
    },
}
STAGES = tuple(_STAGES)
LANGUAGE_MODEL_STAGES = ("pretrain", "finetune-lm")


def bf16_by_default() -> bool:
    """LM stages train in bf16 autocast on a CPU-only machine whose CPU has native bf16."""
    import torch

    return not torch.cuda.is_available() and cpu_has_native_bf16()


def stage_defaults(stage: str, freeze_encoder: bool = False) -> dict:
    """The recipe's value of every argument a stage sets (fields of ``ModelArguments``, ``DataArguments`` and
    ``ULMFiTTrainingArguments``); what is not listed keeps its dataclass default.

    ``freeze_encoder``: the defaults of a run that trains the classifier's head only, which leave gradual
    unfreezing out (there is nothing to unfreeze; a ``gradual_unfreezing`` asked for explicitly on top of them
    is an error of ``ULMFiTTrainingArguments``)."""
    if stage not in _STAGES:
        raise ValueError(f"Unknown stage {stage!r}; the stages are {list(STAGES)}.")
    defaults = dict(_STAGES[stage])
    if freeze_encoder and defaults.get("gradual_unfreezing"):
        defaults["gradual_unfreezing"] = False  # ULMFiTTrainer says so in its log when training starts
    if stage in LANGUAGE_MODEL_STAGES and bf16_by_default():
        defaults.update(bf16=True, use_cpu=True)
    return defaults


__all__ = [
    "DEFAULT_LANGUAGE_MODEL",
    "LANGUAGE_MODEL_STAGES",
    "STAGES",
    "bf16_by_default",
    "stage_defaults",
]
