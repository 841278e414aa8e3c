"""Several processes: the LM stream's shards, and the three stages under ``torchrun`` (DDP, gloo on CPU).

The ``torchrun`` job runs ``distributed_stages.py`` in 2 processes, each running the ``hf-ulmfit`` stages in turn;
the test then checks that both processes end with the same weights, that each read its own rows of the LM stream,
that 2 processes of batch B train and evaluate as one process of batch 2B does, that a resumed run continues each
process's recurrent state, and that gradual unfreezing leaves frozen groups untouched.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from safetensors.torch import load_file
from torch.utils.data import BatchSampler, SequentialSampler
from transformers import AutoTokenizer, HfArgumentParser, default_data_collator

from conftest import STAGE_LABELS as LABELS
from conftest import STAGE_REVIEWS as REVIEWS
from conftest import STAGE_TINY_MODEL as TINY_MODEL
from hf_ulmfit.callbacks import _check_distributed_arguments
from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
from hf_ulmfit.data import LanguageModelStream, language_model_stream
from hf_ulmfit.data_files import DataArguments, load_texts
from hf_ulmfit.modeling_awd_lstm import AWDLSTMForCausalLM
from hf_ulmfit.recipe import stage_defaults
from hf_ulmfit.stages import ModelArguments, finetune_language_model
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

HELPER = Path(__file__).with_name("distributed_stages.py")
PROCESSES = 2
ROWS = 2  # per process in the LM stages
GENERAL = [
    f"The {w} of the {p} is {n} years old and it has many {x}."
    for w in ("river", "church", "bridge", "market", "school", "garden")
    for p in ("city", "village", "valley")
    for n in (12, 40, 300)
    for x in ("visitors", "stories", "trees")
]
# On CPU, accelerate joins the processes with gloo.
COMMON = ["--report_to", "none", "--seed", "0", "--disable_tqdm", "true", "--use_cpu", "true"]
LM_STAGE = ["--per_device_train_batch_size", str(ROWS), "--per_device_eval_batch_size", str(ROWS)]
FINETUNE_SAVE_STEPS = 3


# -- the LM stream's shards --------------------------------------------------------------------------------


def _process_batches(dataset: LanguageModelStream, process: int) -> list[dict[str, torch.Tensor]]:
    """The batches accelerate gives ``process``: the Trainer's sequential batches, sharded by BatchSamplerShard."""
    batches = BatchSampler(SequentialSampler(dataset), dataset.batch_size, drop_last=True)
    shard = BatchSamplerShard(batches, num_processes=dataset.num_shards, process_index=process)
    return [default_data_collator([dataset[i] for i in indices]) for indices in shard]


def test_each_process_reads_its_own_contiguous_rows():
    stream = torch.arange(1000)
    dataset = LanguageModelStream(stream, batch_size=3, bptt=7, variable_bptt=True, seed=1, num_shards=2)
    single = LanguageModelStream(stream, batch_size=6, bptt=7, variable_bptt=True, seed=1)
    row_length = len(stream) // 6  # 6 rows: 3 per process
    for process in range(2):
        batches = _process_batches(dataset, process)
        assert len(batches) == len(dataset.windows)  # one batch per window for each process
        for row in range(3):
            inputs = torch.cat([batch["input_ids"][row] for batch in batches])
            targets = torch.cat([batch["shift_labels"][row] for batch in batches])
            start = (process * 3 + row) * row_length  # row `row` of this process = row process*3+row overall
            assert torch.equal(inputs, stream[start : start + len(inputs)])
            assert torch.equal(targets, stream[start + 1 : start + len(inputs) + 1])
        # Together the processes read what one process reading all 6 rows reads.
        for batch, whole in zip(batches, _process_batches(single, 0), strict=True):
            assert torch.equal(batch["input_ids"], whole["input_ids"][process * 3 : (process + 1) * 3])


def test_stream_cut_for_another_number_of_processes_is_rejected(tmp_path):
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12))
    args = ULMFiTTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        train_sampling_strategy="sequential",
        use_cpu=True,
        report_to=[],
    )
    dataset = LanguageModelStream(torch.randint(4, 50, (200,)), batch_size=2, bptt=5, num_shards=2)
    trainer = ULMFiTTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=default_data_collator
    )
    with pytest.raises(ValueError, match="num_shards=training_args.world_size"):
        trainer.get_train_dataloader()


def test_gradual_unfreezing_needs_ddp_to_find_unused_parameters():
    ddp = {"world_size": 2, "ddp_find_unused_parameters": None, "ddp_static_graph": None}
    _check_distributed_arguments(SimpleNamespace(**ddp))  # the Trainer's default: fine
    for wrong in ({"ddp_find_unused_parameters": False}, {"ddp_static_graph": True}):
        with pytest.raises(ValueError, match="ddp_find_unused_parameters"):
            _check_distributed_arguments(SimpleNamespace(**{**ddp, **wrong}))
    _check_distributed_arguments(
        SimpleNamespace(**{**ddp, "world_size": 1, "ddp_find_unused_parameters": False})
    )


# -- the three stages under torchrun -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Runs the stages in 2 processes; returns the folder holding the data and every stage's output."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "general.txt").write_text("\n".join(GENERAL) + "\n")
    (root / "general_valid.txt").write_text("\n".join(GENERAL[::7]) + "\n")
    pd.DataFrame({"review": REVIEWS}).to_json(root / "reviews.jsonl", orient="records", lines=True)
    pd.DataFrame({"review": REVIEWS[::3]}).to_json(root / "reviews_valid.jsonl", orient="records", lines=True)
    pd.DataFrame({"review": REVIEWS, "sentiment": LABELS}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"review": REVIEWS[:8], "sentiment": LABELS[:8]}).to_csv(root / "valid.csv", index=False)
    stages = [
        ["pretrain", _pretrain_argv(root)],
        ["finetune-lm", _finetune_argv(root, "lm")],
        ["finetune-lm", [*_finetune_argv(root, "lm-resumed"), "--resume_from_checkpoint", _checkpoint(root)]],
        ["train-classifier", _classifier_argv(root)],
        ["classifier+refrozen", _refrozen_argv(root)],
    ]
    (root / "runs.json").write_text(json.dumps(stages))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}"]
    result = subprocess.run(
        [*command, str(HELPER), str(root / "runs.json")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return root


def _pretrain_argv(root: Path) -> list[str]:
    """6 steps in bf16 mixed precision."""
    return [
        "pretrain", "--train_file", str(root / "general.txt"), "--validation_file", str(root / "general_valid.txt"),
        "--vocab_size", "300", "--config_overrides", TINY_MODEL, "--output_dir", str(root / "pretrained"),
        "--save_strategy", "no", "--max_steps", "6", "--bf16", "true", *LM_STAGE, *COMMON,
    ]  # fmt: skip


def _finetune_argv(root: Path, output: str) -> list[str]:
    """7 steps of LM fine-tuning in fp32 without dropout (so one process of batch 2B can reproduce it up to
    rounding), checkpoints every 3 steps."""
    return [
        "finetune-lm", "--model_name_or_path", str(root / "pretrained"), "--output_dir", str(root / output),
        "--train_file", str(root / "reviews.jsonl"), "--validation_file", str(root / "reviews_valid.jsonl"),
        "--text_column_name", "review", "--dropout_multiplier", "0", "--learning_rate", "1e-2",
        "--max_steps", "7", "--logging_steps", "1", "--save_strategy", "steps",
        "--save_steps", str(FINETUNE_SAVE_STEPS), "--bf16", "false", *LM_STAGE, *COMMON,
    ]  # fmt: skip


def _checkpoint(root: Path) -> str:
    return str(root / "lm" / f"checkpoint-{FINETUNE_SAVE_STEPS}")


def _classifier_argv(root: Path) -> list[str]:
    """Two epochs of gradual unfreezing (4 layer groups) in bf16: the embedding and LSTM 0 stay frozen all along;
    weight decay would move them if frozen parameters got zero gradients instead of none."""
    return [
        "train-classifier", "--model_name_or_path", str(root / "lm"), "--output_dir", str(root / "classifier"),
        "--train_file", str(root / "train.csv"), "--validation_file", str(root / "valid.csv"),
        "--text_column_name", "review", "--label_column_name", "sentiment", "--num_train_epochs", "2",
        "--gradual_unfreezing", "true", "--weight_decay", "0.1", "--learning_rate", "1e-2", "--save_strategy", "no", "--bf16", "true",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", *COMMON,
    ]  # fmt: skip


def _refrozen_argv(root: Path) -> list[str]:
    """The classifier again, from the state the stage left (embedding and LSTM 0 frozen when DDP wraps the
    model), for 3 epochs: LSTM 0 is unfrozen at the third."""
    return [
        "--output_dir", str(root / "refrozen"), "--gradual_unfreezing", "--num_train_epochs", "3",
        "--train_sampling_strategy", "group_by_length", "--learning_rate", "1e-2", "--save_strategy", "no",
        "--per_device_train_batch_size", "4", *COMMON,
    ]  # fmt: skip


def _processes(output_dir: Path) -> list[dict]:
    return [json.loads((output_dir / f"process_{rank}.json").read_text()) for rank in range(PROCESSES)]


def _weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "model.safetensors")


@pytest.mark.parametrize("stage", ["pretrained", "lm", "lm-resumed", "classifier", "refrozen"])
def test_every_process_ends_with_the_same_weights_and_tokenizer(runs, stage):
    first, second = _processes(runs / stage)
    assert first["weights"] == second["weights"]  # parameters and buffers (BatchNorm statistics), bit for bit
    assert first["tokenizer"] == second["tokenizer"]  # the tokenizer pretrain trains in each process
    assert first["first_inputs"] != second["first_inputs"]  # ... from different data


def test_each_process_reads_its_own_rows_of_the_stream(runs):
    """The batches each process trained on are its half of the rows of the single-process stream of 2B rows."""
    tokenizer = AutoTokenizer.from_pretrained(runs / "pretrained")
    raw = load_texts(
        DataArguments(train_file=str(runs / "reviews.jsonl"), text_column_name="review"), hold_out=False
    )
    config = AWDLSTMConfig.from_pretrained(runs / "pretrained")
    whole = language_model_stream(
        raw["train"],
        tokenizer,
        PROCESSES * ROWS,
        bptt=config.bptt,
        variable_bptt=True,
        seed=0,
        text_column="review",
        shuffle_documents=True,
    )
    for rank, process in enumerate(_processes(runs / "lm")):
        for step, inputs in enumerate(process["first_inputs"]):
            batch = default_data_collator([whole[step * whole.num_rows + i] for i in range(whole.num_rows)])
            assert inputs == batch["input_ids"][rank * ROWS : (rank + 1) * ROWS].tolist()


def test_two_processes_of_batch_b_train_as_one_process_of_batch_2b(runs, tmp_path):
    """Without dropout, DDP's averaged gradients of two B-row halves are the gradient of the 2B-row batch: the
    same losses step by step, the same evaluation loss and (up to rounding) the same weights."""
    argv = _finetune_argv(runs, "unused")[1:]
    model_args, data_args, args = _parse(argv)
    args.output_dir = str(tmp_path)
    args.save_strategy = "no"
    args.per_device_train_batch_size = args.per_device_eval_batch_size = PROCESSES * ROWS
    single = finetune_language_model(model_args, data_args, args)

    distributed = json.loads((runs / "lm" / "all_results.json").read_text())
    assert distributed["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-5)
    losses = {run: _step_losses(path) for run, path in (("ddp", runs / "lm"), ("single", tmp_path))}
    assert len(losses["ddp"]) == len(losses["single"]) > FINETUNE_SAVE_STEPS
    assert losses["ddp"] == pytest.approx(losses["single"], rel=1e-4)
    reference = _weights(tmp_path)
    for name, value in _weights(runs / "lm").items():
        torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-5)


def _parse(argv: list[str]):
    parser = HfArgumentParser((ModelArguments, DataArguments, ULMFiTTrainingArguments))
    parser.set_defaults(**stage_defaults("finetune-lm"))
    return parser.parse_args_into_dataclasses(argv)


def _step_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_a_resumed_run_continues_each_process_state(runs):
    """Each process saved the state of its own rows, and resumed from it: the same weights as without a stop."""
    assert {path.name for path in Path(_checkpoint(runs)).glob("recurrent_state*")} == {
        "recurrent_state_0.pt",
        "recurrent_state_1.pt",
    }
    resumed, uninterrupted = _weights(runs / "lm-resumed"), _weights(runs / "lm")
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)
    assert _processes(runs / "lm-resumed")[0]["weights"] == _processes(runs / "lm")[0]["weights"]


def test_gradual_unfreezing_leaves_frozen_groups_untouched(runs):
    lm, classifier, refrozen = (
        _weights(runs / "lm"),
        _weights(runs / "classifier"),
        _weights(runs / "refrozen"),
    )
    lstm0, lstm1 = "awd_lstm.layers.0.weight_hh_l0", "awd_lstm.layers.1.weight_hh_l0"
    embedding = "awd_lstm.embed_tokens.weight"
    # Two epochs: the head, then LSTM 1 too; the embedding and LSTM 0 never train (weight decay included).
    assert torch.equal(classifier[embedding], lm[embedding]) and torch.equal(classifier[lstm0], lm[lstm0])
    assert not torch.equal(classifier[lstm1], lm[lstm1])
    # Three more epochs from that state: LSTM 0 unfreezes at the third (and is averaged across processes,
    # which test_every_process_ends_with_the_same_weights_and_tokenizer checks); the embedding stays.
    assert torch.equal(refrozen[embedding], lm[embedding])
    assert not torch.equal(refrozen[lstm0], lm[lstm0])
