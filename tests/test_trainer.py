"""ULMFiTTrainer: discriminative rates, STLR, per-group logging, gradient accumulation, the carried LM state,
perplexity, resuming, and the LR range test."""

import math

import numpy as np
import pytest
import torch
from transformers import HfArgumentParser, TrainerCallback, default_data_collator

from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
from hf_ulmfit.data import LanguageModelStream
from hf_ulmfit.lr_finder import smooth_losses, suggest_learning_rates
from hf_ulmfit.modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from hf_ulmfit.schedules import slanted_triangular_multiplier
from hf_ulmfit.trainer import RECURRENT_STATE_NAME, ULMFiTTrainer, discriminative_param_groups
from hf_ulmfit.training_args import ULMFiTTrainingArguments

BASE_LR = 1e-2
NO_DROPOUT = {
    "embedding_dropout": 0.0,
    "input_dropout": 0.0,
    "weight_dropout": 0.0,
    "hidden_dropout": 0.0,
    "output_dropout": 0.0,
}


def _config(**kwargs) -> AWDLSTMConfig:
    return AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=3, **kwargs)


def _lm(seed: int = 0, **kwargs) -> AWDLSTMForCausalLM:
    torch.manual_seed(seed)
    return AWDLSTMForCausalLM(_config(**kwargs))


def _args(tmp_path, **kwargs) -> ULMFiTTrainingArguments:
    defaults = {
        "output_dir": str(tmp_path),
        "learning_rate": BASE_LR,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return ULMFiTTrainingArguments(**{**defaults, **kwargs})


def _stream_args(tmp_path, rows: int, **kwargs) -> ULMFiTTrainingArguments:
    return _args(
        tmp_path,
        per_device_train_batch_size=rows,
        per_device_eval_batch_size=rows,
        train_sampling_strategy="sequential",
        dataloader_drop_last=True,
        **kwargs,
    )


def _stream(length: int = 240, rows: int = 4, bptt: int = 6, seed: int = 0, **kwargs) -> LanguageModelStream:
    generator = torch.Generator().manual_seed(seed)
    return LanguageModelStream(torch.randint(4, 50, (length,), generator=generator), rows, bptt, **kwargs)


def _lm_trainer(tmp_path, model, dataset, rows: int, eval_dataset=None, **kwargs) -> ULMFiTTrainer:
    return ULMFiTTrainer(
        model=model,
        args=_stream_args(tmp_path, rows, **kwargs),
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
    )


def _depth_of(model) -> dict[int, int]:
    """Parameter id -> depth of its layer group (top = 0), computed from model.layer_groups."""
    groups = model.layer_groups
    depth = {}
    for index, group in enumerate(groups):
        for parameter in group.parameters():
            depth[id(parameter)] = len(groups) - 1 - index  # a shared parameter ends in the topmost group
    return depth


class _RecordGradients(TrainerCallback):
    """Copies every gradient right before each optimizer step (after clipping, which the tests disable)."""

    def __init__(self):
        self.gradients: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.gradients.append(
            {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        )


class _RecordCaches:
    """Forward hooks: the cache each training/eval forward got, and the one it returned."""

    def __init__(self, model):
        self.calls: list[dict] = []
        model.register_forward_pre_hook(self._before, with_kwargs=True)
        model.register_forward_hook(self._after, with_kwargs=True)

    def _before(self, module, args, kwargs):
        self.calls.append({"training": module.training, "cache_in": kwargs.get("cache")})

    def _after(self, module, args, kwargs, output):
        self.calls[-1]["cache_out"] = output.cache


# -- training arguments -------------------------------------------------------------------------------------


def test_arguments_parse_from_the_command_line(tmp_path):
    parser = HfArgumentParser(ULMFiTTrainingArguments)
    (defaults,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path)])
    assert (defaults.discriminative_lr_factor, defaults.ulmfit_lr_scheduler) == (2.6, "stlr")
    assert (defaults.stlr_cut_frac, defaults.stlr_ratio) == (0.1, 32)
    assert not defaults.gradual_unfreezing and defaults.unfreeze_every_n_epochs == 1
    assert (defaults.adam_beta1, defaults.adam_beta2) == (0.9, 0.999)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--paper_adam_betas", "--gradual_unfreezing", "--no_variable_bptt"]
        + ["--ulmfit_lr_scheduler", "transformers", "--discriminative_lr_factor", "2"]
    )
    assert (args.adam_beta1, args.adam_beta2) == (0.7, 0.99)
    assert args.gradual_unfreezing and not args.variable_bptt
    assert (args.ulmfit_lr_scheduler, args.discriminative_lr_factor) == ("transformers", 2.0)


@pytest.mark.parametrize(
    "field",
    [
        {"discriminative_lr_factor": 0.0},
        {"ulmfit_lr_scheduler": "cosine"},
        {"stlr_cut_frac": 1.0},
        {"stlr_ratio": 0.5},
        {"unfreeze_every_n_epochs": 0},
    ],
)
def test_invalid_arguments_are_rejected(tmp_path, field):
    with pytest.raises(ValueError):
        ULMFiTTrainingArguments(output_dir=str(tmp_path), **field)


# -- discriminative fine-tuning (section 3.2) --------------------------------------------------------------


def test_every_parameter_once_at_base_over_factor_to_the_depth(tmp_path):
    model = _lm()
    assert model.decoder.weight is model.awd_lstm.embed_tokens.weight  # tied: must appear once
    trainer = ULMFiTTrainer(model=model, args=_args(tmp_path))
    optimizer = trainer.create_optimizer()

    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == len({id(p) for p in in_optimizer})  # no parameter twice
    assert {id(p) for p in in_optimizer} == {id(p) for p in model.parameters()}
    assert len(optimizer.param_groups) == len(model.layer_groups)  # one group per layer group
    depth = _depth_of(model)
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert group["lr"] == BASE_LR / 2.6 ** depth[id(parameter)]
    assert optimizer.param_groups[0]["lr"] == BASE_LR  # the top group leads: the Trainer logs its rate


def test_frozen_parameters_are_in_the_optimizer_too(tmp_path):
    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(_config(num_labels=2))
    for group in model.layer_groups[:-1]:
        group.requires_grad_(False)
    trainer = ULMFiTTrainer(model=model, args=_args(tmp_path, discriminative_lr_factor=3.0))
    optimizer = trainer.create_optimizer()
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and {id(p) for p in frozen} <= {id(p) for p in in_optimizer}
    assert sorted(id(p) for p in in_optimizer) == sorted(id(p) for p in model.parameters())
    depth = _depth_of(model)
    assert all(g["lr"] == BASE_LR / 3.0 ** depth[id(p)] for g in optimizer.param_groups for p in g["params"])
    assert sorted(g["depth"] for g in optimizer.param_groups) == list(range(5))


def test_weight_decay_spares_biases_and_keeps_the_group_rates():
    model = _lm()
    decay_names = [name for name, _ in model.named_parameters() if "bias" not in name]
    groups = discriminative_param_groups(
        model, BASE_LR, 2.6, weight_decay=0.1, decay_parameter_names=decay_names
    )
    names = {id(p): name for name, p in model.named_parameters()}
    depth = _depth_of(model)
    for group in groups:
        for parameter in group["params"]:
            assert group["lr"] == BASE_LR / 2.6 ** depth[id(parameter)]
            assert group["weight_decay"] == (0.0 if "bias" in names[id(parameter)] else 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_optimizer_class_and_paper_betas_come_from_the_arguments(tmp_path):
    trainer = ULMFiTTrainer(model=_lm(), args=_args(tmp_path, optim="adamw_torch", paper_adam_betas=True))
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(group["betas"] == (0.7, 0.99) for group in optimizer.param_groups)
    sgd = ULMFiTTrainer(model=_lm(), args=_args(tmp_path, optim="sgd")).create_optimizer()
    assert type(sgd) is torch.optim.SGD


# -- STLR (section 3.2) ------------------------------------------------------------------------------------


def test_stlr_is_the_default_schedule_for_every_group(tmp_path):
    trainer = ULMFiTTrainer(model=_lm(), args=_args(tmp_path, stlr_cut_frac=0.2, stlr_ratio=10))
    optimizer = trainer.create_optimizer()
    initial = [BASE_LR / 2.6**depth for depth in range(4)]
    scheduler = trainer.create_scheduler(num_training_steps=50)
    expected_factor = {0: 1 / 10, 10: 1.0, 49: (1 + (1 - 39 / 40) * 9) / 10}  # cut = 10, T = 50
    for step in range(50):
        if step in expected_factor:
            for group, lr in zip(optimizer.param_groups, initial, strict=True):
                assert group["lr"] == pytest.approx(lr * expected_factor[step])
        optimizer.step()
        scheduler.step()


def test_transformers_schedules_stay_available(tmp_path):
    args = _args(tmp_path, ulmfit_lr_scheduler="transformers", lr_scheduler_type="constant")
    trainer = ULMFiTTrainer(model=_lm(), args=args)
    optimizer = trainer.create_optimizer()
    scheduler = trainer.create_scheduler(num_training_steps=10)
    before = [group["lr"] for group in optimizer.param_groups]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == before


def test_logs_the_rate_of_every_layer_group(tmp_path):
    model = _lm()
    dataset = _stream(rows=4, bptt=6)  # 59 positions per row -> 10 windows
    trainer = _lm_trainer(tmp_path, model, dataset, rows=4, num_train_epochs=1, logging_steps=1)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 10
    for entry in logs:
        step = entry["step"] - 1  # the rate used by that update
        top = BASE_LR * slanted_triangular_multiplier(step, 10)
        assert entry["learning_rate"] == pytest.approx(top)
        for index in range(4):  # layer group index, bottom = 0
            assert entry[f"learning_rate/group_{index}"] == pytest.approx(top / 2.6 ** (3 - index))


# -- gradient accumulation ---------------------------------------------------------------------------------


def test_gradients_are_the_same_with_and_without_accumulation(tmp_path):
    generator = torch.Generator().manual_seed(1)
    examples = [
        {"input_ids": ids, "labels": ids} for ids in torch.randint(4, 50, (4, 9), generator=generator)
    ]
    gradients = []
    for batch_size, accumulation in ((4, 1), (2, 2), (1, 4)):
        recorder = _RecordGradients()
        trainer = ULMFiTTrainer(
            model=_lm(**NO_DROPOUT),
            args=_args(
                tmp_path,
                per_device_train_batch_size=batch_size,
                gradient_accumulation_steps=accumulation,
                train_sampling_strategy="sequential",
                max_steps=1,
                max_grad_norm=0.0,
            ),
            train_dataset=examples,
            data_collator=default_data_collator,
            callbacks=[recorder],
        )
        trainer.train()
        (recorded,) = recorder.gradients
        gradients.append(recorded)
    for other in gradients[1:]:
        assert other.keys() == gradients[0].keys()
        for name, gradient in gradients[0].items():
            torch.testing.assert_close(other[name], gradient, rtol=1e-5, atol=1e-7)


# -- the carried recurrent state ---------------------------------------------------------------------------


def test_state_is_carried_detached_between_batches_and_accumulation_matches_by_hand(tmp_path):
    dataset = _stream(length=60, rows=2, bptt=5)
    recorder = _RecordGradients()
    trainer = ULMFiTTrainer(
        model=_lm(**NO_DROPOUT),
        args=_stream_args(tmp_path, 2, gradient_accumulation_steps=2, max_steps=1, max_grad_norm=0.0),
        train_dataset=dataset,
        data_collator=default_data_collator,
        callbacks=[recorder],
    )
    trainer.train()
    (trained,) = recorder.gradients

    def by_hand(carry: bool) -> dict[str, torch.Tensor]:
        model = _lm(**NO_DROPOUT)
        model.train()
        first = default_data_collator([dataset[0], dataset[1]])
        second = default_data_collator([dataset[2], dataset[3]])
        out = model(input_ids=first["input_ids"], shift_labels=first["shift_labels"])
        (out.loss / 2).backward()
        cache = tuple((h.detach(), c.detach()) for h, c in out.cache) if carry else None
        out = model(input_ids=second["input_ids"], shift_labels=second["shift_labels"], cache=cache)
        (out.loss / 2).backward()
        return {name: p.grad for name, p in model.named_parameters()}

    expected, stateless = by_hand(carry=True), by_hand(carry=False)
    for name, gradient in expected.items():
        torch.testing.assert_close(trained[name], gradient, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(expected[name], stateless[name]) for name in expected)  # the state matters


def test_variable_bptt_scales_each_update_by_its_window_length(tmp_path):
    """With plain SGD an update on (accumulated) windows of mean length L moves the weights L / bptt as far as the unscaled one
    (AWD-LSTM section 4.1); the rates left in the optimizer, and logged, are the schedule's."""

    def one_update(scale: bool):
        dataset = _stream(length=240, rows=2, bptt=6, variable_bptt=True)
        model = _lm(**NO_DROPOUT)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        trainer = _lm_trainer(
            tmp_path / str(scale),
            model,
            dataset,
            rows=2,
            max_steps=1,
            gradient_accumulation_steps=3,
            optim="sgd",
            learning_rate=3.0,  # steps well above float32 rounding of the weights
            max_grad_norm=0.0,
            logging_steps=1,
            scale_lr_with_window=scale,
        )
        trainer.train()
        lengths = [length for _, length in dataset.windows[:3]]
        moved = {name: p.detach() - before[name] for name, p in model.named_parameters()}
        return moved, lengths, trainer

    scaled, lengths, trainer = one_update(scale=True)
    unscaled, _, _ = one_update(scale=False)
    scale = sum(lengths) / 3 / 6
    assert scale != 1.0  # the windows drawn are not all bptt long
    for name, step in unscaled.items():
        torch.testing.assert_close(scaled[name], step * scale, rtol=1e-4, atol=1e-7)
    assert [group["lr"] for group in trainer.optimizer.param_groups] == trainer.lr_scheduler.get_last_lr()
    logged = [entry for entry in trainer.state.log_history if "learning_rate/group_0" in entry]
    assert logged and all(
        entry["learning_rate"] == entry["learning_rate/group_3"] == 3.0 * slanted_triangular_multiplier(0, 1)
        for entry in logged
    )


def test_state_resets_at_each_epoch_and_evaluation(tmp_path):
    model = _lm()
    train, evaluation = _stream(rows=4, bptt=6), _stream(length=120, rows=4, bptt=6, seed=1)
    # Evaluations every 4 updates interrupt the training streams: those must go on unaffected.
    trainer = _lm_trainer(
        tmp_path,
        model,
        train,
        rows=4,
        eval_dataset=evaluation,
        num_train_epochs=2,
        eval_strategy="steps",
        eval_steps=4,
    )
    recorder = _RecordCaches(model)
    trainer.train()
    trainer.evaluate()

    windows = len(train.windows)
    training = [call for call in recorder.calls if call["training"]]
    assert len(training) == 2 * windows
    for index, call in enumerate(training):
        if index % windows == 0:
            assert call["cache_in"] is None  # epoch start
        else:
            previous = training[index - 1]["cache_out"]
            for (h, c), (h_prev, c_prev) in zip(call["cache_in"], previous, strict=True):
                assert torch.equal(h, h_prev) and torch.equal(c, c_prev)
                assert not h.requires_grad and not c.requires_grad  # detached: truncated BPTT
    evaluating = [call for call in recorder.calls if not call["training"]]
    eval_windows = len(evaluation.windows)
    evaluations = 2 * windows // 4 + 1
    assert len(evaluating) == evaluations * eval_windows
    expected = ([True] + [False] * (eval_windows - 1)) * evaluations  # each evaluation starts from zeros
    assert [call["cache_in"] is None for call in evaluating] == expected


def test_state_resets_when_the_batch_size_changes(tmp_path):
    model = _lm()
    trainer = _lm_trainer(tmp_path, model, _stream(rows=4), rows=4)
    trainer.get_train_dataloader()  # marks the training data as a stream
    recorder = _RecordCaches(model)
    model.train()
    for rows in (4, 4, 2):
        ids = torch.randint(4, 50, (rows, 6))
        trainer.compute_loss(model, {"input_ids": ids, "shift_labels": ids})
    assert [call["cache_in"] is None for call in recorder.calls] == [True, False, True]


def test_evaluation_reports_perplexity_of_the_stream_loss(tmp_path):
    model = _lm()
    evaluation = _stream(length=120, rows=4, bptt=6, seed=1)
    trainer = _lm_trainer(tmp_path, model, _stream(rows=4), rows=4, eval_dataset=evaluation)
    metrics = trainer.evaluate()
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))

    model.eval()
    losses, cache = [], None
    with torch.no_grad():
        for start in range(0, len(evaluation), 4):
            batch = default_data_collator([evaluation[i] for i in range(start, start + 4)])
            out = model(**batch, cache=cache)
            losses.append(out.loss.item())
            cache = out.cache
    assert metrics["eval_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_stream_read_with_another_batch_size_or_shuffled_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch size"):
        _lm_trainer(tmp_path, _lm(), _stream(rows=4), rows=2).get_train_dataloader()
    trainer = ULMFiTTrainer(
        model=_lm(), args=_args(tmp_path, per_device_train_batch_size=4), train_dataset=_stream(rows=4)
    )
    with pytest.raises(ValueError, match="sequential"):
        trainer.get_train_dataloader()


def test_resuming_mid_epoch_reaches_the_same_weights(tmp_path):
    """LM stage: variable BPTT, carried state (saved with the checkpoint), dropout, STLR; resumed mid-epoch."""

    def run(output_dir, resume_from_checkpoint=None):
        dataset = _stream(length=240, rows=4, bptt=6, variable_bptt=True, seed=2)
        trainer = _lm_trainer(
            output_dir, _lm(seed=3), dataset, rows=4, num_train_epochs=2, save_strategy="steps", save_steps=7
        )
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        return trainer.model.state_dict()

    uninterrupted = run(tmp_path / "full")
    checkpoint = tmp_path / "full" / "checkpoint-7"  # 10 updates per epoch: in the middle of the first one
    assert (checkpoint / RECURRENT_STATE_NAME).is_file()
    resumed = run(tmp_path / "resumed", resume_from_checkpoint=str(checkpoint))
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)


# -- LR range test -----------------------------------------------------------------------------------------


def test_lr_find_restores_model_and_optimizer_and_suggests_a_rate(tmp_path):
    model = _lm()
    trainer = _lm_trainer(tmp_path, model, _stream(rows=4), rows=4, max_steps=3)
    trainer.train()  # the optimizer now has Adam moments to restore
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer_state = {
        id(p): {key: value.clone() for key, value in state.items()}
        for p, state in trainer.optimizer.state.items()
    }
    rates = [group["lr"] for group in trainer.optimizer.param_groups]

    plot = tmp_path / "lr_find.png"
    result = trainer.lr_find(start_lr=1e-6, end_lr=1.0, num_steps=20, plot_path=plot)

    assert result.learning_rates[0] == pytest.approx(1e-6)
    ratios = [b / a for a, b in zip(result.learning_rates, result.learning_rates[1:])]
    assert ratios == pytest.approx([10 ** (6 / 19)] * len(ratios))  # exponential growth
    assert 1e-6 <= result.suggested_lr <= 1.0
    assert result.min_loss_lr_div10 == pytest.approx(
        result.learning_rates[min(range(len(result.losses)), key=result.smoothed_losses.__getitem__)] / 10
    )
    assert plot.read_bytes()[:4] == b"\x89PNG"
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name])
    assert [group["lr"] for group in trainer.optimizer.param_groups] == rates
    for p, state in trainer.optimizer.state.items():
        for key, value in state.items():
            assert torch.equal(value, optimizer_state[id(p)][key])


def test_lr_find_steps_on_as_many_batches_as_a_training_update(tmp_path):
    """With gradient accumulation each step of the range test reads the next ``gradient_accumulation_steps``
    batches, the state carried between them, and records their mean loss."""
    dataset = _stream(length=120, rows=2, bptt=5)
    trainer = _lm_trainer(
        tmp_path, _lm(**NO_DROPOUT), dataset, rows=2, gradient_accumulation_steps=3, optim="sgd"
    )
    result = trainer.lr_find(start_lr=1e-8, end_lr=1e-7, num_steps=2)  # rates too small to change the losses

    model, cache, losses = _lm(**NO_DROPOUT), None, []
    for window in range(6):
        batch = default_data_collator([dataset[2 * window], dataset[2 * window + 1]])
        output = model(input_ids=batch["input_ids"], shift_labels=batch["shift_labels"], cache=cache)
        cache = tuple((h.detach(), c.detach()) for h, c in output.cache)
        losses.append(output.loss.item())
    assert result.losses == pytest.approx([np.mean(losses[:3]), np.mean(losses[3:])], rel=1e-5)


def test_lr_find_stops_on_divergence_and_leaves_training_unchanged(tmp_path):
    def final_weights(with_lr_find: bool) -> dict[str, torch.Tensor]:
        trainer = _lm_trainer(tmp_path, _lm(), _stream(rows=4), rows=4, max_steps=4, optim="sgd")
        if with_lr_find:
            result = trainer.lr_find(start_lr=1e-1, end_lr=1e6, num_steps=30)
            assert result.diverged and len(result.losses) < 30
        trainer.train()
        return trainer.model.state_dict()

    reference, after_lr_find = final_weights(False), final_weights(True)
    for name, value in reference.items():
        torch.testing.assert_close(after_lr_find[name], value, rtol=0, atol=0)


def test_smoothing_and_suggestions_on_a_known_curve():
    assert smooth_losses([4.0, 2.0, 1.0], beta=0.5) == pytest.approx(
        [4.0, (0.25 * 4 + 0.5 * 2) / 0.75, (0.125 * 4 + 0.25 * 2 + 0.5 * 1) / 0.875]
    )
    rates = np.geomspace(1e-5, 1.0, 51)  # ten per decade: 1e-3 is rates[20]
    x = np.log(rates)
    losses = 3 - 1 / (1 + np.exp(-4 * (x - np.log(1e-3)))) + 0.5 * np.maximum(x - np.log(1e-1), 0) ** 2
    steepest, min_div10 = suggest_learning_rates(rates.tolist(), losses.tolist())
    assert steepest == pytest.approx(1e-3)
    assert min_div10 == pytest.approx(rates[np.argmin(losses)] / 10)
    assert all(math.isnan(v) for v in suggest_learning_rates([1e-3, 1e-2], [math.nan, math.inf]))
