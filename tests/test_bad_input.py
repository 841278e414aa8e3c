"""Bad input gets a clear error that names the problem and the fix, or a defined result: texts given to the
pipeline, ``predict`` and the CLI, data files, token ids, saved weights and configs."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from conftest import REVIEWS
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, AWDLSTMModel
from hf_ulmfit.cli import main
from hf_ulmfit.data_files import DataArguments, _first_invalid_utf8, label_names, load_texts
from hf_ulmfit.stages import predict
from hf_ulmfit.tokenization_awd_lstm import BOS_TOKEN_ID, train_tokenizer

LATIN_1 = "Un film formidable et émouvant.".encode("latin-1")  # é is 0xe9: not UTF-8


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(REVIEWS * 20, vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory, tokenizer):
    """A classifier saved with its tokenizer, as ``hf-ulmfit train-classifier`` leaves it."""
    torch.manual_seed(0)
    config = AWDLSTMConfig(
        vocab_size=len(tokenizer),
        embedding_size=8,
        hidden_size=12,
        bptt=8,
        max_len=20,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    directory = tmp_path_factory.mktemp("classifier")
    AWDLSTMForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def classify(classifier_dir):
    return pipeline("text-classification", model=str(classifier_dir))


def probabilities(classify, text: str) -> dict[str, float]:
    """The model's own softmax for ``text``, by label."""
    batch = classify.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        probs = classify.model(**batch).logits.softmax(-1)[0]
    return {classify.model.config.id2label[i]: p.item() for i, p in enumerate(probs)}


def scores(result: list[dict]) -> dict[str, float]:
    return {s["label"]: s["score"] for s in result}


# ----------------------------------------------------------------------------------------------------------
# Texts: empty, whitespace, control characters, not strings, not valid Unicode


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_and_whitespace_texts_are_classified_from_bos(classify, text):
    ids = classify.tokenizer(text)["input_ids"]
    assert ids[0] == BOS_TOKEN_ID and (text != "" or ids == [BOS_TOKEN_ID])
    result = classify(text, top_k=None)
    assert scores(result) == pytest.approx(probabilities(classify, text))
    assert sum(scores(result).values()) == pytest.approx(1.0)


def test_predict_classifies_empty_texts_in_a_batch_like_alone(classifier_dir, classify):
    texts = ["", "   ", "A wonderful film.", ""]
    predictions = predict(str(classifier_dir), texts, batch_size=3)
    assert [p["label"] for p in predictions] == [classify(t)[0]["label"] for t in texts]
    assert [p["score"] for p in predictions] == pytest.approx([classify(t)[0]["score"] for t in texts])


def test_an_empty_text_without_bos_is_rejected_by_the_model(classify):
    batch = classify.tokenizer("", add_special_tokens=False, return_tensors="pt")
    assert batch["input_ids"].shape == (1, 0)
    with pytest.raises(
        ValueError, match="at least one real token.*starts every sequence with the <bos> token"
    ):
        classify.model(**batch)


def test_control_characters_and_format_characters_are_classified(classify):
    text = "bad\x00 film\x07\x1b[31m \x7f\u200b\u200d\u202eenif\u202c \ufeff\r\n"
    assert scores(classify(text, top_k=None)) == pytest.approx(probabilities(classify, text))


@pytest.mark.parametrize("bad", [None, 3, 1.5, b"bytes", ["a", "list"]])
def test_predict_names_the_item_that_is_not_a_string(classifier_dir, bad):
    with pytest.raises(TypeError, match=rf"Text 1 is {type(bad).__name__} .*not a string"):
        predict(str(classifier_dir), ["fine", bad, "fine"])


def test_predict_takes_a_list_possibly_empty_or_one_string(classifier_dir, classify):
    assert predict(str(classifier_dir), []) == []
    with pytest.raises(IndexError):  # the raw pipeline cannot take an empty list
        classify([])
    assert predict(str(classifier_dir), "A wonderful film.") == classify(["A wonderful film."])
    with pytest.raises(TypeError, match="texts must be a string or a list of strings, got NoneType"):
        predict(str(classifier_dir), None)


def test_raw_pipeline_rejects_non_strings_with_a_value_error(classify):
    # transformers' own checks: no crash inside torch, and the message says what a text must be.
    with pytest.raises(ValueError, match="text"):
        classify(None)
    with pytest.raises(ValueError, match="must be of type `str`"):
        classify(["fine", 5])


def test_lone_surrogates_are_named_wherever_texts_enter(classifier_dir, classify, tokenizer):
    with pytest.raises(TypeError):  # the Rust tokenizer's own message does not say why
        classify.tokenizer("caf\udce9")
    with pytest.raises(ValueError, match=r"Text 1 contains the lone surrogate U\+D800 at character 3"):
        predict(str(classifier_dir), ["ok", "abc\ud800"])
    with pytest.raises(ValueError, match=r"Text 2 contains the lone surrogate U\+DCE9"):
        train_tokenizer(["fine", "also fine", "caf\udce9"], vocab_size=300, show_progress=False)
    # A command-line argument that is not UTF-8 reaches Python as a lone surrogate (surrogateescape).
    with pytest.raises(ValueError, match=r"Text 0 contains the lone surrogate U\+DCE9"):
        main(["predict", "--model_name_or_path", str(classifier_dir), "--text", "caf\udce9"])


def test_surrogate_pairs_written_as_one_character_are_fine(classify):
    emoji = "\U0001f600"  # one code point, although UTF-16 writes it as a surrogate pair
    assert (
        classify.tokenizer.decode(classify.tokenizer(emoji)["input_ids"], skip_special_tokens=True) == emoji
    )
    assert scores(classify(emoji, top_k=None)) == pytest.approx(probabilities(classify, emoji))


def test_predict_cli_writes_one_line_per_text_in_order(classifier_dir, tmp_path, capsys):
    texts = ["", "  ", "A wonderful film.", "bad\x00film"]
    main(["predict", "--model_name_or_path", str(classifier_dir), "--text", *texts])
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts
    assert (
        main(["predict", "--model_name_or_path", str(classifier_dir), "--text", "x", "--batch_size", "0"])
        == 2
    )
    assert "hf-ulmfit predict: error: --batch_size must be at least 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# Data files


def write(path, content: bytes | str):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("reviews.csv", b"text,label\nA good film,pos\n" + LATIN_1 + b",pos\n", 3),
        ("reviews.txt", b"A good film\n" + LATIN_1 + b"\n", 2),
        ("reviews.jsonl", b'{"text": "A good film"}\n{"text": "' + LATIN_1 + b'"}\n', 2),
        ("reviews.json", b'[{"text": "A good film"},\n {"text": "' + LATIN_1 + b'"}]', 2),
    ],
    ids=["csv", "txt", "jsonl", "json"],
)
def test_a_file_that_is_not_utf8_is_named_with_the_line_and_the_fix(tmp_path, name, content, line):
    path = write(tmp_path / name, content)
    with pytest.raises(ValueError, match=rf"{name}' is not valid UTF-8: byte 0xe9 at line {line} .*iconv"):
        load_texts(DataArguments(train_file=path), hold_out=False)


def test_first_invalid_utf8_byte_is_found_across_block_boundaries(tmp_path):
    path = write(tmp_path / "a.txt", b"ab\n" * 5 + "é€😀".encode() + b"\n\xff")
    expected = (7, 25, 0xFF)
    assert all(_first_invalid_utf8(path, block_size=size) == expected for size in (1, 2, 3, 4, 16, 17, 1000))
    cut = write(tmp_path / "b.txt", b"ok\n" + "😀".encode()[:3])  # a character cut off by the end of the file
    assert _first_invalid_utf8(cut, block_size=2) == (2, 3, 0xF0)
    assert _first_invalid_utf8(write(tmp_path / "c.txt", "é€😀\n" * 3), block_size=2) is None


def test_cli_names_the_file_that_is_not_utf8(tmp_path, classifier_dir, capsys):
    train = write(tmp_path / "train.csv", "text,label\nA good film,pos\nA bad film,neg\n")
    valid = write(tmp_path / "valid.csv", b"text,label\n" + LATIN_1 + b",pos\n")
    status = main(
        ["train-classifier", "--model_name_or_path", str(classifier_dir), "--output_dir", str(tmp_path)]
        + ["--train_file", train, "--validation_file", valid, "--report_to", "none"]
    )
    err = capsys.readouterr().err
    assert status == 2 and re.search(r"valid.csv' is not valid UTF-8: byte 0xe9 at line 2", err)
    assert "Traceback" not in err
    new = write(tmp_path / "new.jsonl", b'{"text": "' + LATIN_1 + b'"}\n')
    assert main(["predict", "--model_name_or_path", str(classifier_dir), "--input_file", new]) == 2
    assert "new.jsonl' is not valid UTF-8" in capsys.readouterr().err


# (file name, content, what the error says)
UNREADABLE_OR_INCOMPLETE = [
    ("empty.csv", "", r"empty.csv' is empty"),
    ("header.csv", "text,label\n", r"header.csv' has no data rows"),
    ("broken.jsonl", '{"text": "A good film"\n', r"Could not read .*broken.jsonl' as json .*one JSON object"),
    ("broken.parquet", "not parquet", r"Could not read .*broken.parquet' as parquet \(ArrowInvalid"),
    ("missing.csv", "text,label\nA good film,pos\n,neg\nok,pos\n,pos\n", r"without a text .*rows \[1, 3\]"),
    ("missing.jsonl", '{"text": "fine"}\n{"text": null}\n{"label": 1}\n', r"without a text .*rows \[1, 2\]"),
    ("numbers.csv", "text,label\n1,pos\n2,neg\n", r"column 'text' must hold texts, but rows \[0, 1\] .*int"),
    ("mixed.jsonl", '{"text": "fine"}\n{"text": 5}\n', r"must hold texts, but rows \[1\] .*int"),
]


@pytest.mark.parametrize(
    "name, content, message", UNREADABLE_OR_INCOMPLETE, ids=[c[0] for c in UNREADABLE_OR_INCOMPLETE]
)
def test_unreadable_or_incomplete_files_are_named(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        load_texts(DataArguments(train_file=write(tmp_path / name, content)), hold_out=False)


def test_missing_columns_and_labels_are_named(tmp_path, classifier_dir, capsys):
    data = write(tmp_path / "data.csv", "review,sentiment\nA good film,pos\nA bad film,\n")
    with pytest.raises(
        ValueError, match=r"has no column \['text'\]; its columns are \['review', 'sentiment'\]"
    ):
        load_texts(DataArguments(train_file=data), hold_out=False)
    with pytest.raises(ValueError, match=r"has no column \['label'\]"):
        load_texts(DataArguments(train_file=data, text_column_name="review"), needs_labels=True)
    args = DataArguments(train_file=data, text_column_name="review", label_column_name="sentiment")
    with pytest.raises(ValueError, match=r"without a label in column 'sentiment': rows \[1\]"):
        load_texts(args, needs_labels=True, hold_out=False)
    assert main(["predict", "--model_name_or_path", str(classifier_dir), "--input_file", data]) == 2
    err = capsys.readouterr().err
    assert (
        "The input data (" in err and "has no column ['text']" in err
    )  # the file's role: input, not training
    with pytest.raises(ValueError, match=r"has no column \['sentiments'\] \(did you mean 'sentiment'\?\)"):
        load_texts(
            args.__class__(train_file=data, text_column_name="review", label_column_name="sentiments"),
            needs_labels=True,
        )


def test_validation_labels_never_seen_in_training_are_named(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\nA good film,pos\nA bad film,neg\n")
    valid = write(tmp_path / "valid.csv", "text,label\nA good film,pos\nMeh,meh\nHm,hm\n")
    raw = load_texts(DataArguments(train_file=train, validation_file=valid), needs_labels=True)
    with pytest.raises(
        ValueError, match=r"validation data has labels never seen in training: \['hm', 'meh'\]"
    ):
        label_names(raw, "label")


def test_predict_cli_reads_a_parquet_file_with_empty_texts(tmp_path, classifier_dir, classify):
    path = tmp_path / "new.parquet"
    pd.DataFrame({"text": ["", "A wonderful film.", "   "]}).to_parquet(path)
    out = tmp_path / "predictions.jsonl"
    main(
        [
            "predict",
            "--model_name_or_path",
            str(classifier_dir),
            "--input_file",
            str(path),
            "--output_file",
            str(out),
        ]
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["", "A wonderful film.", "   "]
    assert [line["label"] for line in lines] == [
        classify(t)[0]["label"] for t in ["", "A wonderful film.", "   "]
    ]


# ----------------------------------------------------------------------------------------------------------
# A tokenizer that does not match the model


@pytest.mark.parametrize("model_class", [AWDLSTMModel, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification])
def test_token_ids_outside_the_vocabulary_are_a_value_error_naming_the_fix(tiny_config, model_class):
    model = model_class(tiny_config(num_labels=2)).eval()
    with pytest.raises(
        ValueError, match=r"token id 60, but the model's vocabulary has 60 tokens.*tokenizer saved"
    ):
        model(torch.tensor([[2, 5, 60]]))
    with pytest.raises(ValueError, match="negative id -1.*attention_mask"):
        model(torch.tensor([[2, -1]]), attention_mask=torch.tensor([[1, 0]]))
    with pytest.raises(ValueError, match=r"shape \(batch, seq_len\), got \(3,\)"):
        model(torch.tensor([2, 5, 6]))


def test_a_larger_tokenizer_is_caught_by_the_pipeline_and_train_classifier(tmp_path, classifier_dir):
    larger = train_tokenizer(
        REVIEWS * 20 + ["Zebras quickly judged wax."] * 20, vocab_size=400, show_progress=False
    )
    text = "Zebras quickly judged wax."
    assert max(larger(text)["input_ids"]) >= 300
    mismatched = pipeline("text-classification", model=str(classifier_dir), tokenizer=larger)
    with pytest.raises(ValueError, match="has 300 tokens.*the tokenizer does not match the model"):
        mismatched(text)

    larger.save_pretrained(tmp_path / "larger")
    train = write(tmp_path / "train.csv", "text,label\n" + "A good film,pos\nA bad film,neg\n" * 3)
    with pytest.raises(ValueError, match=f"tokenizer has {len(larger)} tokens but the model only 300"):
        main(
            ["train-classifier", "--model_name_or_path", str(classifier_dir), "--output_dir", str(tmp_path)]
            + ["--tokenizer_name", str(tmp_path / "larger"), "--train_file", train, "--report_to", "none"]
        )


# ----------------------------------------------------------------------------------------------------------
# Saved weights and configs


def damaged_copy(classifier_dir, tmp_path, damage) -> str:
    copy = tmp_path / "damaged"
    shutil.copytree(classifier_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    return str(copy)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:4],
        lambda data: b"",
        lambda data: b"\xff" * len(data),
    ],
    ids=["truncated", "cut-in-the-header", "empty", "garbage"],
)
def test_corrupt_weights_name_the_file(classifier_dir, tmp_path, damage):
    directory = damaged_copy(classifier_dir, tmp_path, damage)
    message = r"damaged/model.safetensors is corrupt or truncated .*force_download=True"
    with pytest.raises(OSError, match=message):
        AutoModelForSequenceClassification.from_pretrained(directory)
    with pytest.raises(OSError, match=message):
        AWDLSTMForSequenceClassification.from_pretrained(directory)
    with pytest.raises(ValueError, match=message):  # the pipeline reports the loader's error in its own
        pipeline("text-classification", model=directory)


def edited_config(classifier_dir, tmp_path, **changes) -> str:
    copy = tmp_path / "edited"
    shutil.copytree(classifier_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    return str(copy)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(hidden_size=-5), r"hidden_size must be a positive integer, got -5"),
        (dict(max_len=0), r"max_len must be a positive integer, got 0"),
        (dict(weight_dropout=1.5), r"weight_dropout is a dropout probability in \[0, 1\), got 1.5"),
        (dict(pad_token_id=300), r"pad_token_id=300 is outside the vocabulary \[0, 300\)"),
    ],
)
def test_impossible_values_in_a_saved_config_are_named(classifier_dir, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        AutoModelForSequenceClassification.from_pretrained(edited_config(classifier_dir, tmp_path, **changes))


def test_a_config_that_is_not_json_is_named(classifier_dir, tmp_path):
    directory = edited_config(classifier_dir, tmp_path)
    (tmp_path / "edited" / "config.json").write_text("{not json")
    with pytest.raises(OSError, match="config.json' is not a valid JSON file"):
        AutoModelForSequenceClassification.from_pretrained(directory)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ("hidden_size=-3", "hidden_size must be a positive integer, got -3"),
        ("hidden_size=1.5", "hidden_size must be a positive integer, got 1.5"),
        ("hidden_size=abc", "'hidden_size=abc' has no valid value"),
        ("no_such_field=1", "'no_such_field=1' is not name=value for a field of AWDLSTMConfig"),
        ("bptt", "'bptt' is not name=value"),
    ],
)
def test_impossible_config_overrides_are_named(tmp_path, overrides, message):
    train = write(tmp_path / "general.txt", "A good film.\nA bad film.\n" * 20)
    with pytest.raises(ValueError, match=message):
        main(
            ["pretrain", "--train_file", train, "--vocab_size", "300", "--output_dir", str(tmp_path)]
            + ["--config_overrides", overrides, "--report_to", "none"]
        )


def test_predict_batches_longest_first_and_returns_results_in_the_given_order(classifier_dir, classify):
    texts = ["ok", REVIEWS[0], "", REVIEWS[1] * 3, "fine film", REVIEWS[2]]
    got = predict(str(classifier_dir), texts, batch_size=2)
    alone = [classify(text)[0] for text in texts]
    assert [r["label"] for r in got] == [r["label"] for r in alone]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in alone], atol=1e-5)


def test_predict_takes_a_pipeline_already_built(classifier_dir, classify):
    texts = ["ok", REVIEWS[0], "", REVIEWS[1] * 2]
    from_pipeline = predict(classify, texts, batch_size=2)
    from_folder = predict(str(classifier_dir), texts, batch_size=2)
    assert [r["label"] for r in from_pipeline] == [r["label"] for r in from_folder]
    np.testing.assert_allclose(
        [r["score"] for r in from_pipeline], [r["score"] for r in from_folder], atol=1e-6
    )
