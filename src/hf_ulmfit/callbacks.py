"""Trainer callbacks of ULMFiT (Howard & Ruder 2018)."""

import math

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

# state.epoch is a float (epoch + step / steps_in_epoch); this absorbs rounding at epoch boundaries.
_EPOCH_TOLERANCE = 1e-6


def num_trainable_groups(epoch: float | None, num_groups: int, unfreeze_every_n_epochs: int = 1) -> int:
    """How many layer groups, counted from the top, train during ``epoch`` under gradual unfreezing.

    Section 3.3: the top group trains alone first, then one more group below it every
    ``unfreeze_every_n_epochs`` epochs, until all groups train.
    """
    completed = math.floor((epoch or 0.0) / unfreeze_every_n_epochs + _EPOCH_TOLERANCE)
    return min(num_groups, 1 + completed)


def set_trainable_groups(layer_groups: list[nn.Module], num_trainable: int) -> None:
    """Sets ``requires_grad``: parameters of the top ``num_trainable`` groups train, the others are frozen.

    BatchNorm parameters always train: frozen layers below still shift the statistics a BatchNorm normalises.
    A parameter shared by a frozen and a trainable group trains.
    """
    trainable = {
        id(p) for group in layer_groups[len(layer_groups) - num_trainable :] for p in group.parameters()
    }
    for group in layer_groups:
        for module in group.modules():
            always_trains = isinstance(module, _BatchNorm)
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(always_trains or id(parameter) in trainable)


class GradualUnfreezingCallback(TrainerCallback):
    """Gradual unfreezing (ULMFiT section 3.3) over the model's ``layer_groups`` (ordered bottom to top).

    The frozen set is derived from ``state.epoch`` at the start of training and of every epoch, so a run resumed
    from a checkpoint continues the schedule where it stopped. The optimizer must hold every parameter, frozen or
    not (``ULMFiTTrainer`` builds it so): an optimizer built from trainable parameters only would never update
    the groups unfrozen later.

    Several processes (DDP): frozen parameters take no part in the loss, which DDP accepts only with
    ``find_unused_parameters`` (the Trainer's default for transformers models; ``ddp_find_unused_parameters=False``
    is rejected). Their gradients stay ``None`` on every process, so they do not move, not even by weight decay.
    The groups must all be trainable when DDP wraps the model; ``ULMFiTTrainer.train`` sees to it.
    """

    def __init__(self, unfreeze_every_n_epochs: int = 1):
        if unfreeze_every_n_epochs < 1:
            raise ValueError(f"unfreeze_every_n_epochs must be >= 1, got {unfreeze_every_n_epochs}.")
        self.unfreeze_every_n_epochs = unfreeze_every_n_epochs

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        _check_optimizer_holds_model(kwargs.get("optimizer"), model)
        _check_distributed_arguments(args)
        self._apply(model, state)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        self._apply(model, state)

    def _apply(self, model: nn.Module, state: TrainerState) -> None:
        layer_groups = _layer_groups(model)
        count = num_trainable_groups(state.epoch, len(layer_groups), self.unfreeze_every_n_epochs)
        set_trainable_groups(layer_groups, count)


def _layer_groups(model: nn.Module) -> list[nn.Module]:
    groups = getattr(model, "layer_groups", None)
    if not groups:
        raise TypeError(f"{type(model).__name__} has no `layer_groups`; gradual unfreezing needs them.")
    return list(groups)


def _check_distributed_arguments(args: TrainingArguments) -> None:
    """Fails early where DDP would fail at the second step (or silently mis-sync) with frozen parameters."""
    if args.world_size > 1 and (args.ddp_find_unused_parameters is False or args.ddp_static_graph):
        raise ValueError(
            "Gradual unfreezing with several processes: frozen parameters are unused in the loss, which DDP needs "
            "to be told about. Leave ddp_find_unused_parameters unset (or True) and ddp_static_graph off."
        )


def _check_optimizer_holds_model(optimizer, model: nn.Module) -> None:
    """Fails early where frozen groups are missing from the optimizer (they would never be trained)."""
    if optimizer is None or model is None:
        return
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if id(p) not in held]
    if missing:
        raise ValueError(
            f"Gradual unfreezing: the optimizer lacks {len(missing)} parameters (e.g. {missing[:3]}), which would "
            "never train once unfrozen. Use ULMFiTTrainer, whose optimizer holds every parameter."
        )


__all__ = ["GradualUnfreezingCallback", "num_trainable_groups", "set_trainable_groups"]
