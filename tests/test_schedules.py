"""Slanted triangular learning rates (ULMFiT section 3.2, equation 3)."""

import io
import math

import pytest
import torch

from hf_ulmfit.schedules import get_slanted_triangular_schedule, slanted_triangular_multiplier

BASE_LR = 0.01


def _optimizer(rates: list[float]) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in rates])


def _rates_over_run(num_training_steps: int, rates: list[float], **kwargs) -> list[list[float]]:
    """The rate of every group at each step 0..T-1, stepping the scheduler as the Trainer does."""
    optimizer = _optimizer(rates)
    scheduler = get_slanted_triangular_schedule(optimizer, num_training_steps, **kwargs)
    seen = []
    for _ in range(num_training_steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_paper_values_at_start_cut_and_end():
    # T=1000, cut_frac=0.1, ratio=32: cut=100; start and end at lr/32, peak lr at step 100.
    rates = [row[0] for row in _rates_over_run(1000, [BASE_LR], cut_frac=0.1, ratio=32)]
    assert rates[0] == pytest.approx(BASE_LR / 32)
    assert rates[50] == pytest.approx(BASE_LR * (1 + 0.5 * 31) / 32)  # halfway up: p = 0.5
    assert rates[100] == pytest.approx(BASE_LR)
    assert max(rates) == pytest.approx(BASE_LR)
    assert rates.index(max(rates)) == 100
    # Last step t=999: p = 1 - 899 / (100 * 9) = 1/900.
    assert rates[999] == pytest.approx(BASE_LR * (1 + 31 / 900) / 32)
    assert slanted_triangular_multiplier(1000, 1000, 0.1, 32) == pytest.approx(1 / 32)


def test_rises_then_falls_linearly():
    rates = [row[0] for row in _rates_over_run(200, [BASE_LR], cut_frac=0.25, ratio=10)]
    rising, falling = torch.tensor(rates[:51]), torch.tensor(rates[50:])
    assert torch.allclose(rising.diff(), rising.diff()[0].expand(50))
    assert torch.allclose(falling.diff(), falling.diff()[0].expand(149))
    assert rising.diff()[0] > 0 > falling.diff()[0]


def test_discriminative_ratios_are_preserved():
    group_rates = [BASE_LR / 2.6**depth for depth in range(4)]
    for step_rates in _rates_over_run(50, group_rates):
        for rate, initial in zip(step_rates, group_rates, strict=True):
            assert rate / step_rates[0] == pytest.approx(initial / BASE_LR)


@pytest.mark.parametrize("num_training_steps", [1, 2, 5, 9])
def test_tiny_runs_have_no_warmup_and_no_division_by_zero(num_training_steps):
    # T * cut_frac < 1 -> cut = 0: start at the peak and decay over the T steps.
    rates = [row[0] for row in _rates_over_run(num_training_steps, [BASE_LR])]
    assert all(math.isfinite(rate) for rate in rates)
    assert rates[0] == pytest.approx(BASE_LR)
    assert rates == sorted(rates, reverse=True)
    assert slanted_triangular_multiplier(num_training_steps, num_training_steps) == pytest.approx(1 / 32)


def test_factor_stays_at_minimum_past_the_end():
    assert slanted_triangular_multiplier(5000, 1000) == pytest.approx(1 / 32)


@pytest.mark.parametrize(
    "kwargs", [{"num_training_steps": 0}, {"cut_frac": 0.0}, {"cut_frac": 1.0}, {"ratio": 0.5}]
)
def test_invalid_settings_are_rejected(kwargs):
    arguments = {"num_training_steps": 100, **kwargs}
    with pytest.raises(ValueError):
        get_slanted_triangular_schedule(_optimizer([BASE_LR]), **arguments)


def test_state_dict_round_trip_continues_the_schedule():
    # The Trainer checkpoints the scheduler with state_dict() and resumes with load_state_dict().
    optimizer = _optimizer([BASE_LR])
    scheduler = get_slanted_triangular_schedule(optimizer, 1000)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)

    resumed_optimizer = _optimizer([BASE_LR])
    resumed = get_slanted_triangular_schedule(resumed_optimizer, 1000)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed_optimizer.param_groups[0]["lr"] = resumed.get_last_lr()[0]
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(BASE_LR)  # step 100 is the peak
    resumed_optimizer.step()
    resumed.step()
    assert resumed.get_last_lr()[0] == pytest.approx(BASE_LR * (1 + (1 - 1 / 900) * 31) / 32)
