import logging

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from conftest import pad_batch
from hf_ulmfit import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, AWDLSTMModel
from hf_ulmfit.modeling_awd_lstm import LockedDropout, embed_with_word_dropout

NO_DROPOUT = dict(
    embedding_dropout=0.0, input_dropout=0.0, weight_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0
)


def random_docs(lengths, vocab_size=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (n,), generator=generator) for n in lengths]


# -- encoder ------------------------------------------------------------------------------------------------


def test_layer_widths_and_plain_state_dict_keys(tiny_config):
    model = AWDLSTMModel(tiny_config())
    assert [(lstm.input_size, lstm.hidden_size) for lstm in model.layers] == [(8, 12), (12, 12), (12, 8)]
    keys = set(model.state_dict())
    assert "layers.0.weight_hh_l0" in keys and not any("raw" in key for key in keys)
    assert model.embed_tokens.weight.abs().max() <= 0.1  # U(-0.1, 0.1)


def test_feeding_in_chunks_with_state_equals_feeding_whole(tiny_config):
    model = AWDLSTMModel(tiny_config()).eval()
    ids = torch.randint(0, 60, (3, 50))
    whole = model(ids)
    outputs, state = [], None
    for start in range(0, 50, 13):
        piece = model(ids[:, start : start + 13], cache=state)
        outputs.append(piece.last_hidden_state)
        state = piece.cache
    torch.testing.assert_close(torch.cat(outputs, dim=1), whole.last_hidden_state, atol=1e-6, rtol=0)
    for (h, c), (h_whole, c_whole) in zip(state, whole.cache):
        torch.testing.assert_close(h, h_whole, atol=1e-6, rtol=0)
        torch.testing.assert_close(c, c_whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_is_skipped_on_either_side(tiny_config, side):
    """A padded batch gives each row the outputs and final state it gets alone."""
    model = AWDLSTMModel(tiny_config()).eval()
    docs = random_docs([9, 4, 7])
    ids, mask = pad_batch(docs, side)
    batched = model(ids, attention_mask=mask)
    for row, doc in enumerate(docs):
        alone = model(doc[None])
        real = mask[row].bool()
        torch.testing.assert_close(
            batched.last_hidden_state[row, real], alone.last_hidden_state[0], atol=1e-6, rtol=0
        )
        assert batched.last_hidden_state[row, ~real].abs().max() == 0 if (~real).any() else True
        for (h, c), (h_alone, c_alone) in zip(batched.cache, alone.cache):
            torch.testing.assert_close(h[row], h_alone[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(c[row], c_alone[0], atol=1e-6, rtol=0)


def test_a_row_with_no_real_token_keeps_its_state(tiny_config):
    model = AWDLSTMModel(tiny_config()).eval()
    first = model(torch.randint(4, 60, (2, 5)))
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    second = model(torch.randint(4, 60, (2, 3)), attention_mask=mask, cache=first.cache)
    for (h, c), (h_before, c_before) in zip(second.cache, first.cache):
        assert torch.equal(h[1], h_before[1]) and torch.equal(c[1], c_before[1])
        assert not torch.equal(h[0], h_before[0])


def test_hidden_states_has_the_embedding_and_every_layer(tiny_config):
    model = AWDLSTMModel(tiny_config()).eval()
    out = model(torch.randint(0, 60, (2, 5)), output_hidden_states=True)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 5, 8), (2, 5, 12), (2, 5, 12), (2, 5, 8)]
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


# -- dropouts -----------------------------------------------------------------------------------------------


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(20, 6)
    ids = torch.arange(20).repeat(2, 5)  # every word many times, in both rows
    out = embed_with_word_dropout(embedding, ids, p=0.5, training=True)
    dropped = out.abs().sum(-1) == 0  # (batch, seq_len)
    for word in range(20):
        at_word = dropped[ids == word]
        assert at_word.all() or not at_word.any()  # a word is dropped everywhere or nowhere
    kept = ~dropped
    torch.testing.assert_close(out[kept], embedding(ids)[kept] * 2.0)  # scaled by 1/(1-p)
    assert 0 < dropped.float().mean() < 1
    assert torch.equal(embed_with_word_dropout(embedding, ids, p=0.5, training=False), embedding(ids))


def test_locked_dropout_shares_its_mask_over_time():
    torch.manual_seed(0)
    dropout = LockedDropout(0.5).train()
    out = dropout(torch.ones(3, 10, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same mask at every time step
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(dropout.eval()(torch.ones(3, 10, 16)), torch.ones(3, 10, 16))


def test_weight_dropout_masks_hidden_to_hidden_weights_for_one_call_only(tiny_config):
    torch.manual_seed(0)
    config = tiny_config(**{**NO_DROPOUT, "weight_dropout": 0.5})
    model = AWDLSTMModel(config).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 60, (2, 6))
    model(ids).last_hidden_state.sum().backward()
    grad = model.layers[0].weight_hh_l0.grad
    # Dropped weights get exactly zero gradient; about half are dropped.
    assert 0.3 < (grad == 0).float().mean() < 0.7
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights untouched
    model.eval()
    torch.testing.assert_close(model(ids).last_hidden_state, model(ids).last_hidden_state)
    assert (model.layers[0].weight_ih_l0.grad != 0).float().mean() > 0.9  # input weights are not dropped


# -- language model ----------------------------------------------------------------------------------------


def test_decoder_is_tied_and_not_saved_twice(tiny_config, tmp_path):
    model = AWDLSTMForCausalLM(tiny_config())
    assert model.decoder.weight is model.awd_lstm.embed_tokens.weight
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "decoder.weight" not in keys and "decoder.bias" in keys
    loaded = AWDLSTMForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.decoder.weight is loaded.awd_lstm.embed_tokens.weight
    ids = torch.randint(0, 60, (2, 7))
    torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits, atol=0, rtol=0)


def test_untied_decoder_is_saved_and_loaded(tiny_config, tmp_path):
    model = AWDLSTMForCausalLM(tiny_config(tie_word_embeddings=False))
    assert model.decoder.weight is not model.awd_lstm.embed_tokens.weight
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert "decoder.weight" in set(f.keys())
    loaded = AWDLSTMForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.decoder.weight, model.decoder.weight, atol=0, rtol=0)


def test_loss_is_shifted_cross_entropy_ignoring_minus_100(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 60, (2, 9))
    labels = ids.clone()
    labels[0, 4] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(
        out.logits[:, :-1].reshape(-1, 60), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)
    # Targets already aligned with the inputs (BPTT streams) count every position.
    targets = torch.randint(0, 60, (2, 9))
    aligned = model(ids, shift_labels=targets)
    torch.testing.assert_close(
        aligned.loss, F.cross_entropy(aligned.logits.reshape(-1, 60), targets.reshape(-1))
    )


def test_ar_and_tar_are_added_in_training_only(tiny_config):
    config = tiny_config(**NO_DROPOUT, activation_regularization=2.0, temporal_activation_regularization=1.0)
    model = AWDLSTMForCausalLM(config)
    ids = torch.randint(0, 60, (2, 9))
    train_out = model.train()(ids, labels=ids, output_hidden_states=True)
    raw = train_out.hidden_states[-1]
    cross_entropy = F.cross_entropy(train_out.logits[:, :-1].reshape(-1, 60), ids[:, 1:].reshape(-1))
    ar = raw.pow(2).mean()  # no output dropout here, so dropped == raw
    tar = (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    torch.testing.assert_close(train_out.loss, cross_entropy + 2.0 * ar + 1.0 * tar)
    eval_out = model.eval()(ids, labels=ids)
    torch.testing.assert_close(eval_out.loss, cross_entropy)


def test_lm_layer_groups(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config())
    groups = model.layer_groups
    assert len(groups) == 4
    for depth in range(3):
        assert list(groups[depth]) == [model.awd_lstm.layers[depth]]
    assert list(groups[3]) == [model.awd_lstm.embed_tokens, model.decoder]
    assert_groups_partition_parameters(model, groups)


def assert_groups_partition_parameters(model, groups):
    seen = [id(p) for group in groups for p in group.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}


# -- generation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "generation",
    [dict(do_sample=False), dict(do_sample=True, top_k=10), dict(do_sample=False, num_beams=3)],
    ids=["greedy", "sampling", "beam"],
)
def test_generation_with_state_equals_generation_by_recompute(tiny_config, generation):
    model = AWDLSTMForCausalLM(tiny_config()).eval()
    prompt = torch.randint(4, 60, (2, 6))
    torch.manual_seed(0)
    with_state = model.generate(prompt, max_new_tokens=12, **generation)
    torch.manual_seed(0)
    recomputed = model.generate(prompt, max_new_tokens=12, use_cache=False, **generation)
    assert with_state.shape == (2, 18)
    assert torch.equal(with_state, recomputed)


def test_generation_feeds_only_the_new_token(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config()).eval()
    lengths = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    model.generate(torch.randint(4, 60, (1, 6)), max_new_tokens=5, do_sample=False)
    assert lengths == [6, 1, 1, 1, 1]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config()).eval()
    prompts = random_docs([3, 8, 5])
    ids, mask = pad_batch(prompts, side="left")
    batched = model.generate(ids, attention_mask=mask, max_new_tokens=7, do_sample=False)
    for row, prompt in enumerate(prompts):
        alone = model.generate(prompt[None], max_new_tokens=7, do_sample=False)
        assert torch.equal(batched[row, -7:], alone[0, -7:])


# -- classifier ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_len", [1440, 100])
@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_logits_equal_one_document_at_a_time(tiny_config, max_len, side):
    """The case fastai gets wrong: lengths 150, 100 and 74 in one batch with bptt 72."""
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=3, bptt=72, max_len=max_len)).eval()
    docs = random_docs([150, 100, 74, 3, 72, 145])
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        alone = torch.cat([model(doc[None]).logits for doc in docs])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_bpt3c_pooling_equals_whole_document_pooling_by_hand(tiny_config):
    """Independent computation: encode each document whole, pool its last max_len outputs by hand."""
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=2, bptt=10, max_len=25)).eval()
    docs = random_docs([60, 25, 7, 31])
    ids, mask = pad_batch(docs)
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        pooled = []
        for doc in docs:
            h = model.awd_lstm(doc[None]).last_hidden_state[0, -25:]  # (<= max_len, emb)
            pooled.append(torch.cat([h[-1], h.max(dim=0).values, h.mean(dim=0)]))
        expected = model.head(torch.stack(pooled))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_gradients_reach_only_the_pooled_window(tiny_config):
    """BPT3C: chunks before the last max_len tokens run without autograd (so memory depends on max_len)."""
    model = AWDLSTMForSequenceClassification(tiny_config(**NO_DROPOUT, num_labels=2, bptt=10, max_len=20))
    early, late = 10, 11  # token ids used only before / only inside the pooled window
    doc = torch.cat([torch.full((40,), early), torch.full((20,), late)])[None]
    model.train()
    model(doc.repeat(2, 1), labels=torch.tensor([0, 1])).loss.backward()
    grad = model.awd_lstm.embed_tokens.weight.grad
    assert grad[early].abs().sum() == 0
    assert grad[late].abs().sum() > 0


def test_empty_rows_are_rejected_with_a_clear_error(tiny_config):
    model = AWDLSTMForSequenceClassification(tiny_config()).eval()
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.tensor([[5, 6], [1, 1]]), attention_mask=torch.tensor([[1, 1], [0, 0]]))


def test_head_is_batchnorm_dropout_linear_blocks(tiny_config):
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=5, classifier_hidden_sizes=[50]))
    kinds = [type(m).__name__ for m in model.head.layers]
    assert kinds == ["BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert model.head.layers[0].num_features == 3 * 8 and model.head.layers[-1].out_features == 5


def test_a_training_batch_of_one_document_uses_running_statistics(tiny_config):
    model = AWDLSTMForSequenceClassification(
        tiny_config(**NO_DROPOUT, classifier_dropouts=[0.0, 0.0])
    ).train()
    doc = torch.randint(4, 60, (1, 9))
    out = model(doc, labels=torch.tensor([1]))
    out.loss.backward()
    assert model.head.layers[-1].weight.grad.abs().sum() > 0
    torch.testing.assert_close(out.logits, model.eval()(doc).logits)  # the same normalisation as in eval


def test_classifier_layer_groups(tiny_config):
    model = AWDLSTMForSequenceClassification(tiny_config())
    groups = model.layer_groups
    assert [list(g) for g in groups] == [
        [model.awd_lstm.embed_tokens],
        [model.awd_lstm.layers[0]],
        [model.awd_lstm.layers[1]],
        [model.awd_lstm.layers[2]],
        [model.head],
    ]
    assert_groups_partition_parameters(model, groups)


@pytest.mark.parametrize(
    "problem_type, labels, loss_fn",
    [
        (
            "single_label_classification",
            torch.tensor([0, 2, 1]),
            lambda logits, y: F.cross_entropy(logits, y),
        ),
        (
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
            F.binary_cross_entropy_with_logits,
        ),
    ],
)
def test_problem_types(tiny_config, problem_type, labels, loss_fn):
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=3, problem_type=problem_type)).eval()
    out = model(torch.randint(4, 60, (3, 12)), labels=labels)
    torch.testing.assert_close(out.loss, loss_fn(out.logits, labels))


def test_regression(tiny_config):
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=1, problem_type="regression")).eval()
    targets = torch.tensor([0.5, -1.0])
    out = model(torch.randint(4, 60, (2, 12)), labels=targets)
    assert out.logits.shape == (2, 1)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), targets))


def test_lm_checkpoint_loads_into_classifier_without_decoder_warnings(tiny_config, tmp_path, caplog):
    lm = AWDLSTMForCausalLM(tiny_config())
    lm.save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="transformers"):
        classifier = AWDLSTMForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert "MISSING" in caplog.text  # the load report is captured: the new head is reported...
    assert "decoder" not in caplog.text  # ...but the LM's decoder is not
    assert classifier.config.num_labels == 4 and classifier.head.layers[-1].out_features == 4
    for name, tensor in lm.awd_lstm.state_dict().items():
        assert torch.equal(classifier.awd_lstm.state_dict()[name], tensor), name
    batch_norm = classifier.head.layers[0]
    assert torch.equal(batch_norm.running_var, torch.ones_like(batch_norm.running_var))
    assert torch.isfinite(classifier.eval()(torch.randint(4, 60, (2, 5))).logits).all()
