"""The recipe's stage defaults (one source for the CLI and Python), shipped-model names, and the data files a
stage reads (several training files, extra columns, padding on either side)."""

import copy
import dataclasses
import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import STAGE_LABELS as LABELS
from conftest import STAGE_REVIEWS as REVIEWS
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, train_tokenizer
from hf_ulmfit.cli import parse_stage_arguments
from hf_ulmfit.cpu import cpu_has_native_bf16
from hf_ulmfit.data_files import DataArguments, load_texts
from hf_ulmfit.pretrained import PRETRAINED_ROOT, SHIPPED_MODELS, pretrained_path, resolve_model_name
from hf_ulmfit.recipe import SCHEDULE_FIELDS, few_label_schedule, stage_defaults
from hf_ulmfit.stages import finetune_language_model, pretrain, stage_arguments, train_classifier

QUICK = {
    "report_to": "none",
    "save_strategy": "no",
    "seed": 0,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "disable_tqdm": True,
    "bf16": False,
    "use_cpu": True,
}


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    """A tiny 'pretrained' LM directory with its tokenizer."""
    path = tmp_path_factory.mktemp("lm")
    tokenizer = train_tokenizer(REVIEWS * 4, vocab_size=300, show_progress=False)
    config = AWDLSTMConfig.for_language_model(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, max_len=16
    )
    torch.manual_seed(0)
    AWDLSTMForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    frame = pd.DataFrame({"text": REVIEWS, "label": LABELS})
    # A sampled frame keeps its index, which pandas stores as a column (__index_level_0__) the test file lacks.
    frame.sample(frac=1.0, random_state=0).to_parquet(root / "train.parquet")
    frame.iloc[:8].to_parquet(root / "test.parquet", index=False)
    return root


# -- the recipe ---------------------------------------------------------------------------------------------


def test_stage_defaults_follow_the_paper():
    classifier = stage_defaults("train-classifier")
    assert classifier["learning_rate"] == 1e-2 and classifier["per_device_train_batch_size"] == 64
    assert classifier["paper_adam_betas"] is True and classifier["num_train_epochs"] == 6
    lm = stage_defaults("finetune-lm")
    assert lm["learning_rate"] == 4e-3 and lm["model_name_or_path"] == "awd-lstm-wiki-en"
    assert stage_defaults("pretrain")["discriminative_lr_factor"] == 1.0
    model_args, _, args = stage_arguments("train-classifier", output_dir="out")
    assert (args.adam_beta1, args.adam_beta2) == (0.7, 0.99)  # the paper's Adam (section 4)
    assert (args.stlr_cut_frac, args.stlr_ratio, args.discriminative_lr_factor) == (0.1, 32.0, 2.6)
    # The two measured departures from the paper (hf_ulmfit.recipe's docstring): half its classifier dropouts,
    # every layer group trained from the start.
    assert model_args.dropout_multiplier == 0.5 and args.gradual_unfreezing is False
    assert stage_arguments("finetune-lm", output_dir="out")[0].dropout_multiplier == 1.0
    with pytest.raises(ValueError, match="Unknown stage 'classify'"):
        stage_defaults("classify")


@pytest.mark.parametrize("stage", ["pretrain", "finetune-lm", "train-classifier"])
def test_the_cli_and_python_start_from_the_same_defaults(stage, tmp_path):
    required = ["--train_file", "train.csv", "--output_dir", str(tmp_path)]
    if stage == "train-classifier":
        required += ["--model_name_or_path", "lm"]
    from_cli = parse_stage_arguments(stage, required)
    from_python = stage_arguments(
        stage,
        train_file="train.csv",
        output_dir=str(tmp_path),
        **({"model_name_or_path": "lm"} if stage == "train-classifier" else {}),
    )
    for cli_args, python_args in zip(from_cli, from_python):
        fields = [f.name for f in dataclasses.fields(cli_args) if f.name != "logging_dir"]
        differing = {name for name in fields if getattr(cli_args, name) != getattr(python_args, name)}
        assert not differing, differing
    assert from_cli[2].learning_rate == stage_defaults(stage)["learning_rate"]  # not the Trainer's 5e-5


def test_a_mistyped_argument_names_the_closest_one():
    with pytest.raises(TypeError, match=r"'learnng_rate' \(did you mean 'learning_rate'\?\)"):
        stage_arguments("pretrain", output_dir="out", learnng_rate=1e-3)


def test_bf16_detection_agrees_with_the_cpu_flags():
    flags = (
        next(
            (
                line.split(":", 1)[1].split()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("flags")
            ),
            None,
        )
        if Path("/proc/cpuinfo").exists()
        else None
    )
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this system")
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("gradual_unfreezing", [False, True])
def test_python_stage_trains_every_group_unless_asked_to_unfreeze_gradually(
    gradual_unfreezing, lm_dir, labelled, tmp_path, caplog, capfd
):
    """Two epochs of four groups. The recipe trains every group from the first step, the embedding included;
    with gradual unfreezing (the paper's) the embedding is still frozen at the end. The new head is announced in
    one line, not in a load report of missing keys."""
    caplog.set_level("INFO", logger="hf_ulmfit.stages")
    train_classifier(
        model_name_or_path=str(lm_dir),
        train_file=str(labelled / "train.parquet"),
        validation_file=str(labelled / "test.parquet"),
        output_dir=str(tmp_path),
        num_train_epochs=2,
        **({"gradual_unfreezing": True} if gradual_unfreezing else {}),
        **QUICK,
    )
    trained = load_file(tmp_path / "model.safetensors")
    start = load_file(lm_dir / "model.safetensors")
    key = "awd_lstm.embed_tokens.weight"
    assert torch.equal(trained[key], start[key]) is gradual_unfreezing
    top_lstm = "awd_lstm.layers.1.weight_hh_l0"
    assert not torch.equal(trained[top_lstm], start[top_lstm])
    assert "LOAD REPORT" not in capfd.readouterr().err
    assert "a new classifier head, the LM decoder left out" in caplog.text


def test_stages_leave_the_callers_arguments_as_they_were(lm_dir, tmp_path):
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(REVIEWS * 2) + "\n")
    model_args, data_args, training_args = stage_arguments(
        "finetune-lm",
        model_name_or_path=str(lm_dir),
        train_file=str(data),
        output_dir=str(tmp_path / "lm"),
        max_steps=2,
        **QUICK,
    )
    before = copy.deepcopy(training_args.to_dict())
    finetune_language_model(model_args, data_args, training_args)
    assert training_args.to_dict() == before


# -- shipped models -----------------------------------------------------------------------------------------


def test_a_local_directory_wins_over_a_shipped_name_and_hub_ids_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "awd-lstm-wiki-en").mkdir()
    assert resolve_model_name("awd-lstm-wiki-en") == "awd-lstm-wiki-en"
    assert resolve_model_name("someone/awd-lstm-wiki-en") == "someone/awd-lstm-wiki-en"
    assert resolve_model_name(None) is None
    with pytest.raises(ValueError, match="No shipped model is called 'awd-lstm-wiki-xx'"):
        pretrained_path("awd-lstm-wiki-xx")


SHIPPED = all((PRETRAINED_ROOT / name / "config.json").is_file() for name in SHIPPED_MODELS)


@pytest.mark.skipif(not SHIPPED, reason="the shipped LM's weights are committed once its pretraining is done")
def test_a_shipped_name_resolves_to_its_package_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_model_name("awd-lstm-wiki-en")
    assert path == pretrained_path("awd-lstm-wiki-en") and Path(path).parent == PRETRAINED_ROOT
    assert json.loads((Path(path) / "config.json").read_text())["model_type"] == "awd_lstm"


# -- data files ---------------------------------------------------------------------------------------------


def test_several_training_files_and_globs_are_one_training_set(tmp_path):
    for index in range(3):
        pd.DataFrame({"text": [f"text {index} {row}" for row in range(2)], "extra": index}).to_parquet(
            tmp_path / f"part-{index}.parquet"
        )
    listed = load_texts(
        DataArguments(train_file=[str(tmp_path / "part-2.parquet"), str(tmp_path / "part-0.parquet")]),
        hold_out=False,
    )
    assert listed["train"]["text"] == ["text 2 0", "text 2 1", "text 0 0", "text 0 1"]
    assert listed["train"].column_names == ["text"]
    globbed = load_texts(DataArguments(train_file=str(tmp_path / "part-*.parquet")), hold_out=False)
    assert globbed["train"]["text"] == [f"text {i} {r}" for i in range(3) for r in range(2)]
    with pytest.raises(FileNotFoundError, match=r"No data file matches .*nothing-\*\.parquet"):
        load_texts(DataArguments(train_file=str(tmp_path / "nothing-*.parquet")), hold_out=False)


def test_columns_other_than_text_and_label_are_ignored(labelled):
    raw = load_texts(
        DataArguments(
            train_file=str(labelled / "train.parquet"), validation_file=str(labelled / "test.parquet")
        ),
        needs_labels=True,
    )
    assert "__index_level_0__" in pq.read_schema(labelled / "train.parquet").names
    assert raw["train"].column_names == raw["validation"].column_names == ["text", "label"]


def test_train_classifier_takes_a_pandas_file_and_a_left_padding_tokenizer(lm_dir, labelled, tmp_path):
    left = tmp_path / "left-lm"
    AWDLSTMForCausalLM.from_pretrained(lm_dir).save_pretrained(left)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(left)
    results = train_classifier(
        model_name_or_path=str(left),
        train_file=str(labelled / "train.parquet"),
        validation_file=str(labelled / "test.parquet"),
        output_dir=str(tmp_path / "clas"),
        num_train_epochs=1,
        **QUICK,
    )
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    assert AutoTokenizer.from_pretrained(tmp_path / "clas").padding_side == "left"
    assert os.path.isfile(tmp_path / "clas" / "model.safetensors")


def test_predict_refuses_a_language_model(lm_dir):
    from hf_ulmfit.stages import predict

    with pytest.raises(ValueError, match=rf"{lm_dir}' holds a language model .*hf-ulmfit train-classifier"):
        predict(str(lm_dir), ["A fine film."])


def test_a_resumed_pretrain_keeps_the_tokenizer_of_its_checkpoint(tmp_path):
    """Resuming trains no new tokenizer: the one saved in the checkpoint goes on (a new one, of another size
    here, would not fit the checkpoint's embedding)."""
    data = tmp_path / "general.txt"
    data.write_text("\n".join(REVIEWS * 6) + "\n")
    common = dict(
        train_file=str(data),
        output_dir=str(tmp_path / "lm"),
        config_overrides="embedding_size=8,hidden_size=12,num_hidden_layers=2,bptt=8",
        **{**QUICK, "save_strategy": "steps"},
        save_steps=2,
    )
    pretrain(vocab_size=300, max_steps=2, **common)
    first = AutoTokenizer.from_pretrained(tmp_path / "lm" / "checkpoint-2").get_vocab()
    pretrain(vocab_size=280, max_steps=4, resume_from_checkpoint="true", **common)
    assert AutoTokenizer.from_pretrained(tmp_path / "lm").get_vocab() == first
    assert len(first) == 300  # a tokenizer trained anew would have 280


# -- the few-label schedule ---------------------------------------------------------------------------------


def test_few_label_schedule_gives_small_training_sets_more_steps_than_the_paper():
    """Up to 1,000 examples the schedule trains more steps than the paper's batch 64 and 6 epochs (at least
    twice as many from 100 examples); above, the paper's schedule stands."""
    paper = stage_defaults("train-classifier")
    for size in (10, 100, 101, 500, 1000):
        schedule = few_label_schedule(size)
        steps = math.ceil(size / schedule["per_device_train_batch_size"]) * schedule["num_train_epochs"]
        paper_steps = math.ceil(size / paper["per_device_train_batch_size"]) * paper["num_train_epochs"]
        assert steps > paper_steps * (2 if size >= 100 else 1)
    assert few_label_schedule(1001) is None and few_label_schedule(25000) is None
    assert set(few_label_schedule(100)) <= set(SCHEDULE_FIELDS)


@pytest.mark.parametrize(
    "flags, values, expected",
    [
        ([], {}, True),
        (["--learning_rate", "2e-2"], {"learning_rate": 2e-2}, True),
        (["--num_train_epochs", "3"], {"num_train_epochs": 3}, False),
        (["--per_device_train_batch_size=8"], {"per_device_train_batch_size": 8}, False),
        (["--dropout_multiplier", "0.3"], {"dropout_multiplier": 0.3}, True),
        (["--max_steps", "50"], {"max_steps": 50}, False),
        (["--few_label_schedule", "false"], {"few_label_schedule": False}, False),
        (
            ["--num_train_epochs", "3", "--few_label_schedule", "true"],
            {"num_train_epochs": 3, "few_label_schedule": True},
            True,
        ),
    ],
)
def test_giving_a_schedule_value_turns_the_few_label_schedule_off(flags, values, expected, tmp_path):
    """The same rule on the command line and in Python: a value the schedule sets, given by the user, means the
    user chooses the schedule; ``few_label_schedule`` given explicitly wins."""
    required = ["--model_name_or_path", "lm", "--train_file", "t.csv", "--output_dir", str(tmp_path)]
    assert parse_stage_arguments("train-classifier", required + flags)[2].few_label_schedule is expected
    assert stage_arguments("train-classifier", output_dir="out", **values)[2].few_label_schedule is expected
    assert "few_label_schedule" not in stage_defaults("finetune-lm")  # a classifier-stage default only


@pytest.mark.parametrize("few_label", [True, False])
def test_few_labels_train_with_the_few_label_schedule(few_label, lm_dir, labelled, tmp_path):
    """24 labelled reviews: batch 16 for 10 epochs (20 steps), against the paper's batch 64 for 6 epochs (6
    steps); the trainer's own state says which ran. Either way the recipe halves the paper's dropouts."""
    quick = {k: v for k, v in QUICK.items() if k not in SCHEDULE_FIELDS}
    train_classifier(
        model_name_or_path=str(lm_dir),
        train_file=str(labelled / "train.parquet"),
        validation_file=str(labelled / "test.parquet"),
        output_dir=str(tmp_path),
        few_label_schedule=few_label,
        eval_strategy="no",
        **quick,
    )
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    config = json.loads((tmp_path / "config.json").read_text())
    batch, epochs = (16, 10) if few_label else (64, 6)
    assert (state["train_batch_size"], state["global_step"]) == (batch, math.ceil(24 / batch) * epochs)
    assert config["output_dropout"] == pytest.approx(AWDLSTMConfig.for_classifier().output_dropout * 0.5)
