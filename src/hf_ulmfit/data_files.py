"""Reading the user's data files (csv, json/jsonl, parquet, txt), each checked as it is read.

A stage's texts (and labels) come from ``DataArguments``: one or several training files (paths or glob patterns,
as ``datasets`` takes them) and an optional validation file. Every file is checked before any training starts: a
file that cannot be read, is not valid UTF-8, lacks the text (or label) column, or has a row without a text (or
label) gets a ``ValueError`` that names the file, its role, the rows and the fix. Only the text and label columns
are read on; any other column a file holds (an index pandas wrote, a rating, an id) is ignored, whatever the
other files hold.
"""

import codecs
import difflib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, Value, concatenate_datasets, load_dataset

from .errors import UsageError


# File extension -> the `datasets` builder that reads it.
class DataFileError(UsageError):
    """A data file, or an argument naming one, that cannot be used as given; the message names the file and the fix
    (the command line prints it without a traceback)."""


class DataFileNotFoundError(DataFileError, FileNotFoundError):
    """A data file that does not exist, or a glob pattern that matches none."""


DATA_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}
# What a file of each format must hold (for the error when it cannot be read).
FORMAT_LAYOUTS = {
    "csv": "a header row, then one comma-separated row per example",
    "json": "one JSON object per line, or a JSON list of objects",
    "parquet": "a Parquet table",
    "text": "one text per line",
}


@dataclass
class DataArguments:
    """Where the texts (and labels) are."""

    train_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "Training data: one or more files or glob patterns (csv, json/jsonl, parquet, or txt with one "
            "text per line), read as one training set."
        },
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

    def __post_init__(self):
        if isinstance(self.train_file, (str, os.PathLike)):  # one file, as Python callers usually give it
            self.train_file = [self.train_file]
        if self.train_file is not None:
            self.train_file = [os.fspath(path) for path in self.train_file]

    @property
    def training_files(self) -> list[str]:
        """The training files, glob patterns expanded (each pattern's matches sorted), in the order given."""
        if not self.train_file:
            raise DataFileError("--train_file is required.")
        return [path for pattern in self.train_file for path in _expand(pattern)]


def _expand(pattern: str) -> list[str]:
    """A path as it is, or the files a glob pattern matches (an error if none)."""
    if not glob.has_magic(pattern):
        return [pattern]
    matches = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
    if not matches:
        raise DataFileNotFoundError(f"No data file matches {pattern!r}.")
    return matches


def load_texts(data_args: DataArguments, needs_labels: bool = False, hold_out: bool = True) -> DatasetDict:
    """The training texts (every training file, in order, as one split) and the validation texts
    (``validation_file``, or with ``hold_out`` a held-out share of the training texts).

    Only the text column (and with ``needs_labels`` the label column) is kept; each file is checked as the
    module docstring says."""
    columns = [data_args.text_column_name] + ([data_args.label_column_name] if needs_labels else [])
    train = [read_data_file(path, "training", columns) for path in data_args.training_files]
    raw = DatasetDict({"train": _concatenate(train, data_args.training_files)})
    if data_args.validation_file is not None:
        raw["validation"] = read_data_file(data_args.validation_file, "validation", columns)
    elif hold_out:
        raw = _hold_out(raw["train"], data_args.validation_split_percentage)
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    return DatasetDict(
        {
            split: dataset.select(range(min(limits[split], len(dataset)))) if limits[split] else dataset
            for split, dataset in raw.items()
        }
    )


def _concatenate(datasets: list[Dataset], paths: list[str]) -> Dataset:
    """The files' rows in order, with the first file's column types (a text column may be ``string`` in one
    Parquet file and ``large_string`` in another)."""
    first = datasets[0].features
    aligned = [datasets[0]]
    for dataset, path in zip(datasets[1:], paths[1:]):
        try:
            aligned.append(dataset if dataset.features == first else dataset.cast(first))
        except (TypeError, ValueError) as error:
            raise DataFileError(
                f"The training file {path!r} holds {dataset.features}, which cannot be read as {first} like "
                f"{paths[0]!r} ({error})."
            ) from error
    return aligned[0] if len(aligned) == 1 else concatenate_datasets(aligned)


def _data_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in DATA_FORMATS:
        raise DataFileError(f"Cannot read {path!r}: use one of {sorted(DATA_FORMATS)}.")
    if not os.path.exists(path):
        raise DataFileNotFoundError(f"No such data file: {path!r}.")
    return DATA_FORMATS[suffix]


def read_data_file(path: str, role: str, columns: list[str]) -> Dataset:
    """One data file as a ``Dataset`` of ``columns`` only (text first, then the label, if any): readable, valid
    UTF-8, with a value in each of them on every row. ``role`` ("training", "validation", "input") names the
    file in errors."""
    builder = _data_format(path)
    if os.path.getsize(path) == 0:
        raise DataFileError(f"The {role} data file {path!r} is empty.")
    try:
        dataset = load_dataset(builder, data_files=path, split="train")
        dataset.data.table.validate(full=True)  # the JSON reader lets invalid UTF-8 into string columns
    except Exception as error:  # `datasets` wraps the reader's own error, e.g. in a DatasetGenerationError
        raise DataFileError(_unreadable_file_message(path, builder, error)) from error
    where = f"The {role} data ({path})"
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        close = [
            match for name in missing for match in difflib.get_close_matches(name, dataset.column_names, n=1)
        ]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise DataFileError(
            f"{where} has no column {missing}{hint}; its columns are {dataset.column_names}. "
            "Choose them with --text_column_name / --label_column_name."
        )
    dataset = dataset.select_columns(columns)
    text, *label = columns
    _check_text_column(dataset, text, where, csv=builder == "csv")
    if label and dataset.data.column(label[0]).null_count:
        raise DataFileError(
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
        raise DataFileError(
            f"{where}: column {text!r} must hold texts, but {found}. Choose the text column with "
            "--text_column_name, or store the texts as strings."
        )
    if dataset.data.column(text).null_count:
        raise DataFileError(
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
        raise DataFileError(f"--validation_split_percentage must be in (0, 100), got {percent}.")
    split = train.train_test_split(test_size=percent / 100, shuffle=True, seed=0)
    return DatasetDict({"train": split["train"], "validation": split["test"]})


def label_names(raw: DatasetDict, label_column: str) -> list:
    """The labels of the training data, sorted; validation labels must be among them."""
    train_labels = set(raw["train"].unique(label_column))
    if None in train_labels:
        raise DataFileError(f"The training data has rows without a label in column {label_column!r}.")
    for split, dataset in raw.items():
        unseen = set(dataset.unique(label_column)) - train_labels
        if unseen:
            raise DataFileError(
                f"The {split} data has labels never seen in training: {sorted(map(str, unseen))}. "
                "Remove those rows or add training examples for them."
            )
    return sorted(train_labels)


__all__ = [
    "DATA_FORMATS",
    "DataArguments",
    "DataFileError",
    "DataFileNotFoundError",
    "label_names",
    "load_texts",
    "read_data_file",
]
