"""Learning-rate schedules of ULMFiT (Howard & Ruder 2018)."""

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def slanted_triangular_multiplier(
    step: int, num_training_steps: int, cut_frac: float = 0.1, ratio: float = 32
) -> float:
    """Factor of the maximum learning rate at ``step`` under slanted triangular learning rates (STLR).

    Section 3.2, equation 3 of the paper: with ``T = num_training_steps``, ``cut = floor(T * cut_frac)``,
    ``p = t / cut`` while ``t < cut`` and ``p = 1 - (t - cut) / (cut * (1 / cut_frac - 1))`` afterwards, the rate
    is ``lr_max * (1 + p * (ratio - 1)) / ratio``: it rises linearly from ``lr_max / ratio`` to ``lr_max`` during
    the first ``cut`` steps, then decays linearly back to ``lr_max / ratio`` at step ``T``.

    When ``T * cut_frac < 1`` (``cut == 0``) there is no increasing phase: the rate starts at ``lr_max`` and
    decays over the ``T`` steps, which is the limit of the formula without a division by zero. Past ``T`` the
    factor stays at ``1 / ratio``.
    """
    cut = math.floor(num_training_steps * cut_frac)
    if step < cut:
        p = step / cut
    else:
        decay_steps = cut * (1 / cut_frac - 1) if cut > 0 else num_training_steps
        p = 1 - (step - cut) / max(decay_steps, 1)
    p = max(p, 0.0)
    return (1 + p * (ratio - 1)) / ratio


def get_slanted_triangular_schedule(
    optimizer: Optimizer,
    num_training_steps: int,
    cut_frac: float = 0.1,
    ratio: float = 32,
    last_epoch: int = -1,
) -> LambdaLR:
    """Slanted triangular learning rates (section 3.2) as a ``LambdaLR``.

    ``LambdaLR`` multiplies each parameter group's own initial rate by the same factor, so the discriminative
    rates of section 3.2 (``lr / 2.6 ** depth``) keep their ratios throughout the schedule. Step it once per
    optimizer update, as the Trainer does.

    Args:
        optimizer: the optimizer whose parameter groups are scheduled.
        num_training_steps: ``T``, the number of optimizer updates of the whole run.
        cut_frac: fraction of ``T`` during which the rate increases (0.1 in the paper).
        ratio: how much smaller the lowest rate is than the maximum (32 in the paper).
        last_epoch: index of the last step taken, ``-1`` to start a new schedule.
    """
    if num_training_steps < 1:
        raise ValueError(f"num_training_steps must be >= 1, got {num_training_steps}.")
    if not 0 < cut_frac < 1:
        raise ValueError(f"cut_frac must be in (0, 1), got {cut_frac}.")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}.")
    multiplier = partial(
        slanted_triangular_multiplier, num_training_steps=num_training_steps, cut_frac=cut_frac, ratio=ratio
    )
    return LambdaLR(optimizer, multiplier, last_epoch=last_epoch)


__all__ = ["get_slanted_triangular_schedule", "slanted_triangular_multiplier"]
