"""Gradual unfreezing (ULMFiT section 3.3): the schedule, frozen weights staying put, resuming mid-run."""

import pytest
import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

from hf_ulmfit.callbacks import GradualUnfreezingCallback, num_trainable_groups, set_trainable_groups
from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
from hf_ulmfit.modeling_awd_lstm import AWDLSTMForSequenceClassification
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

NUM_GROUPS = 5  # classifier: embedding, LSTM 0, LSTM 1, LSTM 2, head
STEPS_PER_EPOCH = 4


def _classifier(seed: int = 0) -> AWDLSTMForSequenceClassification:
    torch.manual_seed(seed)
    config = AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=3, num_labels=2)
    return AWDLSTMForSequenceClassification(config)


def _examples(count: int = 4 * STEPS_PER_EPOCH) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50, (count, 7), generator=generator)
    return [{"input_ids": row, "labels": torch.tensor(int(row[1] > 26))} for row in ids]


def _args(output_dir, **kwargs) -> ULMFiTTrainingArguments:
    defaults = {
        "output_dir": str(output_dir),
        "learning_rate": 1e-2,
        "per_device_train_batch_size": 4,
        "gradual_unfreezing": True,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return ULMFiTTrainingArguments(**{**defaults, **kwargs})


def _group_snapshot(model) -> list[list[torch.Tensor]]:
    """Copies of each layer group's trainable weights (BatchNorm running statistics are buffers, not included)."""
    return [[p.detach().clone() for p in group.parameters()] for group in model.layer_groups]


def _changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


class _SnapshotEachEpoch(TrainerCallback):
    def __init__(self):
        self.snapshots = []
        self.trainable = []

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        self.snapshots.append(_group_snapshot(model))

    def on_epoch_end(self, args, state, control, model=None, **kwargs):  # what was trainable during the epoch
        self.trainable.append(
            [all(p.requires_grad for p in group.parameters()) for group in model.layer_groups]
        )

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.snapshots.append(_group_snapshot(model))


def test_number_of_trainable_groups_follows_the_epochs():
    assert [num_trainable_groups(epoch, 5) for epoch in (None, 0, 0.5, 1, 1.99, 2, 3, 4, 10)] == [
        1,
        1,
        1,
        2,
        2,
        3,
        4,
        5,
        5,
    ]
    assert [num_trainable_groups(epoch, 3, unfreeze_every_n_epochs=2) for epoch in range(6)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert num_trainable_groups(1.99, 5) == 2
    assert num_trainable_groups(1.9999999999, 5) == 3  # float rounding at an epoch boundary counts as on it


def test_frozen_groups_keep_batchnorm_training():
    model = _classifier()
    set_trainable_groups(model.layer_groups, 1)
    for group in model.layer_groups[:-1]:
        assert not any(p.requires_grad for p in group.parameters())
    assert all(p.requires_grad for p in model.layer_groups[-1].parameters())
    # A BatchNorm inside a frozen group would still train.
    groups = [nn.ModuleList([nn.Linear(2, 2), nn.BatchNorm1d(2)]), nn.ModuleList([nn.Linear(2, 2)])]
    set_trainable_groups(groups, 1)
    assert not groups[0][0].weight.requires_grad
    assert groups[0][1].weight.requires_grad and groups[0][1].bias.requires_grad
    set_trainable_groups(groups, 2)
    assert groups[0][0].weight.requires_grad


def test_one_more_group_trains_each_epoch_and_frozen_weights_do_not_move(tmp_path):
    model = _classifier()
    recorder = _SnapshotEachEpoch()
    trainer = ULMFiTTrainer(
        model=model,
        args=_args(tmp_path, num_train_epochs=3),
        train_dataset=_examples(),
        data_collator=default_data_collator,
        callbacks=[recorder],
    )
    assert any(
        isinstance(callback, GradualUnfreezingCallback) for callback in trainer.callback_handler.callbacks
    )
    trainer.train()

    assert recorder.trainable == [
        [False, False, False, False, True],
        [False, False, False, True, True],
        [False, False, True, True, True],
    ]
    for epoch in range(3):
        before, after = recorder.snapshots[epoch], recorder.snapshots[epoch + 1]
        changed = [_changed(b, a) for b, a in zip(before, after, strict=True)]
        trains = [index >= NUM_GROUPS - 1 - epoch for index in range(NUM_GROUPS)]
        assert changed == trains, f"epoch {epoch}"


def test_unfreezing_without_the_flag_is_off(tmp_path):
    trainer = ULMFiTTrainer(model=_classifier(), args=_args(tmp_path, gradual_unfreezing=False))
    assert not any(isinstance(c, GradualUnfreezingCallback) for c in trainer.callback_handler.callbacks)


def test_resuming_from_a_mid_run_checkpoint_continues_the_schedule(tmp_path):
    def run(output_dir, resume_from_checkpoint=None):
        trainer = ULMFiTTrainer(
            model=_classifier(seed=1),
            args=_args(
                output_dir,
                num_train_epochs=3,
                save_strategy="steps",
                save_steps=6,
                train_sampling_strategy="group_by_length",  # as the classifier stage batches
            ),
            train_dataset=_examples(),
            data_collator=default_data_collator,
        )
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        return trainer.model

    uninterrupted = run(tmp_path / "full")
    # Step 6 = halfway through the second epoch (4 updates per epoch): two groups train when it resumes.
    resumed = run(tmp_path / "resumed", resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-6"))
    for (name, value), resumed_value in zip(
        uninterrupted.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(resumed_value, value, rtol=0, atol=0, msg=name)
    assert [all(p.requires_grad for p in g.parameters()) for g in resumed.layer_groups] == [False, False] + [
        True
    ] * 3


def test_schedule_is_derived_from_the_epoch_of_a_resumed_state(tmp_path):
    from transformers import TrainerControl, TrainerState

    model = _classifier()
    callback = GradualUnfreezingCallback(unfreeze_every_n_epochs=1)
    callback.on_train_begin(_args(tmp_path), TrainerState(epoch=2.5), TrainerControl(), model=model)
    assert [all(p.requires_grad for p in g.parameters()) for g in model.layer_groups] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_refuses_an_optimizer_that_lacks_frozen_parameters(tmp_path):
    model = _classifier()
    model.layer_groups[0].requires_grad_(False)  # frozen before a plain Trainer builds its optimizer
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_examples(),
        data_collator=default_data_collator,
        callbacks=[GradualUnfreezingCallback()],
    )
    with pytest.raises(ValueError, match="never train"):
        trainer.train()
