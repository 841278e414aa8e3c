"""Learning-rate range test (Smith 2017), which ULMFiT's practice uses to pick the maximum rate of STLR.

The rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps`` updates while the smoothed
training loss is recorded; the test stops when the loss diverges. The model, the optimizer, the random number
generators and the carried LM state are restored afterwards, so training starts as if the test never ran.
"""

import copy
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer


@dataclass
class LRFinderResult:
    """Rates tried (the top layer group's; lower groups keep their discriminative ratio) and the losses seen.

    ``suggested_lr`` is the rate where the smoothed loss falls fastest (steepest negative slope against
    ``log(lr)``); ``min_loss_lr_div10`` is a tenth of the rate with the lowest smoothed loss.
    """

    learning_rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed_losses: list[float] = field(default_factory=list)
    suggested_lr: float = math.nan
    min_loss_lr_div10: float = math.nan
    diverged: bool = False

    def plot(self, path: str | Path) -> Path:
        """Saves smoothed loss against rate (log scale) to ``path``; needs matplotlib."""
        return plot_lr_find(self, path)


def exponential_learning_rates(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` rates from ``start_lr`` to ``end_lr``, evenly spaced on a log scale."""
    return np.geomspace(start_lr, end_lr, num_steps)


def smooth_losses(losses: list[float], beta: float) -> list[float]:
    """Exponential moving average with bias correction: the first value is the first loss."""
    average, smoothed = 0.0, []
    for step, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta**step))
    return smoothed


def suggest_learning_rates(learning_rates: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(steepest-descent rate, rate of the minimum loss / 10) from the finite points of the recorded curve."""
    finite = [(lr, loss) for lr, loss in zip(learning_rates, smoothed, strict=True) if math.isfinite(loss)]
    if not finite:
        return math.nan, math.nan
    rates, losses = np.array([lr for lr, _ in finite]), np.array([loss for _, loss in finite])
    min_loss_lr_div10 = float(rates[np.argmin(losses)] / 10)
    if len(finite) < 3:
        return min_loss_lr_div10, min_loss_lr_div10
    slopes = np.gradient(losses, np.log(rates))
    return float(rates[np.argmin(slopes)]), min_loss_lr_div10


def lr_find(
    trainer: Trainer,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    divergence_threshold: float = 4.0,
    plot_path: str | Path | None = None,
) -> LRFinderResult:
    """Runs the LR range test with ``trainer``'s model, optimizer, loss and training data, then restores them.

    Each step sets every parameter group's rate to ``lr * (group's rate / args.learning_rate)``, so discriminative
    rates keep their ratios, and takes one update as training would: on the next ``gradient_accumulation_steps``
    training batches (the data repeats if it is short), whose mean loss is the step's loss.
    The test stops early once the smoothed loss exceeds ``divergence_threshold`` times its minimum or is not
    finite. Frozen parameters stay frozen: run it in the state training will start from.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"Need 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    model = trainer.model
    optimizer_was_missing = trainer.optimizer is None
    optimizer = trainer.create_optimizer()
    snapshot = _snapshot(trainer, optimizer)
    try:
        result = _range_test(trainer, optimizer, start_lr, end_lr, num_steps, smoothing, divergence_threshold)
    finally:
        model.zero_grad(set_to_none=True)
        _restore(trainer, optimizer, snapshot)
        if optimizer_was_missing:
            trainer.optimizer = None
    if plot_path is not None:
        result.plot(plot_path)
    return result


def _range_test(
    trainer: Trainer,
    optimizer: torch.optim.Optimizer,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    smoothing: float,
    divergence_threshold: float,
) -> LRFinderResult:
    # A scheduler, if one ran already, moved every group's rate; "initial_lr" keeps the discriminative one.
    base = trainer.args.learning_rate
    relative_rates = [group.get("initial_lr", group["lr"]) / base for group in optimizer.param_groups]
    result = LRFinderResult()
    batches = _repeat(trainer.get_train_dataloader(), on_restart=lambda: _reset_stream_state(trainer))
    trainer.model.train()
    for lr in exponential_learning_rates(start_lr, end_lr, num_steps):
        for group, relative in zip(optimizer.param_groups, relative_rates, strict=True):
            group["lr"] = float(lr) * relative
        loss = _training_step(trainer, optimizer, batches)
        result.learning_rates.append(float(lr))
        result.losses.append(loss)
        result.smoothed_losses = smooth_losses(result.losses, smoothing)
        current = result.smoothed_losses[-1]
        if not math.isfinite(current) or current > divergence_threshold * min(result.smoothed_losses):
            result.diverged = True
            break
    result.suggested_lr, result.min_loss_lr_div10 = suggest_learning_rates(
        result.learning_rates, result.smoothed_losses
    )
    return result


def _training_step(
    trainer: Trainer, optimizer: torch.optim.Optimizer, batches: Iterator[dict[str, Any]]
) -> float:
    """One update with the trainer's loss (which carries an LM state if it does): forward and backward on
    ``gradient_accumulation_steps`` batches, each loss divided by their number as the Trainer does, then clipping
    and the step. Returns the batches' mean loss."""
    model = trainer.model
    num_batches = trainer.args.gradient_accumulation_steps
    total = 0.0
    for batch in itertools.islice(batches, num_batches):
        inputs = {
            key: value.to(trainer.args.device) if torch.is_tensor(value) else value
            for key, value in batch.items()
        }
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, inputs)
        (loss / num_batches).backward()
        total += loss.item()
    if trainer.args.max_grad_norm and trainer.args.max_grad_norm > 0:
        trainable = [p for p in model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(trainable, trainer.args.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / num_batches


def _repeat(dataloader, on_restart: Callable[[], None]) -> Iterator[dict[str, Any]]:
    """The dataloader's batches, over and over; ``on_restart`` runs before each pass."""
    while True:
        on_restart()
        yield from dataloader


def _reset_stream_state(trainer: Trainer) -> None:
    """A new pass over an LM stream starts from a zero state (ULMFiTTrainer carries one; others do not)."""
    if hasattr(trainer, "reset_recurrent_state"):
        trainer.reset_recurrent_state("train")


def _snapshot(trainer: Trainer, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "model": {key: value.detach().clone() for key, value in trainer.model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "training": trainer.model.training,
        "recurrent_state": getattr(trainer, "recurrent_state", None),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore(trainer: Trainer, optimizer: torch.optim.Optimizer, snapshot: dict[str, Any]) -> None:
    trainer.model.load_state_dict(snapshot["model"])
    optimizer.load_state_dict(snapshot["optimizer"])
    trainer.model.train(snapshot["training"])
    if snapshot["recurrent_state"] is not None:
        trainer.recurrent_state = snapshot["recurrent_state"]
    torch.set_rng_state(snapshot["cpu_rng"])
    if snapshot["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(snapshot["cuda_rng"])


def plot_lr_find(result: LRFinderResult, path: str | Path) -> Path:
    """Smoothed loss against learning rate (log scale), with the suggestions marked, saved to ``path``."""
    from matplotlib.figure import Figure  # optional dependency; a bare Figure needs no pyplot backend

    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    axes.plot(result.learning_rates, result.smoothed_losses)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("smoothed training loss")
    for value, label, style in (
        (result.suggested_lr, "steepest descent", "--"),
        (result.min_loss_lr_div10, "min loss / 10", ":"),
    ):
        if math.isfinite(value):
            axes.axvline(value, linestyle=style, color="gray", label=f"{label}: {value:.2e}")
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


__all__ = [
    "LRFinderResult",
    "exponential_learning_rates",
    "lr_find",
    "plot_lr_find",
    "smooth_losses",
    "suggest_learning_rates",
]
