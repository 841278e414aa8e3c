"""Data pipelines: the LM stream (contiguous rows, shifted targets, variable BPTT) and the classifier batches."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerFast, default_data_collator

from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
from hf_ulmfit.data import (
    EpochSeededLengthGroupedSampler,
    LanguageModelStream,
    classification_collator,
    classification_dataset,
    concatenate_documents,
    fixed_windows,
    language_model_stream,
    longest_first,
    mean_window_length,
    sample_window_length,
    variable_windows,
)
from hf_ulmfit.modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "fast", "slow", "big", "small", "red", "blue"]
SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]  # ids 0..3, as AWDLSTMConfig's defaults expect


def _tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer that starts every text with <bos>."""
    vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 15))) for _ in range(count)]


def _documents(count: int = 30, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[2, *rng.integers(4, 50, size=rng.integers(1, 20)).tolist()] for _ in range(count)]


def _read_in_order(dataset: LanguageModelStream) -> list[dict[str, torch.Tensor]]:
    loader = DataLoader(
        dataset, batch_size=dataset.batch_size, shuffle=False, collate_fn=default_data_collator
    )
    return list(loader)


def _assert_rows_continue(
    batches: list[dict[str, torch.Tensor]], stream: torch.Tensor, batch_size: int
) -> None:
    """Batch t+1 continues every row of batch t; targets are the inputs shifted by one token."""
    row_length = len(stream) // batch_size
    for row in range(batch_size):
        expected = stream[row * row_length : (row + 1) * row_length]  # row r = r-th contiguous slice
        inputs = torch.cat([batch["input_ids"][row] for batch in batches])
        targets = torch.cat([batch["shift_labels"][row] for batch in batches])
        assert torch.equal(inputs, expected[: len(inputs)])
        assert torch.equal(targets, expected[1 : len(inputs) + 1])


# -- LM stream ---------------------------------------------------------------------------------------------


def test_documents_are_concatenated_in_order_with_their_bos():
    documents = _documents()
    stream = concatenate_documents(documents)
    assert stream.tolist() == [token for document in documents for token in document]
    assert int((stream == 2).sum()) == len(documents)


def test_batches_continue_every_row_and_targets_are_shifted():
    documents = _documents()
    stream = concatenate_documents(documents)
    dataset = LanguageModelStream(documents, batch_size=4, bptt=7)
    batches = _read_in_order(dataset)
    _assert_rows_continue(batches, stream, batch_size=4)
    # Every position of a row but its last is an input, including the last position of each window.
    row_length = len(stream) // 4
    assert sum(batch["input_ids"].shape[1] for batch in batches) == row_length - 1
    assert all(batch["input_ids"].shape == batch["shift_labels"].shape for batch in batches)


def test_fixed_windows_cover_every_position():
    assert fixed_windows(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert fixed_windows(8, 4) == [(0, 4), (4, 4)]


def test_variable_windows_are_contiguous_nonempty_and_as_many_as_fixed():
    for seed in range(20):
        windows = variable_windows(1000, 70, np.random.default_rng(seed))
        assert len(windows) == len(fixed_windows(1000, 70))
        assert windows[0][0] == 0
        assert all(length >= 1 for _, length in windows)
        assert all(
            start + length == next_start for (start, length), (next_start, _) in zip(windows, windows[1:])
        )
        assert windows[-1][0] + windows[-1][1] <= 1000


def test_variable_length_distribution_follows_awd_lstm():
    rng = np.random.default_rng(0)
    lengths = np.array([sample_window_length(rng, 70) for _ in range(20000)])
    half = lengths < 52  # bptt/2 = 35 with std 5 vs 70 with std 5
    assert 0.04 < half.mean() < 0.06  # p = 0.05
    assert abs(lengths[~half].mean() - 70) < 0.3
    assert abs(lengths[~half].std() - 5) < 0.3
    assert abs(lengths[half].mean() - 35) < 1.0
    assert lengths.min() >= 5


def test_variable_bptt_redraws_each_epoch_reproducibly():
    stream = torch.arange(4000)
    dataset = LanguageModelStream(stream, batch_size=4, bptt=20, variable_bptt=True, seed=3)
    epoch0 = list(dataset.windows)
    dataset.set_epoch(1)
    epoch1 = list(dataset.windows)
    assert epoch0 != epoch1
    assert len(epoch0) == len(epoch1) == len(fixed_windows(999, 20))
    again = LanguageModelStream(stream, batch_size=4, bptt=20, variable_bptt=True, seed=3)
    again.set_epoch(1)
    assert again.windows == epoch1
    # Rows still continue across batches with variable lengths.
    _assert_rows_continue(_read_in_order(dataset), stream, batch_size=4)


def test_shuffled_documents_take_a_new_order_each_epoch_reproducibly():
    documents = _documents(count=60)
    dataset = LanguageModelStream(documents, batch_size=3, bptt=6, seed=5, shuffle_documents=True)
    streams = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        streams.append(dataset.rows.flatten().clone())
        # Within an epoch the rows still continue across batches, and the stream is whole documents.
        order = np.random.default_rng([5, epoch]).permutation(len(documents))
        expected = concatenate_documents([documents[index] for index in order])
        _assert_rows_continue(_read_in_order(dataset), expected, batch_size=3)
    assert not torch.equal(streams[0], streams[1]) and not torch.equal(streams[1], streams[2])
    assert not torch.equal(streams[0], concatenate_documents(documents)[: len(streams[0])])  # epoch 0 too
    again = LanguageModelStream(documents, batch_size=3, bptt=6, seed=5, shuffle_documents=True)
    again.set_epoch(2)
    assert torch.equal(again.rows.flatten(), streams[2])  # a resumed run sees the same order
    assert len(again) == len(LanguageModelStream(documents, batch_size=3, bptt=6))
    with pytest.raises(ValueError, match="needs the documents"):
        LanguageModelStream(concatenate_documents(documents), batch_size=3, shuffle_documents=True)


def test_language_model_stream_shuffles_whole_tokenized_texts():
    tokenizer = _tokenizer()
    texts = _texts(40)
    dataset = language_model_stream(
        Dataset.from_dict({"text": texts}), tokenizer, batch_size=3, bptt=5, seed=2, shuffle_documents=True
    )
    dataset.set_epoch(1)
    ids = tokenizer(texts)["input_ids"]
    order = np.random.default_rng([2, 1]).permutation(len(texts))
    expected = concatenate_documents([ids[index] for index in order])
    _assert_rows_continue(_read_in_order(dataset), expected, batch_size=3)


def test_stream_too_short_is_rejected():
    with pytest.raises(ValueError, match="too short"):
        LanguageModelStream(torch.arange(5), batch_size=4, bptt=3)


def test_language_model_stream_from_texts():
    tokenizer = _tokenizer()
    texts = _texts(40)
    dataset = language_model_stream(Dataset.from_dict({"text": texts}), tokenizer, batch_size=3, bptt=5)
    expected = concatenate_documents(tokenizer(texts)["input_ids"])
    assert int((expected == tokenizer.bos_token_id).sum()) == len(texts)
    _assert_rows_continue(_read_in_order(dataset), expected, batch_size=3)


def test_trainer_dataloader_keeps_rows_continuous_and_redraws_lengths_per_epoch(tmp_path):
    """Through the v5 Trainer: sequential sampling, batch size = rows, set_epoch reaching the dataset."""
    stream = torch.randint(4, 50, (320,))
    dataset = LanguageModelStream(stream, batch_size=4, bptt=8, variable_bptt=True, seed=1)
    config = AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=3)
    model = AWDLSTMForCausalLM(config)
    seen: list[tuple[int, torch.Tensor]] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((module.training, kwargs["input_ids"].clone())),
        with_kwargs=True,
    )
    args = ULMFiTTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        train_sampling_strategy="sequential",
        dataloader_drop_last=True,
        num_train_epochs=2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = ULMFiTTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=default_data_collator
    )
    trainer.train()
    windows_per_epoch = len(dataset.windows)
    inputs = [ids for training, ids in seen if training]
    assert len(inputs) == 2 * windows_per_epoch
    for epoch in range(2):
        batches = [
            {"input_ids": ids} for ids in inputs[epoch * windows_per_epoch : (epoch + 1) * windows_per_epoch]
        ]
        row_length = len(stream) // 4
        for row in range(4):
            got = torch.cat([batch["input_ids"][row] for batch in batches])
            assert torch.equal(got, stream[row * row_length : row * row_length + len(got)])
    lengths = [ids.shape[1] for ids in inputs]
    assert lengths[:windows_per_epoch] != lengths[windows_per_epoch:]  # redrawn at the second epoch


# -- classifier batches -------------------------------------------------------------------------------------


def test_classification_dataset_tokenizes_in_batches_and_keeps_labels():
    tokenizer = _tokenizer()
    texts = _texts(25)
    raw = Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(25)]})
    dataset = classification_dataset(raw, tokenizer)
    assert set(dataset.column_names) == {"input_ids", "attention_mask", "labels"}
    assert dataset["input_ids"] == tokenizer(texts)["input_ids"]
    assert all(ids[0] == tokenizer.bos_token_id for ids in dataset["input_ids"])
    assert dataset["labels"] == [i % 2 for i in range(25)]


def test_collator_pads_on_the_tokenizer_side():
    tokenizer = _tokenizer()
    features = [{"input_ids": [2, 5, 6, 7], "labels": 0}, {"input_ids": [2, 5], "labels": 1}]
    batch = classification_collator(tokenizer)(features)
    assert batch["input_ids"].tolist() == [[2, 5, 6, 7], [2, 5, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [0, 1]
    tokenizer.padding_side = "left"
    batch = classification_collator(tokenizer)(features)
    assert batch["input_ids"].tolist() == [[2, 5, 6, 7], [1, 1, 2, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]


def test_trainer_groups_classifier_batches_by_length(tmp_path):
    tokenizer = _tokenizer()
    texts = _texts(64, seed=5)
    raw = Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(64)]})
    dataset = classification_dataset(raw, tokenizer)
    config = AWDLSTMConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, num_hidden_layers=3)
    args = ULMFiTTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        train_sampling_strategy="group_by_length",
        report_to=[],
        use_cpu=True,
    )
    trainer = ULMFiTTrainer(
        model=AWDLSTMForSequenceClassification(config),
        args=args,
        train_dataset=dataset,
        data_collator=classification_collator(tokenizer),
        processing_class=tokenizer,
    )
    batches = list(trainer.get_train_dataloader())
    lengths = [length for batch in batches for length in batch["attention_mask"].sum(1).tolist()]
    assert sorted(lengths) == sorted(len(ids) for ids in dataset["input_ids"])
    # The v5 sampler sorts random "megabatches" of 64 // (4 * 4) = 4 batches by decreasing length, then swaps
    # the longest document of all to the very front: past each megabatch's first item, lengths never increase.
    megabatch = 16
    for start in range(0, len(lengths), megabatch):
        rest = lengths[start + 1 : start + megabatch]
        assert rest == sorted(rest, reverse=True)
    assert lengths[0] == max(lengths)
    for batch in batches:  # right padding: real tokens first, then only padding, to the longest of the batch
        mask = batch["attention_mask"]
        assert torch.equal(mask, mask.sort(dim=1, descending=True, stable=True).values)
        assert batch["input_ids"].shape[1] == int(mask.sum(1).max())


def test_length_grouped_order_depends_only_on_seed_and_epoch():
    lengths = [int(n) for n in np.random.default_rng(0).integers(1, 100, size=64)]
    sampler = EpochSeededLengthGroupedSampler(4, lengths, seed=3)
    torch.manual_seed(0)
    first = list(sampler)
    torch.manual_seed(99)  # the global random state plays no part
    assert list(sampler) == first
    assert sorted(first) == list(range(64))
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    fresh = EpochSeededLengthGroupedSampler(4, lengths, seed=3)
    fresh.set_epoch(1)
    assert list(fresh) == second  # what a resumed run sees at epoch 1


def test_longest_first_orders_texts_by_decreasing_length_and_is_a_permutation():
    texts = ["bb", "a", "dddd", "", "ccc", "ee"]
    order = longest_first(texts)
    assert sorted(order) == list(range(len(texts)))
    assert [len(texts[i]) for i in order] == sorted(map(len, texts), reverse=True)


def test_the_mean_window_length_is_the_mean_of_sampled_windows():
    rng = np.random.default_rng(0)
    lengths = [sample_window_length(rng, 72) for _ in range(40_000)]
    assert mean_window_length(72) == pytest.approx(np.mean(lengths), rel=0.01)
