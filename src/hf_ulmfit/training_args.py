"""Training arguments with the fine-tuning tricks of ULMFiT (Howard & Ruder 2018)."""

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

PAPER_ADAM_BETAS = (0.7, 0.99)


@dataclass
class ULMFiTTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus ULMFiT's discriminative rates, STLR, gradual unfreezing and variable BPTT.

    The learning-rate schedule: ``ulmfit_lr_scheduler="stlr"`` (the default) uses slanted triangular learning rates
    (section 3.2) and ignores ``lr_scheduler_type`` and ``warmup_steps``; ``"transformers"`` hands the choice back
    to ``lr_scheduler_type`` (``linear``, ``cosine``, ...) as in a plain ``Trainer``.

    ``variable_bptt`` and ``shuffle_documents`` are training arguments, not data arguments, because they change
    what each epoch of training sees (windows and order, redrawn per epoch from ``seed``), not which texts are read;
    the stages pass them to the ``LanguageModelStream`` they build.

    ``few_label_schedule`` lets the classifier stage choose its batch size and epochs from the size of the
    training set (``hf_ulmfit.recipe.few_label_schedule``) once the data is read.

    ``freeze_encoder`` trains a classifier's head only, on the features of the encoder it was loaded with (the
    feature-extraction alternative to fine-tuning); ``ULMFiTTrainer`` freezes the encoder and leaves it out of the
    optimizer. It excludes ``gradual_unfreezing``.

    The paper's Adam betas (0.7, 0.99) are one flag away: ``paper_adam_betas=True`` (``--paper_adam_betas``)
    overrides ``adam_beta1`` and ``adam_beta2``; or set those two directly.
    """

    discriminative_lr_factor: float = field(
        default=2.6,
        metadata={
            "help": "Discriminative fine-tuning (ULMFiT section 3.2): each layer group below the top one gets the "
            "rate of the group above divided by this factor. 1.0 turns it off."
        },
    )
    ulmfit_lr_scheduler: Literal["stlr", "transformers"] = field(
        default="stlr",
        metadata={
            "help": "'stlr': slanted triangular learning rates (ULMFiT section 3.2); 'transformers': use "
            "lr_scheduler_type and warmup_steps instead."
        },
    )
    stlr_cut_frac: float = field(
        default=0.1, metadata={"help": "STLR: fraction of the steps during which the rate increases."}
    )
    stlr_ratio: float = field(
        default=32.0, metadata={"help": "STLR: how much smaller the lowest rate is than the maximum rate."}
    )
    gradual_unfreezing: bool = field(
        default=False,
        metadata={
            "help": "Gradual unfreezing (ULMFiT section 3.3): train only the top layer group at first and unfreeze "
            "one more group every unfreeze_every_n_epochs epochs. Meant for the classifier stage; off in the "
            "recipe, where training every group from the start measured better on the shipped LM."
        },
    )
    unfreeze_every_n_epochs: int = field(
        default=1, metadata={"help": "Gradual unfreezing: epochs between two unfreezing steps."}
    )
    freeze_encoder: bool = field(
        default=False,
        metadata={
            "help": "Classifier stage: train the head only (feature extraction). The encoder (embedding and "
            "LSTMs) stays bit-identical to the one loaded: it is left out of the optimizer, so not even weight "
            "decay moves it; its dropouts stay on while the head trains (they regularise the head), and the "
            "head's BatchNorm statistics still update. Gradual unfreezing does not apply: asking for both is an "
            "error."
        },
    )
    few_label_schedule: bool = field(
        default=False,
        metadata={
            "help": "Classifier stage: with at most 1,000 training examples, replace the batch size and epochs "
            "by the recipe's few-label schedule (batch 16, 10 epochs up to 100 examples; batch 32, 8 epochs up "
            "to 1,000): 70 steps for 100 examples where the paper's batch 64 and 6 epochs give 12. On in "
            "train-classifier's recipe unless --per_device_train_batch_size, --num_train_epochs or --max_steps "
            "is given."
        },
    )
    variable_bptt: bool = field(
        default=True,
        metadata={
            "help": "LM stages: vary the BPTT window length as in the AWD-LSTM (bptt with p=0.95, else bptt/2, "
            "then normal with std 5), redrawn every epoch."
        },
    )
    scale_lr_with_window: bool = field(
        default=True,
        metadata={
            "help": "LM stages with variable_bptt: each update's learning rates are multiplied by the window length "
            "over bptt (AWD-LSTM, Merity et al. 2018, section 4.1), so a short window does not weigh as much as a "
            "full one. The logged rates are the schedule's."
        },
    )
    shuffle_documents: bool = field(
        default=True,
        metadata={
            "help": "LM stages: put the training documents in a new order every epoch (seeded by seed and the "
            "epoch) before the stream is cut into rows."
        },
    )
    paper_adam_betas: bool = field(
        default=False,
        metadata={"help": "Use the paper's Adam betas (0.7, 0.99) instead of adam_beta1 / adam_beta2."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.paper_adam_betas:
            self.adam_beta1, self.adam_beta2 = PAPER_ADAM_BETAS
        self._validate_ulmfit_fields()

    def _validate_ulmfit_fields(self) -> None:
        if self.discriminative_lr_factor <= 0:
            raise ValueError(f"discriminative_lr_factor must be > 0, got {self.discriminative_lr_factor}.")
        if self.ulmfit_lr_scheduler not in ("stlr", "transformers"):
            raise ValueError(
                f"ulmfit_lr_scheduler must be 'stlr' or 'transformers', got {self.ulmfit_lr_scheduler!r}."
            )
        if not 0 < self.stlr_cut_frac < 1:
            raise ValueError(f"stlr_cut_frac must be in (0, 1), got {self.stlr_cut_frac}.")
        if self.stlr_ratio < 1:
            raise ValueError(f"stlr_ratio must be >= 1, got {self.stlr_ratio}.")
        if self.unfreeze_every_n_epochs < 1:
            raise ValueError(f"unfreeze_every_n_epochs must be >= 1, got {self.unfreeze_every_n_epochs}.")
        if self.freeze_encoder and self.gradual_unfreezing:
            raise ValueError(
                "freeze_encoder keeps the encoder frozen for the whole run, gradual_unfreezing unfreezes it group "
                "by group: ask for one of them."
            )


__all__ = ["PAPER_ADAM_BETAS", "ULMFiTTrainingArguments"]
