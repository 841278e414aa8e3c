"""Data pipelines of the two ULMFiT training stages (Howard & Ruder 2018).

Language-model stages (sections 3.1 and 3.2): documents become one token stream, cut into contiguous rows
(``batch_size`` per process) and read in windows of about ``bptt`` tokens, so that batch ``t + 1`` of a process
continues every row of its batch ``t`` and the recurrent state the trainer carries over is the right one.

Classifier stage (section 3.3, BPT3C): tokenized documents of any length, batched by similar length and padded
(on either side); the model itself reads each document in ``bptt``-sized chunks.
"""

from collections.abc import Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset as HFDataset
from torch.utils.data import Dataset
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

# AWD-LSTM (Merity et al. 2018, section 4.1): a full window with probability 0.95, else half of one, then a
# length drawn around it with this standard deviation and floored at this minimum.
FULL_WINDOW_PROBABILITY = 0.95
WINDOW_LENGTH_STD = 5.0
MIN_WINDOW_LENGTH = 5


def concatenate_documents(documents: Sequence[Sequence[int]]) -> torch.Tensor:
    """One 1-D stream of token ids from tokenized documents, in order.

    Documents keep the special tokens the tokenizer added (e.g. a leading bos), which separate them in the stream.
    """
    arrays = [np.asarray(document, dtype=np.int64) for document in documents]
    if not arrays:
        return torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(arrays))


def split_into_rows(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(batch_size, row_length)`` view of the stream: row ``r`` is its ``r``-th contiguous slice.

    The tail that does not fill a whole column is dropped.
    """
    row_length = len(stream) // batch_size
    if row_length < 2:
        raise ValueError(
            f"A stream of {len(stream)} tokens is too short for {batch_size} rows: each row needs >= 2 tokens."
        )
    return stream[: row_length * batch_size].view(batch_size, row_length)


def fixed_windows(num_positions: int, bptt: int) -> list[tuple[int, int]]:
    """``(start, length)`` windows of ``bptt`` tokens covering ``num_positions`` input positions.

    The last window is shorter when ``bptt`` does not divide ``num_positions``.
    """
    return [(start, min(bptt, num_positions - start)) for start in range(0, num_positions, bptt)]


def sample_window_length(rng: np.random.Generator, bptt: int) -> int:
    """A window length of the AWD-LSTM's variable BPTT (Merity et al. 2018, section 4.1).

    The mean is ``bptt`` with probability 0.95 and ``bptt / 2`` otherwise; the length is drawn from a normal
    distribution around it with standard deviation 5, and floored at ``min(5, bptt)``.
    """
    mean = bptt if rng.random() < FULL_WINDOW_PROBABILITY else bptt / 2
    return max(min(MIN_WINDOW_LENGTH, bptt), round(rng.normal(mean, WINDOW_LENGTH_STD)))


def mean_window_length(bptt: int) -> float:
    """The expected length of a variable-BPTT window, ``sample_window_length``'s mean: ``0.975 * bptt``. Steps
    times batch size times this is the number of tokens an LM stage saw."""
    return bptt * (FULL_WINDOW_PROBABILITY + (1 - FULL_WINDOW_PROBABILITY) / 2)


def variable_windows(num_positions: int, bptt: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """As many windows as ``fixed_windows`` would give, with lengths drawn by ``sample_window_length``.

    Keeping the number of windows fixed keeps the number of batches per epoch (which the Trainer computes once)
    fixed. A length is shortened when needed so that every remaining window keeps at least one token; positions
    left over after the last window are not used this epoch.
    """
    num_windows = len(fixed_windows(num_positions, bptt))
    windows, start = [], 0
    for index in range(num_windows):
        windows_after = num_windows - index - 1
        length = min(sample_window_length(rng, bptt), num_positions - start - windows_after)
        windows.append((start, length))
        start += length
    return windows


class LanguageModelStream(Dataset):
    """Map-style dataset of BPTT windows over a token stream, for LM pretraining and fine-tuning.

    The stream is cut into ``num_rows = batch_size * num_shards`` contiguous rows. Item ``i`` is row
    ``i % num_rows`` of window ``i // num_rows``: ``input_ids`` are the tokens of the window and ``shift_labels``
    the tokens one position later (already aligned with the inputs, so the last position of each window gets a
    target too). Read in order with a batch size of ``batch_size``, batch ``t + 1`` continues every row of batch
    ``t``. Use it with ``train_sampling_strategy="sequential"``, ``per_device_train_batch_size=batch_size``
    (``per_device_eval_batch_size`` for evaluation) and ``data_collator=transformers.default_data_collator``;
    ``dataloader_drop_last=True`` is harmless (the length is a multiple of ``num_rows``).

    Several processes (``num_shards`` = the world size): batch ``t * num_shards + k`` holds rows
    ``[k * batch_size, (k + 1) * batch_size)`` of window ``t``. Accelerate (under the Trainer) gives process ``k``
    the batches ``k, k + num_shards, k + 2 * num_shards, ...``, so each process reads its own ``batch_size``
    contiguous rows through every window and carries the right recurrent state; together the processes read
    exactly what one process reading ``num_rows`` rows would.

    With ``variable_bptt`` the window lengths are redrawn each epoch (``set_epoch``, which the Trainer's
    dataloader calls) from a generator seeded with ``(seed, epoch)``, so a resumed run sees the same windows and
    every process the same window lengths. With ``shuffle_documents`` the documents are put in a new order each
    epoch (the first one included) from the same generator before the stream is cut into rows, so that the rows
    do not hold the same texts in the same order every epoch.

    With ``backwards`` (for a model with ``AWDLSTMConfig.backwards``, ULMFiT section 3.4) the corpus is read right
    to left: the rows and windows are cut from the reversed stream, so batch ``t + 1`` holds, in every row, the
    text just *before* that of batch ``t`` and the carried state is again the right one. The direction is the
    model's: a backward model reverses each window itself, so items stay in text order, each window flipped back
    (``input_ids`` and ``shift_labels`` alike), and ``shift_labels[j]`` is the token just before ``input_ids[j]``,
    the one a backward LM predicts there. Data and model thus reverse once each, never the same thing twice: the
    data the order of the windows, the model the order within one.

    Args:
        tokens: a 1-D tensor of token ids, or tokenized documents (concatenated in order).
        batch_size: rows per batch, i.e. the batch size (per process) the dataset must be read with.
        bptt: window length (the mean length with ``variable_bptt``).
        variable_bptt: draw window lengths as in the AWD-LSTM instead of using a fixed ``bptt``.
        seed: seed of the window lengths and of the document order.
        num_shards: number of processes reading the dataset together (``TrainingArguments.world_size``).
        shuffle_documents: reorder the documents every epoch; ``tokens`` must then be the documents.
        backwards: read the stream right to left, for a backward model (see above).
    """

    def __init__(
        self,
        tokens: torch.Tensor | Sequence[Sequence[int]],
        batch_size: int,
        bptt: int = 72,
        variable_bptt: bool = False,
        seed: int = 0,
        num_shards: int = 1,
        shuffle_documents: bool = False,
        backwards: bool = False,
    ):
        if batch_size < 1 or bptt < 1 or num_shards < 1:
            raise ValueError(
                f"batch_size, bptt and num_shards must be >= 1, got {batch_size}, {bptt} and {num_shards}."
            )
        if shuffle_documents and isinstance(tokens, torch.Tensor):
            raise ValueError(
                "shuffle_documents needs the documents (a sequence of token lists), not one stream."
            )
        self.batch_size = batch_size
        self.num_shards = num_shards
        self.bptt = bptt
        self.variable_bptt = variable_bptt
        self.seed = seed
        self.backwards = backwards
        self.documents = list(tokens) if shuffle_documents else None
        if self.documents is None:  # one order for every epoch; shuffled documents are cut by set_epoch
            stream = tokens if isinstance(tokens, torch.Tensor) else concatenate_documents(tokens)
            self.rows = self._cut_into_rows(stream.long().flatten())
        self.set_epoch(0)

    @property
    def num_rows(self) -> int:
        """Rows of all processes together: ``batch_size * num_shards``."""
        return self.batch_size * self.num_shards

    @property
    def num_positions(self) -> int:
        """Input positions per row: every token of a row but the last has a target."""
        return self.rows.shape[1] - 1

    def set_epoch(self, epoch: int) -> None:
        """Choose the document order and the windows of ``epoch`` (fixed unless shuffled or variable)."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.documents is not None:
            order = rng.permutation(len(self.documents))
            stream = concatenate_documents([self.documents[index] for index in order])
            self.rows = self._cut_into_rows(stream)
        if self.variable_bptt:
            self.windows = variable_windows(self.num_positions, self.bptt, rng)
        else:
            self.windows = fixed_windows(self.num_positions, self.bptt)

    def _cut_into_rows(self, stream: torch.Tensor) -> torch.Tensor:
        """The rows of ``stream`` in reading order: the reversed stream for a backward model."""
        return split_into_rows(stream.flip(0) if self.backwards else stream, self.num_rows)

    def __len__(self) -> int:
        return len(self.windows) * self.num_rows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        start, length = self.windows[index // self.num_rows]
        row = self.rows[index % self.num_rows]
        input_ids, shift_labels = row[start : start + length], row[start + 1 : start + length + 1]
        if self.backwards:  # back to text order: the backward model reverses the window itself
            input_ids, shift_labels = input_ids.flip(0), shift_labels.flip(0)
        return {"input_ids": input_ids, "shift_labels": shift_labels}


def tokenize_documents(
    dataset: HFDataset,
    tokenizer: PreTrainedTokenizerBase,
    text_column: str = "text",
    batch_size: int = 1000,
    num_proc: int | None = None,
) -> HFDataset:
    """``dataset`` with ``input_ids`` (and ``attention_mask``) from ``tokenizer``, through ``datasets.map``.

    No truncation: ULMFiT's classifier reads documents of any length (BPT3C, section 3.3) and the LM stream wants
    every token. Only the text column is removed; labels and other columns stay.
    """

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch[text_column], truncation=False, return_token_type_ids=False)

    return dataset.map(
        tokenize, batched=True, batch_size=batch_size, num_proc=num_proc, remove_columns=[text_column]
    )


def language_model_stream(
    dataset: HFDataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    bptt: int = 72,
    variable_bptt: bool = False,
    seed: int = 0,
    text_column: str = "text",
    num_proc: int | None = None,
    num_shards: int = 1,
    shuffle_documents: bool = False,
    backwards: bool = False,
) -> LanguageModelStream:
    """LM-stage dataset from raw texts: tokenize, concatenate (in order, or in a new order every epoch with
    ``shuffle_documents``), cut into ``batch_size * num_shards`` rows (``num_shards``: the number of processes,
    see ``LanguageModelStream``), read right to left with ``backwards`` (pass the model's
    ``config.backwards``)."""
    tokenized = tokenize_documents(dataset, tokenizer, text_column=text_column, num_proc=num_proc)
    tokens, lengths = _flat_column(tokenized, "input_ids")
    stream = torch.from_numpy(tokens.astype(np.int64))
    return LanguageModelStream(
        torch.split(stream, lengths.tolist()) if shuffle_documents else stream,
        batch_size,
        bptt=bptt,
        variable_bptt=variable_bptt,
        seed=seed,
        num_shards=num_shards,
        shuffle_documents=shuffle_documents,
        backwards=backwards,
    )


def _flat_column(dataset: HFDataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """All values of a list column, row after row, and the length of each row, without a Python loop."""
    table = dataset.with_format("arrow")[:]  # honours a selection or shuffle of the rows
    return pc.list_flatten(table[column]).to_numpy(), pc.list_value_length(table[column]).to_numpy()


def classification_dataset(
    dataset: HFDataset,
    tokenizer: PreTrainedTokenizerBase,
    text_column: str = "text",
    label_column: str = "label",
    num_proc: int | None = None,
) -> HFDataset:
    """Classifier-stage dataset: ``input_ids``, ``attention_mask`` and ``labels`` for every document.

    Batch it with ``train_sampling_strategy="group_by_length"`` (documents of similar length together, so little
    padding) and ``classification_collator(tokenizer)``.
    """
    tokenized = tokenize_documents(dataset, tokenizer, text_column=text_column, num_proc=num_proc)
    if label_column != "labels" and label_column in tokenized.column_names:
        tokenized = tokenized.rename_column(label_column, "labels")
    return tokenized


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's length-grouped sampler, shuffled by a generator seeded with ``seed + epoch``.

    The stock sampler draws from the global random state when an epoch starts, so a run resumed from a checkpoint
    sees other batches than the uninterrupted run would have; here each epoch's order depends only on the seed and
    the epoch (``set_epoch``, which the Trainer's dataloader calls).
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int = 0):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def longest_first(texts: Sequence[str]) -> list[int]:
    """Indices of ``texts`` from the longest to the shortest (in characters), for batched inference.

    Batches of similar lengths waste little work on padding and, under BPT3C, on late chunks where most
    documents of a batch have already ended and the LSTMs run for a few rows only."""
    return sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)


def classification_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None
) -> DataCollatorWithPadding:
    """Pads each batch to its longest document, on the tokenizer's padding side (the classifier takes padding on
    either side: it moves each document's real tokens to the front itself)."""
    if tokenizer.pad_token is None:
        raise ValueError(
            "The tokenizer has no pad token; set one before batching documents of different lengths."
        )
    return DataCollatorWithPadding(tokenizer, padding="longest", pad_to_multiple_of=pad_to_multiple_of)


__all__ = [
    "EpochSeededLengthGroupedSampler",
    "LanguageModelStream",
    "classification_collator",
    "classification_dataset",
    "concatenate_documents",
    "fixed_windows",
    "language_model_stream",
    "longest_first",
    "mean_window_length",
    "sample_window_length",
    "split_into_rows",
    "tokenize_documents",
    "variable_windows",
]
