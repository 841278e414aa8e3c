"""Each ``hf-ulmfit`` stage end to end in a subprocess, on tiny data, as a user runs it."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

import hf_ulmfit  # noqa: F401  (registers awd_lstm with the Auto classes)
from conftest import STAGE_LABELS as LABELS
from conftest import STAGE_REVIEWS as REVIEWS
from conftest import STAGE_TINY_MODEL as TINY_MODEL

GENERAL = [
    f"The {w} of the city is {n} years old and it has many {x}."
    for w in ("river", "church", "bridge", "market", "school")
    for n in (12, 40, 300)
    for x in ("visitors", "stories", "trees", "houses")
]
COMMON = [
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--num_train_epochs",
    "1",
    "--seed",
    "0",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--disable_tqdm",
    "true",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hf_ulmfit.cli", *args], capture_output=True, text=True, timeout=300
    )


def run_ok(*args: str) -> subprocess.CompletedProcess:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "general.txt").write_text("\n".join(GENERAL * 3) + "\n")
    pd.DataFrame({"review": REVIEWS * 2}).to_json(root / "reviews.jsonl", orient="records", lines=True)
    pd.DataFrame({"review": REVIEWS, "sentiment": LABELS}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"review": REVIEWS[:8], "sentiment": LABELS[:8]}).to_csv(root / "valid.csv", index=False)
    pd.DataFrame({"review": REVIEWS[:8], "sentiment": ["pos"] * 7 + ["meh"]}).to_csv(
        root / "unseen.csv", index=False
    )
    pd.DataFrame({"text": ["I loved it", "Awful acting"]}).to_parquet(root / "new.parquet")
    return root


def test_three_stages_and_predict(files, tmp_path):
    pretrained, finetuned, classifier = tmp_path / "1-pretrain", tmp_path / "2-lm", tmp_path / "3-clas"

    run_ok(
        "pretrain",
        "--train_file",
        str(files / "general.txt"),
        "--vocab_size",
        "300",
        "--config_overrides",
        TINY_MODEL,
        "--output_dir",
        str(pretrained),
        *COMMON,
    )
    results = json.loads((pretrained / "all_results.json").read_text())
    assert results["eval_perplexity"] == pytest.approx(
        torch.tensor(results["eval_loss"]).exp().item(), rel=1e-4
    )
    lm = AutoModelForCausalLM.from_pretrained(pretrained)
    assert (lm.config.hidden_size, lm.config.num_hidden_layers, lm.config.bptt) == (12, 2, 8)
    assert lm.config.vocab_size == len(AutoTokenizer.from_pretrained(pretrained))

    run_ok(
        "finetune-lm",
        "--model_name_or_path",
        str(pretrained),
        "--train_file",
        str(files / "reviews.jsonl"),
        "--text_column_name",
        "review",
        "--output_dir",
        str(finetuned),
        "--learning_rate",
        "1e-2",
        *COMMON,
    )
    assert "eval_perplexity" in json.loads((finetuned / "eval_results.json").read_text())
    tuned = AutoModelForCausalLM.from_pretrained(finetuned)
    assert not torch.equal(tuned.awd_lstm.layers[0].weight_hh_l0, lm.awd_lstm.layers[0].weight_hh_l0)

    run_ok(
        "train-classifier",
        "--model_name_or_path",
        str(finetuned),
        "--train_file",
        str(files / "train.csv"),
        "--validation_file",
        str(files / "valid.csv"),
        "--text_column_name",
        "review",
        "--label_column_name",
        "sentiment",
        "--output_dir",
        str(classifier),
        *COMMON,
    )
    results = json.loads((classifier / "all_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and "eval_macro_f1" in results
    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.input_dropout == pytest.approx(0.2)  # the recipe: half the paper's 0.4
    scores = pipeline("text-classification", model=str(classifier))(["I loved it"], top_k=None)[0]
    assert {s["label"] for s in scores} == {"neg", "pos"}

    out = tmp_path / "predictions.jsonl"
    run_ok(
        "predict",
        "--model_name_or_path",
        str(classifier),
        "--input_file",
        str(files / "new.parquet"),
        "--output_file",
        str(out),
    )
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["text"] for p in predictions] == ["I loved it", "Awful acting"]
    expected = pipeline("text-classification", model=str(classifier))(["I loved it", "Awful acting"])
    assert [p["label"] for p in predictions] == [e["label"] for e in expected]
    assert [p["score"] for p in predictions] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def test_bad_input_gets_a_clear_error(files, tmp_path):
    missing = run_cli(
        "pretrain",
        "--train_file",
        str(files / "reviews.jsonl"),
        "--output_dir",
        str(tmp_path),
        "--vocab_size",
        "300",
        *COMMON,
    )
    assert missing.returncode == 2 and "has no column ['text']" in missing.stderr
    assert "Traceback" not in missing.stderr

    unknown = run_cli(
        "finetune-lm",
        "--model_name_or_path",
        str(tmp_path),
        "--train_file",
        str(files / "data.xlsx"),
        "--output_dir",
        str(tmp_path),
        *COMMON,
    )
    assert unknown.returncode == 2 and "Cannot read" in unknown.stderr

    absent = run_cli("pretrain", "--train_file", str(files / "absent.csv"), "--output_dir", str(tmp_path))
    assert (
        absent.returncode == 2 and "No such data file" in absent.stderr and "Traceback" not in absent.stderr
    )

    mistyped = run_cli(
        "pretrain", "--train_file", "x.csv", "--output_dir", str(tmp_path), "--learnng_rate", "1"
    )
    assert mistyped.returncode == 2 and "Traceback" not in mistyped.stderr
    assert "--learnng_rate (did you mean --learning_rate?)" in mistyped.stderr

    abbreviated = run_cli(
        "pretrain", "--train_file", "x.csv", "--output_dir", str(tmp_path), "--num_train_epoch", "2"
    )
    assert (
        abbreviated.returncode == 2
        and "--num_train_epoch (did you mean --num_train_epochs?)" in abbreviated.stderr
    )

    usage = run_cli("no-such-command")
    assert usage.returncode == 2 and "unknown command" in usage.stderr


def test_unseen_validation_labels_are_named(files):
    from hf_ulmfit.data_files import DataArguments, label_names, load_texts

    data = DataArguments(
        train_file=str(files / "train.csv"),
        validation_file=str(files / "unseen.csv"),
        text_column_name="review",
        label_column_name="sentiment",
    )
    with pytest.raises(ValueError, match=r"never seen in training: \['meh'\]"):
        label_names(load_texts(data, needs_labels=True), "sentiment")


def test_stage_help_shows_its_own_flags_with_its_defaults():
    short = run_ok("train-classifier", "--help").stdout
    assert len(short.splitlines()) < 150
    assert "--learning_rate (default: 0.01)" in short and "--gradual_unfreezing (default: False)" in short
    assert "--variable_bptt" not in short and "--gradient_accumulation_steps" not in short  # LM-only, Trainer
    assert "--help-all" in short
    assert "--model_name_or_path (default: awd-lstm-wiki-en)" in run_ok("finetune-lm", "--help").stdout
    assert "--gradient_accumulation_steps" in run_ok("train-classifier", "--help-all").stdout


def test_help_and_unknown_commands_answer_without_importing_the_package():
    """`hf-ulmfit --help`, `--version` and a mistyped command are answered by the launcher alone: neither the
    package (whose import registers the Auto classes) nor torch is imported."""
    probe = (
        "import contextlib, io, sys, hf_ulmfit_cli\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    codes = [hf_ulmfit_cli.main(a) for a in (['--help'], [], ['--version'], ['pretrian'])]\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'hf_ulmfit') if m in sys.modules)\n"
        "print(codes, heavy, out.getvalue().count('train-classifier'), 'unknown command' in err.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[0,", "2,", "0,", "2]", "[]", "1", "True"]


def test_every_listed_command_runs_and_has_help(capsys):
    from hf_ulmfit.cli import run_command
    from hf_ulmfit_cli import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            run_command(command, ["--help"])
        assert done.value.code == 0 and f"hf-ulmfit {command}" in capsys.readouterr().out
