"""The three stages of ULMFiT (Howard & Ruder 2018, section 3), and prediction, as plain functions.

Each stage takes the dataclasses the ``hf-ulmfit`` command line parses (``ModelArguments``, ``DataArguments``,
``ULMFiTTrainingArguments``), trains with ``ULMFiTTrainer``, and leaves in ``output_dir`` what any transformers
training script leaves: the model and tokenizer in HF format, ``train_results.json``, ``eval_results.json`` and
``all_results.json``, and the trainer state. Python users call them directly; the CLI only parses arguments.
"""

import codecs
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, Value, load_dataset
from transformers import (
    AutoTokenizer,
    Pipeline,
    PreTrainedTokenizerBase,
    Trainer,
    default_data_collator,
    pipeline,
    set_seed,
)

from .cards import DEFAULT_LICENSE, dataset_names
from .configuration_awd_lstm import CLASSIFIER_DROPOUTS, LANGUAGE_MODEL_DROPOUTS, AWDLSTMConfig
from .data import classification_collator, classification_dataset, language_model_stream, longest_first
from .metrics import compute_classification_metrics
from .modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from .tokenization_awd_lstm import check_text, train_tokenizer
from .trainer import ULMFiTTrainer
from .training_args import ULMFiTTrainingArguments

logger = logging.getLogger(__name__)

# File extension -> the `datasets` builder that reads it.
DATA_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
# What a file of each format must hold (for the error when it cannot be read).
FORMAT_LAYOUTS = {
    "csv": "a header row, then one comma-separated row per example",
    "json": "one JSON object per line, or a JSON list of objects",
    "parquet": "a Parquet table",
    "text": "one text per line",
}


@dataclass
class ModelArguments:
    """Which model and tokenizer to start from, and how to build them when starting from scratch."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The model to start from: a directory or Hub id (an LM for finetune-lm and train-classifier)."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "pretrain: a config (directory or Hub id) to start from instead of the default."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'Override config values, e.g. "hidden_size=256,num_hidden_layers=2,bptt=70".'},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A tokenizer to use instead of the model's (pretrain: instead of training one)."},
    )
    vocab_size: int = field(
        default=30000, metadata={"help": "pretrain: vocabulary size of the tokenizer it trains."}
    )
    dropout_multiplier: float = field(
        default=1.0,
        metadata={
            "help": "Scales the stage's dropouts (the LM or the classifier preset of AWDLSTMConfig); "
            "e.g. 0.3 for LM fine-tuning and 0.5 for the classifier on small data."
        },
    )
    license: str = field(
        default=DEFAULT_LICENSE, metadata={"help": "License of the trained model, for its model card."}
    )


@dataclass
class DataArguments:
    """Where the texts (and labels) are."""

    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: csv, json/jsonl, parquet, or txt (one text per line)."},
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data, same formats."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the texts."})
    label_column_name: str = field(
        default="label", metadata={"help": "train-classifier: column holding the labels."}
    )
    validation_split_percentage: int = field(
        default=5,
        metadata={"help": "Without --validation_file: percent of the training data held out for evaluation."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training texts."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N evaluation texts."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Name of the data for the model card (e.g. a Hub dataset id); default: the file names."
        },
    )


# ----------------------------------------------------------------------------------------------------------
# Data


def load_texts(data_args: DataArguments, needs_labels: bool = False, hold_out: bool = True) -> DatasetDict:
    """Reads ``train_file`` (and ``validation_file``, or with ``hold_out`` a held-out split of the training data).

    Each file is checked as it is read, before any training starts: a file that cannot be read, is not valid
    UTF-8, lacks the text (or label) column, or has a row without a text (or label) gets a ``ValueError`` that
    names the file, the rows and the fix."""
    if data_args.train_file is None:
        raise ValueError("--train_file is required.")
    files = {"train": data_args.train_file}
    if data_args.validation_file is not None:
        files["validation"] = data_args.validation_file
    builders = {_data_format(path) for path in files.values()}
    if len(builders) > 1:
        raise ValueError(
            f"--train_file and --validation_file must have the same format, got {sorted(builders)}."
        )
    builder = builders.pop()
    columns = [data_args.text_column_name] + ([data_args.label_column_name] if needs_labels else [])
    raw = DatasetDict(
        {split: _read_data_file(path, builder, split, columns) for split, path in files.items()}
    )
    if "validation" not in raw and hold_out:
        raw = _hold_out(raw["train"], data_args.validation_split_percentage)
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    return DatasetDict(
        {
            split: dataset.select(range(min(limits[split], len(dataset)))) if limits[split] else dataset
            for split, dataset in raw.items()
        }
    )


def _data_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in DATA_FORMATS:
        raise ValueError(f"Cannot read {path!r}: use one of {sorted(DATA_FORMATS)}.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such data file: {path!r}.")
    return DATA_FORMATS[suffix]


def _read_data_file(path: str, builder: str, split: str, columns: list[str]) -> Dataset:
    """One data file as a ``Dataset``: readable, valid UTF-8, with ``columns`` (text first, then the label) and a
    value in each of them on every row."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"The {split} data file {path!r} is empty.")
    try:
        dataset = load_dataset(builder, data_files=path, split="train")
        dataset.data.table.validate(full=True)  # the JSON reader lets invalid UTF-8 into string columns
    except Exception as error:  # `datasets` wraps the reader's own error, e.g. in a DatasetGenerationError
        raise ValueError(_unreadable_file_message(path, builder, error)) from error
    where = f"The {split} data ({path})"
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{where} has no column {missing}; its columns are {dataset.column_names}. "
            "Choose them with --text_column_name / --label_column_name."
        )
    text, *label = columns
    _check_text_column(dataset, text, where, csv=builder == "csv")
    if label and dataset.data.column(label[0]).null_count:
        raise ValueError(
            f"{where} has rows without a label in column {label[0]!r}: rows {_rows_where(dataset, label[0])} "
            "(data rows, counted from 0). Label those rows or remove them."
        )
    return dataset


def _check_text_column(dataset: Dataset, text: str, where: str, csv: bool) -> None:
    """Every row's text must be a string: an empty string is a text, a missing value or a number is not."""
    feature = dataset.features[text]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string", "null")):
        bad = _rows_where(dataset, text, lambda value: value is not None and not isinstance(value, str))
        found = f"it holds {feature}"
        if bad:
            found = f"rows {bad} (data rows, counted from 0) hold {type(dataset[bad[0]][text]).__name__}"
        raise ValueError(
            f"{where}: column {text!r} must hold texts, but {found}. Choose the text column with "
            "--text_column_name, or store the texts as strings."
        )
    if dataset.data.column(text).null_count:
        raise ValueError(
            f"{where} has rows without a text in column {text!r}: rows {_rows_where(dataset, text)} (data rows, "
            f"counted from 0{'; an empty CSV cell is a missing text' if csv else ''}). "
            "Give those rows a text or remove them."
        )


def _rows_where(
    dataset: Dataset, column: str, is_bad=lambda value: value is None, limit: int = 5
) -> list[int]:
    """The first ``limit`` rows whose value in ``column`` ``is_bad`` (to report an error: reads the column)."""
    rows = []
    for row, value in enumerate(dataset[column]):
        if is_bad(value):
            rows.append(row)
            if len(rows) == limit:
                break
    return rows


def _unreadable_file_message(path: str, builder: str, error: Exception) -> str:
    """Why ``path`` could not be read and what to do: where it is not UTF-8, or else the reader's own error."""
    position = _first_invalid_utf8(path) if builder != "parquet" else None
    if position is not None:
        line, offset, byte = position
        return (
            f"{path!r} is not valid UTF-8: byte 0x{byte:02x} at line {line} (byte offset {offset}) is not part "
            "of a UTF-8 character. Save the file as UTF-8, or convert it, e.g. `iconv -f latin1 -t utf-8 IN > "
            "OUT` for a Latin-1 file."
        )
    cause = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    if "corresponds to no data" in str(cause):  # how `datasets` says that the file has no rows
        return f"{path!r} has no data rows."
    return (
        f"Could not read {path!r} as {builder} ({type(cause).__name__}: {cause}). "
        f"Check that it holds {FORMAT_LAYOUTS[builder]}."
    )


def _first_invalid_utf8(path: str, block_size: int = 1 << 20) -> tuple[int, int, int] | None:
    """(line, byte offset, byte) of the first byte of ``path`` that is not valid UTF-8, or None; reads the file
    in blocks, so any size works."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    start, line = 0, 1  # start: offset of the bytes the decoder holds back plus this block
    with open(path, "rb") as f:
        while True:
            block = f.read(block_size)
            pending = decoder.getstate()[0]  # the start of a character cut by the previous block (no newline)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:  # error.start counts from the held-back bytes
                data = pending + block
                return line + data[: error.start].count(b"\n"), start + error.start, data[error.start]
            if not block:
                return None
            line += block.count(b"\n")
            start += len(pending) + len(block) - len(decoder.getstate()[0])


def _hold_out(train: Dataset, percent: int) -> DatasetDict:
    if not 0 < percent < 100:
        raise ValueError(f"--validation_split_percentage must be in (0, 100), got {percent}.")
    split = train.train_test_split(test_size=percent / 100, shuffle=True, seed=0)
    return DatasetDict({"train": split["train"], "validation": split["test"]})


def label_names(raw: DatasetDict, label_column: str) -> list:
    """The labels of the training data, sorted; validation labels must be among them."""
    train_labels = set(raw["train"].unique(label_column))
    if None in train_labels:
        raise ValueError(f"The training data has rows without a label in column {label_column!r}.")
    for split, dataset in raw.items():
        unseen = set(dataset.unique(label_column)) - train_labels
        if unseen:
            raise ValueError(
                f"The {split} data has labels never seen in training: {sorted(map(str, unseen))}. "
                "Remove those rows or add training examples for them."
            )
    return sorted(train_labels)


# ----------------------------------------------------------------------------------------------------------
# Stages


def pretrain(model_args: ModelArguments, data_args: DataArguments, training_args: ULMFiTTrainingArguments):
    """Stage 1 (section 3.1): train a tokenizer and an AWD-LSTM language model from scratch on general text."""
    set_seed(training_args.seed)  # the new model's initial weights
    raw = load_texts(data_args)
    if model_args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name)
    else:
        logger.info("Training a %d-token tokenizer on %s", model_args.vocab_size, data_args.train_file)
        tokenizer = train_tokenizer(
            raw["train"][data_args.text_column_name], vocab_size=model_args.vocab_size
        )
    config = _new_config(model_args, tokenizer)
    model = AWDLSTMForCausalLM(config)
    logger.info("AWD-LSTM language model with %.1fM parameters", model.num_parameters() / 1e6)
    card = _card_arguments("pretrain", model_args, data_args)
    return _train_language_model(model, tokenizer, raw, data_args, training_args, card)


def finetune_language_model(
    model_args: ModelArguments, data_args: DataArguments, training_args: ULMFiTTrainingArguments
):
    """Stage 2 (section 3.2): fine-tune the LM on the target task's texts (discriminative rates and STLR)."""
    _require_model(model_args)
    raw = load_texts(data_args)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    dropouts = {name: p * model_args.dropout_multiplier for name, p in LANGUAGE_MODEL_DROPOUTS.items()}
    model = AWDLSTMForCausalLM.from_pretrained(
        model_args.model_name_or_path, **dropouts, **_overrides(model_args)
    )
    card = _card_arguments("finetune-lm", model_args, data_args)
    return _train_language_model(model, tokenizer, raw, data_args, training_args, card)


def train_classifier(
    model_args: ModelArguments, data_args: DataArguments, training_args: ULMFiTTrainingArguments
):
    """Stage 3 (section 3.3): the classifier on top of the fine-tuned LM, with gradual unfreezing."""
    _require_model(model_args)
    set_seed(training_args.seed)  # the new head's initial weights
    raw = load_texts(data_args, needs_labels=True)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    labels = label_names(raw, data_args.label_column_name)
    label2id = {label: index for index, label in enumerate(labels)}
    raw = raw.map(
        lambda batch: {"labels": [label2id[label] for label in batch[data_args.label_column_name]]},
        batched=True,
        remove_columns=[c for c in raw["train"].column_names if c != data_args.text_column_name],
    )
    dropouts = {name: p * model_args.dropout_multiplier for name, p in CLASSIFIER_DROPOUTS.items()}
    model = AWDLSTMForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(labels),
        id2label={index: str(label) for index, label in enumerate(labels)},
        label2id={str(label): index for index, label in enumerate(labels)},
        classifier_dropouts=[CLASSIFIER_DROPOUTS["output_dropout"] * model_args.dropout_multiplier, 0.1],
        **dropouts,
        **_overrides(model_args),
    )
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}: "
            "use the tokenizer saved with the model."
        )
    datasets = {
        split: classification_dataset(
            dataset,
            tokenizer,
            data_args.text_column_name,
            "labels",
            num_proc=data_args.preprocessing_num_workers,
        )
        for split, dataset in raw.items()
    }
    training_args.train_sampling_strategy = "group_by_length"
    trainer = ULMFiTTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=classification_collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_classification_metrics,
    )
    return _train_and_save(trainer, training_args, _card_arguments("train-classifier", model_args, data_args))


def predict(model_name_or_path: str | Pipeline, texts: list[str], batch_size: int = 32) -> list[dict]:
    """Labels and scores of ``texts`` from a trained classifier, through ``pipeline("text-classification")``:
    one ``{"label", "score"}`` per text, in order. ``model_name_or_path`` is a folder or Hub id, or a
    text-classification pipeline already built (to classify many lists without loading the model each time).

    Texts are batched longest first, which makes batches of similar lengths; the results do not depend on the
    batching (BPT3C is exact per document). Texts of any length are read whole; an empty text is classified from
    the ``<bos>`` token alone. A text that is not a string raises ``TypeError``, one that is not valid Unicode
    ``ValueError``, each naming the text."""
    if texts is None or isinstance(texts, bytes):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    texts = [texts] if isinstance(texts, str) else list(texts)
    check_texts(texts)
    if not texts:
        return []
    classify = (
        model_name_or_path
        if isinstance(model_name_or_path, Pipeline)
        else pipeline("text-classification", model=model_name_or_path)
    )
    order = longest_first(texts)  # batches of similar lengths, then the results back in the given order
    results = [None] * len(texts)
    for index, result in zip(order, classify([texts[index] for index in order], batch_size=batch_size)):
        results[index] = result
    return results


def check_texts(texts: list) -> None:
    """Raises unless every item is a string the tokenizer can encode, naming the first bad one (counted from 0)."""
    for index, text in enumerate(texts):
        check_text(text, index)


# ----------------------------------------------------------------------------------------------------------
# Shared steps


def _require_model(model_args: ModelArguments) -> None:
    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required: the language model of the previous stage.")


def _overrides(model_args: ModelArguments) -> dict:
    """``"a=1,b=0.5"`` -> ``{"a": 1, "b": 0.5}``, typed like the config's fields."""
    if not model_args.config_overrides:
        return {}
    defaults = AWDLSTMConfig().to_dict()
    overrides = {}
    for item in model_args.config_overrides.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in defaults:
            raise ValueError(f"--config_overrides: {item!r} is not name=value for a field of AWDLSTMConfig.")
        try:
            overrides[name] = json.loads(value) if not isinstance(defaults[name], str) else value
        except json.JSONDecodeError:
            raise ValueError(
                f"--config_overrides: {item!r} has no valid value; give a number, true, false or null."
            ) from None
    return overrides


def _new_config(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase) -> AWDLSTMConfig:
    """The LM config of stage 1, sized to the tokenizer, with the tokenizer's special-token ids."""
    base = AWDLSTMConfig.from_pretrained(model_args.config_name).to_dict() if model_args.config_name else {}
    base.pop("model_type", None)
    dropouts = {name: p * model_args.dropout_multiplier for name, p in LANGUAGE_MODEL_DROPOUTS.items()}
    return AWDLSTMConfig(
        **{**dropouts, **base, **_overrides(model_args)},
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _train_language_model(
    model, tokenizer, raw: DatasetDict, data_args: DataArguments, training_args, card: dict
):
    """Stages 1 and 2: the texts become one token stream in ``batch_size`` rows per process, read in BPTT windows
    (each process of a distributed run reads its own rows: see ``LanguageModelStream``)."""
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}: "
            "use the tokenizer saved with the model."
        )

    def stream(split: str, batch_size: int, training: bool):
        return language_model_stream(
            raw[split],
            tokenizer,
            batch_size=batch_size,
            bptt=model.config.bptt,
            variable_bptt=training and training_args.variable_bptt,
            seed=training_args.seed,
            text_column=data_args.text_column_name,
            num_proc=data_args.preprocessing_num_workers,
            num_shards=training_args.world_size,
            shuffle_documents=training and training_args.shuffle_documents,
        )

    training_args.train_sampling_strategy = "sequential"
    training_args.dataloader_drop_last = True
    trainer = ULMFiTTrainer(
        model=model,
        args=training_args,
        train_dataset=stream("train", training_args.per_device_train_batch_size, training=True),
        eval_dataset=stream("validation", training_args.per_device_eval_batch_size, training=False),
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    return _train_and_save(trainer, training_args, card)


def _card_arguments(stage: str, model_args: ModelArguments, data_args: DataArguments) -> dict:
    """What the model card (``hf_ulmfit.cards``) needs to know that the trainer does not."""
    return {
        "stage": stage,
        "finetuned_from": model_args.model_name_or_path if stage != "pretrain" else None,
        "dataset": dataset_names(
            data_args.train_file, data_args.validation_file, name=data_args.dataset_name
        ),
        "license": model_args.license,
    }


def _train_and_save(trainer: Trainer, training_args: ULMFiTTrainingArguments, card: dict) -> dict[str, float]:
    """Train, save model + tokenizer, evaluate, write the results files as the Trainer does, and the model card
    (``card``: the arguments of ``ULMFiTTrainer.create_model_card``); with ``push_to_hub``, push the whole output
    directory, card included.

    ``--resume_from_checkpoint`` takes a checkpoint directory, or ``true`` for the last complete checkpoint in
    ``output_dir``: the run then continues exactly where that checkpoint left it."""
    resume = training_args.resume_from_checkpoint
    train_result = trainer.train(resume_from_checkpoint=True if str(resume).lower() == "true" else resume)
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if training_args.push_to_hub:
        trainer.push_to_hub(**card)  # writes the card (create_model_card), then uploads output_dir
    else:
        trainer.create_model_card(**card)
    return {**train_result.metrics, **eval_metrics}


__all__ = [
    "DataArguments",
    "ModelArguments",
    "check_texts",
    "finetune_language_model",
    "label_names",
    "load_texts",
    "predict",
    "pretrain",
    "train_classifier",
]
