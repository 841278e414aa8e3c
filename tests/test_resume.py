"""Atomic saving, and runs killed (SIGKILL) and resumed: the previous checkpoint or model stays loadable, and
each ``hf-ulmfit`` stage resumed from its checkpoint ends with the weights of the uninterrupted run.

The runs to kill, and the CLI runs, are processes of their own, forked from a ``multiprocessing`` fork server that
has already imported the package (starting one costs no import time). ``KillAtStep`` and
``kill_while_writing_weights`` SIGKILL them at a given point.
"""

import multiprocessing
import os
import shutil
import signal
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback, default_data_collator
from transformers.trainer_utils import get_last_checkpoint

from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
from hf_ulmfit.data import LanguageModelStream
from hf_ulmfit.modeling_awd_lstm import AWDLSTMForCausalLM
from hf_ulmfit.saving import STAGING_DIR_NAME
from hf_ulmfit.trainer import RECURRENT_STATE_NAME, ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

KILLED = -signal.SIGKILL  # multiprocessing's exit code of a process killed by SIGKILL

# -- running in a process of its own, and killing it -------------------------------------------------------------

_server = multiprocessing.get_context("forkserver")
_server.set_forkserver_preload(["hf_ulmfit.cli"])


def run_in_process(target, *args, log: Path) -> int:
    """Runs ``target(*args)`` in a new process, its output in ``log``; returns the exit code."""
    process = _server.Process(target=_logged, args=(log, target, *args))
    process.start()
    process.join(timeout=300)
    if process.exitcode is None:
        process.kill()
        pytest.fail(f"{target}{args} did not finish in 300 s")
    return process.exitcode


def _logged(log: Path, target, *args) -> None:
    file = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(file, 1)
    os.dup2(file, 2)
    torch.set_num_threads(1)  # as in the tests' own process (one_thread)
    target(*args)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread, here and in the runs' processes: the fastest for these tiny models, without contention for
    the cores, and the same arithmetic everywhere (the runs are compared bit for bit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class KillAtStep(TrainerCallback):
    """SIGKILLs the training process at the end of optimizer step ``step`` (after any checkpoint of that step)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordSteps(TrainerCallback):
    """The optimizer steps a run makes."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def kill_while_writing_weights(path_contains: str) -> None:
    """From now on, the first weights file written whose path contains ``path_contains`` gets half its bytes
    before the process is SIGKILLed: a run killed in the middle of saving."""
    import transformers.modeling_utils

    write = transformers.modeling_utils.safe_save_file

    def write_half_then_die(tensors, filename, *args, **kwargs):
        write(tensors, filename, *args, **kwargs)
        if path_contains in str(filename):
            os.truncate(filename, os.path.getsize(filename) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    transformers.modeling_utils.safe_save_file = write_half_then_die


def assert_same_weights(path, reference_path) -> None:
    """Bit-identical ``model.safetensors`` tensors."""
    weights = load_file(Path(path) / "model.safetensors")
    reference = load_file(Path(reference_path) / "model.safetensors")
    assert weights.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=0, msg=name)


def log_tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else ""


# -- atomic saving (ULMFiTTrainer) ---------------------------------------------------------------------------------


def lm_trainer(output_dir, seed: int = 0, **kwargs) -> ULMFiTTrainer:
    """A tiny LM with dropout on a variable-BPTT stream: 10 updates per epoch, a checkpoint every 4."""
    torch.manual_seed(seed)
    model = AWDLSTMForCausalLM(
        AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=2)
    )
    tokens = torch.randint(4, 50, (240,), generator=torch.Generator().manual_seed(1))
    args = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "train_sampling_strategy": "sequential",
        "dataloader_drop_last": True,
        "learning_rate": 1e-2,
        "num_train_epochs": 1,
        "save_strategy": "steps",
        "save_steps": 4,
        "use_cpu": True,
        "report_to": [],
        "disable_tqdm": True,
        "seed": 0,
    }
    return ULMFiTTrainer(
        model=model,
        args=ULMFiTTrainingArguments(**{**args, **kwargs}),
        train_dataset=LanguageModelStream(tokens, 4, bptt=6, variable_bptt=True, seed=2),
        data_collator=default_data_collator,
    )


def train_and_save(output_dir, kill_in_path: str | None = None, seed: int = 0, **kwargs) -> None:
    """Trains ``lm_trainer`` and saves the model; with ``kill_in_path``, dies while writing such a weights file."""
    if kill_in_path is not None:
        kill_while_writing_weights(kill_in_path)
    trainer = lm_trainer(output_dir, seed=seed, **kwargs)
    trainer.train()
    trainer.save_model()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run the interrupted ones must reproduce: checkpoints 4 and 8, the model after 10 updates."""
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    train_and_save(output_dir)
    return output_dir


def test_killed_while_writing_a_checkpoint_leaves_the_previous_one(uninterrupted, tmp_path):
    log = tmp_path / "log.txt"
    assert run_in_process(train_and_save, tmp_path, "checkpoint-8", log=log) == KILLED, log_tail(log)

    # checkpoint-8 died half-written where nobody looks for checkpoints; checkpoint-4 is whole, and it is what
    # transformers' own get_last_checkpoint finds.
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]
    assert (tmp_path / STAGING_DIR_NAME / "checkpoint-8").is_dir()
    assert get_last_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert (tmp_path / "checkpoint-4" / RECURRENT_STATE_NAME).is_file()
    assert_same_weights(tmp_path / "checkpoint-4", uninterrupted / "checkpoint-4")
    AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint-4")

    trainer = lm_trainer(tmp_path)
    trainer.train(resume_from_checkpoint=True)
    trainer.save_model()
    assert_same_weights(tmp_path, uninterrupted)
    assert not (tmp_path / STAGING_DIR_NAME).exists()  # the leftovers went with the next save
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-10",
        "checkpoint-4",
        "checkpoint-8",
    ]


def test_killed_while_saving_the_model_leaves_the_previous_model(uninterrupted, tmp_path):
    # The model already in output_dir, and another one (seed 1) saved over it, killed while writing its weights.
    shutil.copytree(
        uninterrupted, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*")
    )
    log = tmp_path / "log.txt"
    another = partial(train_and_save, tmp_path, "model.safetensors", seed=1, save_strategy="no")
    assert run_in_process(another, log=log) == KILLED, log_tail(log)
    assert (tmp_path / STAGING_DIR_NAME / "model" / "model.safetensors").is_file()  # the half-written weights

    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    reference = load_file(uninterrupted / "model.safetensors")
    for name, value in reference.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_resuming_from_the_last_checkpoint_skips_an_incomplete_one(uninterrupted, tmp_path, caplog):
    """A checkpoint without its trainer state (as a plain Trainer killed while saving leaves it) is passed over."""
    for name in ("checkpoint-4", "checkpoint-8"):
        shutil.copytree(uninterrupted / name, tmp_path / name)
    incomplete = tmp_path / "checkpoint-9"
    incomplete.mkdir()
    (incomplete / "model.safetensors").write_bytes(
        (tmp_path / "checkpoint-8" / "model.safetensors").read_bytes()[:100]
    )

    trainer = lm_trainer(tmp_path)
    steps = RecordSteps()
    trainer.add_callback(steps)
    trainer.train(resume_from_checkpoint=True)
    trainer.save_model()
    assert f"Skipping {incomplete}" in caplog.text
    assert "missing keys" not in caplog.text  # the tied decoder weight, not saved, is tied again
    assert trainer.model.decoder.weight is trainer.model.awd_lstm.embed_tokens.weight
    assert steps.steps == [9, 10]  # resumed from checkpoint-8
    assert_same_weights(tmp_path, uninterrupted)


# -- each CLI stage killed and resumed ---------------------------------------------------------------------------

GENERAL = [
    "The river of the old city is long and many visitors walk along it in the summer.",
    "A church stands on the hill; its bells ring every morning at seven.",
    "The market opens early, and farmers sell bread, cheese and apples.",
    "Children walk to the school over the stone bridge.",
    "In winter the houses are quiet and the streets are covered with snow.",
]
REVIEWS = [
    ("Great.", "pos"),
    ("Awful film.", "neg"),
    ("I loved every minute of it, the actors were superb.", "pos"),
    ("Boring, long and badly acted; I nearly left the cinema.", "neg"),
    ("A wonderful story with a fine cast.", "pos"),
    ("Weak.", "neg"),
    ("Enjoyable from start to end.", "pos"),
    ("The plot made no sense and the jokes fell flat every single time they tried one.", "neg"),
] * 2
TINY_MODEL = "embedding_size=8,hidden_size=12,num_hidden_layers=2,bptt=8,max_len=16"
COMMON = ["--report_to", "none", "--seed", "0", "--disable_tqdm", "true", "--save_strategy", "steps"]
COMMON += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4"]


def hf_ulmfit(argv: list[str], kill_at_step: int | None = None) -> None:
    """``hf-ulmfit ARGV``; with ``kill_at_step``, the process is SIGKILLed at the end of that optimizer step."""
    from hf_ulmfit import cli, stages

    if kill_at_step is not None:
        stages.ULMFiTTrainer = partial(stages.ULMFiTTrainer, callbacks=[KillAtStep(kill_at_step)])
    sys.exit(cli.main(argv))


def run_ok(argv: list[str], output_dir: Path) -> Path:
    """``hf-ulmfit ARGV --output_dir OUTPUT_DIR``, to the end."""
    log = output_dir.parent / f"{output_dir.name}.log"
    assert run_in_process(hf_ulmfit, [*argv, "--output_dir", str(output_dir)], log=log) == 0, log_tail(log)
    return output_dir


def run_killed(argv: list[str], output_dir: Path, kill_at_step: int) -> Path:
    """``hf-ulmfit ARGV --output_dir OUTPUT_DIR``, SIGKILLed at the end of step ``kill_at_step``."""
    log = output_dir.parent / f"{output_dir.name}.log"
    argv = [*argv, "--output_dir", str(output_dir)]
    assert run_in_process(hf_ulmfit, argv, kill_at_step, log=log) == KILLED, log_tail(log)
    assert not (output_dir / "model.safetensors").exists()  # killed before the end
    return output_dir


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "general.txt").write_text("\n".join(GENERAL[:3]) + "\n")
    (root / "general-valid.txt").write_text(GENERAL[3] + "\n")
    reviews = pd.DataFrame(REVIEWS, columns=["text", "label"])
    reviews.to_csv(root / "reviews.csv", index=False)
    reviews[:4].to_csv(root / "reviews-valid.csv", index=False)
    return root


def reviews_argv(files: Path) -> list[str]:
    """The task's data, for stages 2 and 3: 16 labelled reviews and 4 for evaluation."""
    return ["--train_file", str(files / "reviews.csv"), "--validation_file", str(files / "reviews-valid.csv")]


def pretrain_argv(files: Path) -> list[str]:
    """Stage 1: 6 updates per epoch, 2 epochs, a checkpoint every 3."""
    argv = ["pretrain", "--train_file", str(files / "general.txt"), "--validation_file"]
    argv += [str(files / "general-valid.txt"), "--vocab_size", "300", "--config_overrides", TINY_MODEL]
    return [*argv, "--num_train_epochs", "2", "--save_steps", "3", *COMMON]


@pytest.fixture(scope="module")
def pretrained(files, tmp_path_factory) -> Path:
    """Stage 1 run to the end (the uninterrupted run, and the LM of stages 2 and 3)."""
    return run_ok(pretrain_argv(files), tmp_path_factory.mktemp("pretrain") / "uninterrupted")


def test_pretrain_killed_and_resumed(files, pretrained, tmp_path):
    argv = pretrain_argv(files)
    resumed = run_killed(argv, tmp_path / "resumed", kill_at_step=4)
    run_ok([*argv, "--resume_from_checkpoint", str(resumed / "checkpoint-3")], resumed)
    assert_same_weights(resumed, pretrained)
    # The tokenizer is trained again when resuming: deterministically, so the ids are those of the checkpoint.
    tokenizer = (pretrained / "tokenizer.json").read_text()
    assert (resumed / "checkpoint-3" / "tokenizer.json").read_text() == tokenizer
    assert (resumed / "tokenizer.json").read_text() == tokenizer


def test_finetune_lm_killed_and_resumed_from_the_last_checkpoint(files, pretrained, tmp_path):
    """4 updates per epoch, 2 epochs, a checkpoint every 2: killed at step 5, resumed with ``true``."""
    argv = ["finetune-lm", "--model_name_or_path", str(pretrained), "--max_train_samples", "4"]
    argv += reviews_argv(files)
    argv += ["--learning_rate", "1e-2", "--num_train_epochs", "2", "--save_steps", "2", *COMMON]
    full = run_ok(argv, tmp_path / "uninterrupted")
    resumed = run_killed(argv, tmp_path / "resumed", kill_at_step=5)
    (resumed / "checkpoint-2" / "model.safetensors").unlink()  # resuming from it would fail: -4 is the last
    run_ok([*argv, "--resume_from_checkpoint", "true"], resumed)
    assert_same_weights(resumed, full)


def test_train_classifier_killed_and_resumed_mid_unfreezing(files, pretrained, tmp_path):
    """Gradual unfreezing (4 layer groups, one more each epoch) and length-grouped batches: 4 updates per
    epoch, 3 epochs, a checkpoint every 3; killed in the second epoch, resumed from checkpoint-6."""
    argv = ["train-classifier", "--model_name_or_path", str(pretrained), "--learning_rate", "1e-2"]
    argv += reviews_argv(files)
    argv += ["--gradual_unfreezing", "true", "--num_train_epochs", "3", "--save_steps", "3", *COMMON]
    full = run_ok(argv, tmp_path / "uninterrupted")
    resumed = run_killed(argv, tmp_path / "resumed", kill_at_step=7)
    run_ok([*argv, "--resume_from_checkpoint", str(resumed / "checkpoint-6")], resumed)
    assert_same_weights(resumed, full)
