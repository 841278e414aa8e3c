"""``Trainer`` with the fine-tuning methods of ULMFiT (Howard & Ruder 2018).

* Discriminative fine-tuning (section 3.2): one optimizer parameter group per layer group of the model, with
  rate ``learning_rate / discriminative_lr_factor ** depth`` (the top group has depth 0).
* Slanted triangular learning rates (section 3.2), scaling every group's own rate.
* Gradual unfreezing (section 3.3) through ``GradualUnfreezingCallback``: the optimizer holds every parameter,
  frozen or not, so groups unfrozen later do train.
* ``freeze_encoder`` (feature extraction): a classifier's head trains alone on the features of the encoder it
  was loaded with; the encoder's parameters are frozen and left out of the optimizer, so they stay bit-identical.
  The encoder stays in train mode, so its dropouts regularise the head as in gradual unfreezing's first epoch.
* Language-model stages: the recurrent state is carried, detached, from one batch of a ``LanguageModelStream``
  to the next (truncated BPTT, as the AWD-LSTM trains), reset at each epoch and evaluation, and stored in
  checkpoints so a resumed run continues with it. With variable BPTT, each update's rates are scaled by the
  window length over ``bptt`` (AWD-LSTM section 4.1). Evaluation of a language model reports perplexity.
* Several processes (``torchrun``, DDP through accelerate): each process carries the state of its own rows of
  the stream (and checkpoints it in a file of its own); every parameter is trainable when DDP wraps the model, so
  groups unfrozen later have their gradients averaged too; the buffers (BatchNorm statistics) of process 0 are
  copied to every process after training and before evaluation.
* Saving and the Hub: ``hf_ulmfit.saving.AtomicSavingMixin`` makes checkpoints and saved models appear whole or
  not at all (``resume_from_checkpoint=True`` takes the last complete checkpoint), with the carried LM state in
  each checkpoint; ``create_model_card`` (run by ``push_to_hub``) writes the ULMFiT model card of
  ``hf_ulmfit.cards`` instead of the Trainer's generic one.
"""

import math
import os
from typing import Any

import torch
from accelerate.utils import broadcast
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import (
    EvalLoopOutput,
)
from transformers.utils import logging

from .callbacks import GradualUnfreezingCallback, set_trainable_groups
from .cards import write_trainer_model_card
from .data import EpochSeededLengthGroupedSampler, LanguageModelStream
from .lr_finder import LRFinderResult, lr_find
from .saving import AtomicSavingMixin, last_complete_checkpoint
from .schedules import get_slanted_triangular_schedule
from .training_args import ULMFiTTrainingArguments

logger = logging.get_logger(__name__)

RECURRENT_STATE_NAME = "recurrent_state.pt"  # recurrent_state_{process index}.pt with several processes

State = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def discriminative_param_groups(
    model: nn.Module,
    learning_rate: float,
    factor: float,
    weight_decay: float = 0.0,
    decay_parameter_names: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for discriminative fine-tuning (section 3.2).

    Layer group ``i`` of ``model.layer_groups`` (bottom to top, ``n`` groups) gets ``lr = learning_rate /
    factor ** (n - 1 - i)``. Every parameter, trainable or frozen, is in exactly one group; a parameter shared by
    several layer groups (a decoder tied to the embedding) goes to the topmost one. The groups are listed from
    the top, so ``param_groups[0]`` runs at ``learning_rate`` and is the rate the Trainer logs as
    ``learning_rate``. Each group records its ``layer_group`` index and ``depth``.

    With ``weight_decay > 0``, the parameters not in ``decay_parameter_names`` (biases, norms) of a layer group
    get a second group with the same rate and no decay. A model without ``layer_groups`` is one group.
    """
    layer_groups = list(getattr(model, "layer_groups", None) or [model])
    names = {id(p): name for name, p in model.named_parameters()}
    decayed = set(decay_parameter_names) if decay_parameter_names is not None else set(names.values())
    seen: set[int] = set()
    param_groups = []
    for index in reversed(range(len(layer_groups))):
        depth = len(layer_groups) - 1 - index
        params = [p for p in layer_groups[index].parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        split = weight_decay > 0
        for decays in (True, False) if split else (True,):
            members = [p for p in params if not split or (names.get(id(p)) in decayed) == decays]
            if members:
                param_groups.append(
                    {
                        "params": members,
                        "lr": learning_rate / factor**depth,
                        "weight_decay": weight_decay if decays else 0.0,
                        "layer_group": index,
                        "depth": depth,
                    }
                )
    missing = [name for name, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"These parameters belong to no layer group of {type(model).__name__}: {missing}")
    return param_groups


def frozen_encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What ``freeze_encoder`` keeps as loaded: every parameter of a classifier's layer groups below the top one
    (the head), i.e. the embedding and LSTMs of each member. Raises ``ValueError`` for a model without a head."""
    groups = getattr(model, "layer_groups", None)
    if not groups or not type(model).__name__.endswith("ForSequenceClassification"):
        raise ValueError(
            f"freeze_encoder trains a classifier's head only, and {type(model).__name__} has none: use it in the "
            "classifier stage (train-classifier)."
        )
    *encoder, head = groups
    in_head = {id(p) for p in head.parameters()}
    return [p for group in encoder for p in group.parameters() if id(p) not in in_head]


def _without(param_groups: list[dict[str, Any]], left_out: list[nn.Parameter]) -> list[dict[str, Any]]:
    """The optimizer's parameter groups without the parameters ``left_out`` (groups left empty are dropped)."""
    ids = {id(p) for p in left_out}
    kept = [{**group, "params": [p for p in group["params"] if id(p) not in ids]} for group in param_groups]
    return [group for group in kept if group["params"]]


def _argument(args: TrainingArguments, name: str) -> Any:
    """A ULMFiT argument, or its ``ULMFiTTrainingArguments`` default when ``args`` are plain TrainingArguments."""
    if hasattr(args, name):
        return getattr(args, name)
    return ULMFiTTrainingArguments.__dataclass_fields__[name].default


def _detach_state(cache: State | None, dtype: torch.dtype) -> State | None:
    """Truncated BPTT: the state goes on to the next batch, its gradient history does not.

    It is kept in ``dtype``, the model's: under bf16 autocast the LSTM returns a bf16 state, which a forward
    outside autocast (a bf16 checkpoint resumed in fp32) could not take. Autocast casts it back to bf16
    losslessly."""
    if cache is None:
        return None
    return tuple((h.detach().to(dtype), c.detach().to(dtype)) for h, c in cache)


class ULMFiTTrainer(AtomicSavingMixin, Trainer):
    """``Trainer`` with discriminative fine-tuning, STLR, gradual unfreezing and a carried LM state.

    Takes ``ULMFiTTrainingArguments`` (plain ``TrainingArguments`` get their ULMFiT defaults). With
    ``args.gradual_unfreezing`` a ``GradualUnfreezingCallback`` is added unless one is already there. With
    ``args.freeze_encoder`` the encoder of a classifier is frozen and not in the optimizer (a gradual-unfreezing
    callback is then refused: the two contradict each other). Logs carry
    the rate of every layer group as ``learning_rate/group_{i}`` (``i`` indexes ``model.layer_groups``, bottom
    to top); ``learning_rate`` is the top group's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recurrent_state: dict[str, State | None] = {"train": None, "eval": None}
        self._is_stream = {"train": False, "eval": False}
        self._window_lengths: list[int] = []  # of the batches accumulated into the coming update
        self.logged_group_rates: dict[
            str, float
        ] = {}  # the scheduled rates of the last update, by layer group
        self.add_callback(_ULMFiTHooks(self))
        if _argument(self.args, "gradual_unfreezing") and not any(
            isinstance(callback, GradualUnfreezingCallback) for callback in self.callback_handler.callbacks
        ):
            self.add_callback(GradualUnfreezingCallback(_argument(self.args, "unfreeze_every_n_epochs")))
        if _argument(self.args, "freeze_encoder"):
            callbacks = self.callback_handler.callbacks
            if any(isinstance(callback, GradualUnfreezingCallback) for callback in callbacks):
                raise ValueError(
                    "freeze_encoder keeps the encoder frozen, a GradualUnfreezingCallback unfreezes it: use one."
                )
            if self.model is not None:  # a model without a head fails here, not after training has started
                frozen_encoder_parameters(self.model)

    # -- optimizer and schedule (section 3.2) ------------------------------------------------------------------

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """One parameter group per layer group at ``learning_rate / factor ** depth``, holding every parameter
        (with ``freeze_encoder``: every parameter but the encoder's, so nothing, not even weight decay, moves it).

        The optimizer class and its other settings (betas, eps) come from ``args.optim`` as in the Trainer.
        """
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.accelerator.unwrap_model(self.model if model is None else model)
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        builds_its_own_groups = any(key in optimizer_kwargs for key in ("params", "model", "optimizer_dict"))
        is_optimizer_class = isinstance(optimizer_cls, type) and issubclass(
            optimizer_cls, torch.optim.Optimizer
        )
        if builds_its_own_groups or not is_optimizer_class:
            raise ValueError(
                f"ULMFiTTrainer cannot build discriminative parameter groups for optim={self.args.optim}."
            )
        param_groups = discriminative_param_groups(
            opt_model,
            self.args.learning_rate,
            _argument(self.args, "discriminative_lr_factor"),
            self.args.weight_decay,
            self.get_decay_parameter_names(opt_model),
        )
        if _argument(self.args, "freeze_encoder"):
            param_groups = _without(param_groups, frozen_encoder_parameters(opt_model))
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """STLR (section 3.2) when ``ulmfit_lr_scheduler == "stlr"``, else the Trainer's ``lr_scheduler_type``."""
        if self.lr_scheduler is not None or _argument(self.args, "ulmfit_lr_scheduler") != "stlr":
            return super().create_scheduler(num_training_steps, optimizer)
        if self.args.warmup_steps:
            logger.warning("STLR has its own warm-up (stlr_cut_frac): warmup_steps is ignored.")
        self.lr_scheduler = get_slanted_triangular_schedule(
            self.optimizer if optimizer is None else optimizer,
            num_training_steps,
            cut_frac=_argument(self.args, "stlr_cut_frac"),
            ratio=_argument(self.args, "stlr_ratio"),
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # -- the rates of each update: one place sets them -------------------------------------------------------

    def set_update_rates(self) -> None:
        """Sets every parameter group's rate for the coming update (called just before each optimizer step).

        The rate of a group is its scheduled rate, i.e. its discriminative base rate times the STLR factor (the
        scheduler's ``get_last_lr()``), times the window factor of variable BPTT (AWD-LSTM, Merity et al. 2018,
        section 4.1): the mean length of the windows accumulated into this update over ``bptt``, so a short window
        moves the weights less. Every process reads windows of the same lengths, so their weights stay equal
        under DDP. The scheduler's next step recomputes every rate from the schedule alone (``LambdaLR`` is in
        closed form), so nothing needs restoring after the update. The logs show the scheduled rates."""
        lengths, self._window_lengths = self._window_lengths, []
        scheduled = self.lr_scheduler.get_last_lr()
        groups = self.optimizer.param_groups
        self.logged_group_rates = {
            f"learning_rate/group_{group.get('layer_group', index)}": rate
            for index, (group, rate) in enumerate(zip(groups, scheduled))
        }
        factor = self._window_factor(lengths)
        if factor == 1.0:
            return
        if not isinstance(self.lr_scheduler, LambdaLR):  # a chained scheduler would compound the factor
            logger.warning_once(
                "scale_lr_with_window needs a LambdaLR schedule (STLR, linear, ...): not applied."
            )
            return
        for group, rate in zip(groups, scheduled):
            group["lr"] = rate * factor

    def _window_factor(self, lengths: list[int]) -> float:
        """Mean window length over ``bptt`` for a variable-BPTT LM stream with ``scale_lr_with_window``, else 1."""
        dataset = self.train_dataset
        if not (lengths and self._is_stream["train"] and dataset.variable_bptt):
            return 1.0
        if not _argument(self.args, "scale_lr_with_window"):
            return 1.0
        return sum(lengths) / len(lengths) / dataset.bptt

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the scheduled rate of every layer group of the last update to training logs."""
        if "learning_rate" in logs and self.logged_group_rates:
            logs = {**logs, **self.logged_group_rates}
        super().log(logs, start_time)

    # -- language-model streams: the carried recurrent state ------------------------------------------------

    def _get_train_sampler(self, train_dataset=None):
        """As the Trainer's, with length-grouped batches shuffled per epoch from the seed (resume-exact)."""
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed=seed)
        return sampler

    def get_train_dataloader(self):
        self._is_stream["train"] = self._check_stream(
            self.train_dataset, self._train_batch_size, training=True
        )
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset=None):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        self._is_stream["eval"] = self._check_stream(dataset, self.args.eval_batch_size, training=False)
        return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        self._is_stream["eval"] = self._check_stream(test_dataset, self.args.eval_batch_size, training=False)
        return super().get_test_dataloader(test_dataset)

    def _check_stream(self, dataset, batch_size: int, training: bool) -> bool:
        """Whether ``dataset`` is an LM stream, after checking that it will be read row-continuously."""
        if not isinstance(dataset, LanguageModelStream):
            return False
        if batch_size != dataset.batch_size:
            raise ValueError(
                f"A LanguageModelStream of {dataset.batch_size} rows must be read with that batch size, got "
                f"{batch_size}: set per_device_train_batch_size / per_device_eval_batch_size accordingly."
            )
        if dataset.num_shards != self.args.world_size:
            raise ValueError(
                f"A LanguageModelStream cut for {dataset.num_shards} process(es) is read by {self.args.world_size}: "
                "build it with num_shards=training_args.world_size, so each process reads rows of its own."
            )
        if self.args.world_size > 1 and self.args.accelerator_config.split_batches:
            raise ValueError(
                "A LanguageModelStream gives each process whole batches: leave split_batches off."
            )
        model_backwards = bool(getattr(getattr(self.model, "config", None), "backwards", False))
        if dataset.backwards != model_backwards:
            raise ValueError(
                f"A LanguageModelStream with backwards={dataset.backwards} feeds a model with "
                f"config.backwards={model_backwards}: build the stream with backwards=model.config.backwards, so "
                "the corpus is read in the model's direction."
            )
        # Evaluation reads in order unless batches are grouped by length; training only with "sequential".
        ordered = ("sequential",) if training else ("sequential", "random")
        if self.args.train_sampling_strategy not in ordered:
            raise ValueError(
                'A LanguageModelStream must be read in order: set train_sampling_strategy="sequential".'
            )
        return True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """For LM streams, passes the state of the previous batch as ``cache`` and keeps the new one, detached."""
        mode = "train" if model.training else "eval"
        if not self._is_stream[mode]:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        state = self._recurrent_state[mode]
        if state is not None and state[0][0].shape[0] != inputs["input_ids"].shape[0]:
            state = None  # the batch size changed: the rows are other streams
        if mode == "train":
            self._window_lengths.append(inputs["input_ids"].shape[1])
        loss, outputs = super().compute_loss(
            model, {**inputs, "cache": state, "use_cache": True}, True, num_items_in_batch
        )
        self._recurrent_state[mode] = _detach_state(outputs["cache"], next(model.parameters()).dtype)
        return (loss, outputs) if return_outputs else loss

    @property
    def recurrent_state(self) -> dict[str, State | None]:
        """The carried LM state of each mode, ``"train"`` and ``"eval"``: what the next batch of that stream
        continues from (``None``: zeros). Assign a dict of the same form to put a saved state back."""
        return dict(self._recurrent_state)

    @recurrent_state.setter
    def recurrent_state(self, value: dict[str, State | None]) -> None:
        self._recurrent_state = {"train": value.get("train"), "eval": value.get("eval")}

    def reset_recurrent_state(self, mode: str = "train") -> None:
        """Starts the LM streams of ``mode`` ("train" or "eval") from a zero state at the next batch."""
        self._recurrent_state[mode] = None

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """``Trainer.train``; when resuming, the carried LM state saved with the checkpoint is restored too.

        ``resume_from_checkpoint=True`` resumes from the last complete checkpoint in ``output_dir``.
        """
        self.reset_recurrent_state("train")
        self.logged_group_rates = {}
        self._window_lengths = []
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = last_complete_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, str):
            self._restore_recurrent_state(checkpoint)
        self._freeze_encoder()
        self._make_every_group_trainable_before_wrapping()
        output = super().train(checkpoint, *args, **kwargs)
        self._copy_buffers_from_process_zero()
        return output

    def _restore_recurrent_state(self, checkpoint: str) -> None:
        """The carried LM state this process saved in ``checkpoint``, if any."""
        path = os.path.join(checkpoint, _recurrent_state_name(self.args))
        if os.path.isfile(path):
            state = torch.load(path, weights_only=True)
            self._recurrent_state["train"] = tuple(
                (h.to(self.args.device), c.to(self.args.device)) for h, c in state
            )

    def _freeze_encoder(self) -> None:
        """``freeze_encoder``: the encoder's parameters stop requiring gradients before DDP wraps the model, so
        autograd skips the encoder and DDP leaves it out; ``create_optimizer`` leaves them out of the optimizer."""
        if not _argument(self.args, "freeze_encoder"):
            return
        frozen = frozen_encoder_parameters(self.accelerator.unwrap_model(self.model))
        for parameter in frozen:
            parameter.requires_grad_(False)
        logger.info(
            "freeze_encoder: only the head trains, without gradual unfreezing; the encoder's %s weights stay as "
            "loaded.",
            f"{sum(p.numel() for p in frozen):,}",
        )

    def _make_every_group_trainable_before_wrapping(self) -> None:
        """Gradual unfreezing under DDP: DDP averages the gradients only of the parameters that required them when
        it wrapped the model (at the start of ``Trainer.train``, before ``on_train_begin``). A group frozen then
        would train on each process's own gradients once unfrozen, and the processes would drift apart. So every
        group is trainable at the wrap, and ``GradualUnfreezingCallback`` freezes groups at ``on_train_begin``."""
        callbacks = self.callback_handler.callbacks
        layer_groups = getattr(self.accelerator.unwrap_model(self.model), "layer_groups", None)
        if layer_groups and any(isinstance(callback, GradualUnfreezingCallback) for callback in callbacks):
            set_trainable_groups(list(layer_groups), len(layer_groups))

    def _copy_buffers_from_process_zero(self) -> None:
        """Every process takes the buffers (BatchNorm running statistics) of process 0.

        DDP copies process 0's buffers to the others at each training forward, but each process then updates them
        from its own batch; afterwards the processes would evaluate with different statistics, none of them those
        of the saved model (process 0's)."""
        if self.args.world_size > 1:
            for buffer in self.accelerator.unwrap_model(self.model).buffers():
                buffer.copy_(broadcast(buffer, from_process=0))

    # -- evaluation -----------------------------------------------------------------------------------------

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ) -> EvalLoopOutput:
        """Starts LM streams from a zero state; adds ``{prefix}_perplexity = exp(loss)`` for language models.

        With several processes, each evaluates its share of the batches (its own rows of an LM stream) with the
        buffers of process 0, and the Trainer averages the losses of all processes."""
        self.reset_recurrent_state("eval")
        self._copy_buffers_from_process_zero()
        output = super().evaluation_loop(
            dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
        )
        loss_key = f"{metric_key_prefix}_loss"
        if loss_key in output.metrics and self._is_language_model():
            output.metrics[f"{metric_key_prefix}_perplexity"] = _perplexity(output.metrics[loss_key])
        return output

    def _is_language_model(self) -> bool:
        model = self.accelerator.unwrap_model(self.model)
        return self._is_stream["eval"] or type(model).__name__.endswith("ForCausalLM")

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """As the Trainer's, counting a batch as labelled when it has any of the label inputs.

        The Trainer wants all of them (``labels`` and ``shift_labels`` for a causal LM) and otherwise returns no
        loss; LM streams give ``shift_labels`` only.
        """
        present = [name for name in self.label_names if inputs.get(name) is not None]
        if not present or len(present) == len(self.label_names):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        label_names, self.label_names = self.label_names, present
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        finally:
            self.label_names = label_names

    # -- checkpoints (atomic saving: hf_ulmfit.saving) and the Hub (hf_ulmfit.cards) ------------------------

    def save_extra_state(self, checkpoint: str) -> None:
        """Every process saves the carried LM state of its own rows in the staged checkpoint, as the Trainer saves
        every process's RNG state."""
        carried = self._recurrent_state["train"]
        if carried is not None and (self.args.should_save or self.args.world_size > 1):
            os.makedirs(checkpoint, exist_ok=True)
            torch.save(
                [(h.cpu(), c.cpu()) for h, c in carried],
                os.path.join(checkpoint, _recurrent_state_name(self.args)),
            )

    def create_model_card(self, **kwargs) -> None:
        """Writes the ULMFiT model card (``hf_ulmfit.cards.write_trainer_model_card``) into ``output_dir``.

        ``Trainer.push_to_hub`` calls this just before uploading ``output_dir``; the Trainer's own version
        would replace the card a stage wrote there with its generic one. Takes the Trainer's arguments
        (``license``, ``tags``, ``finetuned_from``, ``dataset``, ...) plus ``stage``; what is not given is kept
        from the card already there.
        """
        if self.is_world_process_zero():
            write_trainer_model_card(self, **kwargs)

    # -- learning-rate range test ---------------------------------------------------------------------------

    def lr_find(self, **kwargs) -> LRFinderResult:
        """The LR range test on the training data; see ``hf_ulmfit.lr_finder.lr_find`` for the arguments."""
        return lr_find(self, **kwargs)


def _recurrent_state_name(args: TrainingArguments) -> str:
    """The checkpoint file of the carried LM state: one per process, as each carries the state of its own rows."""
    if args.world_size <= 1:
        return RECURRENT_STATE_NAME
    return RECURRENT_STATE_NAME.replace(".pt", f"_{args.process_index}.pt")


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class _ULMFiTHooks(TrainerCallback):
    """The trainer's own bookkeeping at epoch starts and optimizer steps."""

    def __init__(self, trainer: ULMFiTTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # A run resumed mid-epoch keeps the state restored from its checkpoint; a new epoch starts from zeros.
        if state.epoch is None or float(state.epoch).is_integer():
            self.trainer.reset_recurrent_state("train")

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        self.trainer.set_update_rates()


__all__ = [
    "RECURRENT_STATE_NAME",
    "ULMFiTTrainer",
    "discriminative_param_groups",
    "frozen_encoder_parameters",
    "last_complete_checkpoint",
]
