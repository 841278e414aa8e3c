"""Bidirectional ULMFiT (section 3.4): backward models, which read every text right to left themselves, and the
forward + backward ensemble as one model.

The reference for a backward model is always an independent computation: the same weights with
``backwards=False`` on each document reversed by hand in Python.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, default_data_collator, pipeline

from conftest import REVIEWS, pad_batch
from conftest import STAGE_LABELS as LABELS
from conftest import STAGE_REVIEWS as LABELLED_REVIEWS
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, train_tokenizer
from hf_ulmfit.bidirectional import combine_bidirectional
from hf_ulmfit.cli import main as cli_main
from hf_ulmfit.cli import parse_stage_arguments
from hf_ulmfit.data import LanguageModelStream
from hf_ulmfit.errors import UsageError
from hf_ulmfit.export import export_onnx_classifier
from hf_ulmfit.modeling_awd_lstm import ensemble_logits, reverse_real_tokens
from hf_ulmfit.stages import ModelArguments, _new_config, finetune_language_model, train_classifier
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

LABEL_NAMES = {"id2label": {0: "neg", 1: "pos", 2: "meh"}, "label2id": {"neg": 0, "pos": 1, "meh": 2}}
TEXTS = ["great film", "bad", "It was a long, boring and terrible movie with bad acting " * 3, "ok, fine"]
QUICK = dict(
    report_to="none",
    save_strategy="no",
    seed=0,
    per_device_train_batch_size=2,
    per_device_eval_batch_size=2,
    disable_tqdm=True,
    bf16=False,
    use_cpu=True,
)


def random_docs(lengths, vocab_size=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (n,), generator=generator) for n in lengths]


def reversed_by_hand(doc: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(reversed(doc.tolist())))


def forward_twin(model):
    """The same weights, reading forwards."""
    config = AWDLSTMConfig(**{**model.config.to_diff_dict(), "backwards": False})
    twin = type(model)(config).eval()
    twin.load_state_dict(model.state_dict())
    return twin


def randomize_batch_norms(model):
    """Running statistics of the scale a tiny random model's features have (a few hundredths), as training would
    leave them, so the head's batch norms bring differences between documents to unit scale."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.05, 0.05)
            module.running_var.uniform_(0.001, 0.01)
    return model


# -- reversing the real tokens --------------------------------------------------------------------------------


def test_reverse_real_tokens_reverses_each_rows_real_tokens_where_they_are():
    pad = 1
    rows = [
        [5, 6, 7, pad, pad],
        [pad, pad, 5, 6, 7],
        [5, pad, 6, 7, pad],
        [8, 9, 10, 11, 12],
        [pad, 9, pad, pad, pad],
    ]
    ids = torch.tensor(rows)
    mask = (ids != pad).long()
    reversed_ids, index = reverse_real_tokens(ids, mask)
    for row, got in zip(rows, reversed_ids.tolist()):
        real = iter(reversed([token for token in row if token != pad]))
        assert got == [token if token == pad else next(real) for token in row]
    assert torch.equal(reverse_real_tokens(reversed_ids, mask)[0], ids)  # its own inverse
    assert torch.equal(ids.gather(1, index), reversed_ids)
    assert reverse_real_tokens(ids)[0].tolist() == [list(reversed(row)) for row in rows]  # no mask: all real


# -- a backward model equals a forward one on hand-reversed texts -----------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_backward_classifier_equals_forward_one_on_documents_reversed_by_hand(tiny_config, side):
    """Mixed lengths around bptt and max_len, so BPT3C chunks and the pooled window are exercised."""
    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(
        tiny_config(backwards=True, num_labels=3, bptt=7, max_len=12, **LABEL_NAMES)
    )
    model = randomize_batch_norms(model).eval()
    forward = forward_twin(model)
    docs = random_docs([30, 5, 13, 1, 21, 7])
    ids, mask = pad_batch(docs, side)
    reversed_ids, reversed_mask = pad_batch([reversed_by_hand(doc) for doc in docs], side)
    with torch.no_grad():
        backward_logits = model(ids, attention_mask=mask).logits
        expected = forward(reversed_ids, attention_mask=reversed_mask).logits
        forward_logits = forward(ids, attention_mask=mask).logits
    torch.testing.assert_close(backward_logits, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(backward_logits, forward_logits, atol=1e-3)  # the direction matters


def test_backward_classifier_on_scattered_padding_equals_each_document_alone(tiny_config):
    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(tiny_config(backwards=True, num_labels=2, bptt=4, max_len=6))
    model = randomize_batch_norms(model).eval()
    forward = forward_twin(model)
    ids = torch.tensor([[5, 1, 6, 7, 1, 8, 9], [1, 10, 11, 1, 1, 12, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        for row in range(2):
            doc = reversed_by_hand(ids[row, mask[row].bool()])
            torch.testing.assert_close(logits[row], forward(doc[None]).logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_backward_lm_logits_and_state_equal_forward_ones_on_reversed_documents(tiny_config, side):
    """Position t of a backward LM (which predicts the token before t) is position n - 1 - t of the forward LM
    reading the reversed document; the state after the call is the one after the document's first token."""
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(tiny_config(backwards=True)).eval()
    forward = forward_twin(model)
    docs = random_docs([9, 3, 14, 6])
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        for row, doc in enumerate(docs):
            alone = forward(reversed_by_hand(doc)[None])
            real = mask[row].bool()
            torch.testing.assert_close(out.logits[row, real], alone.logits[0].flip(0), atol=1e-5, rtol=0)
            for (h, c), (h_alone, c_alone) in zip(out.cache, alone.cache):
                torch.testing.assert_close(h[row], h_alone[0], atol=1e-6, rtol=0)
                torch.testing.assert_close(c[row], c_alone[0], atol=1e-6, rtol=0)


def test_backward_lm_labels_predict_the_previous_token(tiny_config):
    """labels=input_ids: the backward loss is the forward LM's loss on the reversed documents."""
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(tiny_config(backwards=True)).eval()
    forward = forward_twin(model)
    docs = random_docs([9, 4, 12])
    ids, mask = pad_batch(docs, "right")
    reversed_ids, _ = pad_batch([reversed_by_hand(doc) for doc in docs], "right")
    with torch.no_grad():
        loss = model(ids, attention_mask=mask, labels=ids).loss
        expected = forward(
            reversed_ids, attention_mask=mask, labels=reversed_ids.masked_fill(mask == 0, -100)
        ).loss
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)


def test_generation_from_a_backward_lm_is_refused_with_the_reason(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config(backwards=True)).eval()
    with pytest.raises(ValueError, match="reads text backwards.*cannot continue a prompt"):
        model.generate(torch.tensor([[2, 5, 6]]), max_new_tokens=3, do_sample=False)
    with pytest.raises(ValueError, match="reads text backwards"):
        model.prepare_inputs_for_generation(torch.tensor([[2, 5, 6]]))
    forward = AWDLSTMForCausalLM(tiny_config()).eval()
    assert forward.generate(torch.tensor([[2, 5, 6]]), max_new_tokens=3, do_sample=False).shape == (1, 6)


def test_config_direction_fields_are_validated():
    assert AWDLSTMConfig().backwards is False and AWDLSTMConfig().bidirectional is False
    with pytest.raises(ValueError, match="backwards must be True or False"):
        AWDLSTMConfig(backwards="yes")
    with pytest.raises(ValueError, match="first member reads forwards"):
        AWDLSTMConfig(backwards=True, bidirectional=True)


def test_ensemble_logits_give_the_mean_of_the_members_scores_for_every_problem_type():
    forward, backward = torch.randn(4, 3) * 5, torch.randn(4, 3) * 5
    single = AWDLSTMConfig(num_labels=3)
    torch.testing.assert_close(
        ensemble_logits(forward, backward, single).softmax(-1),
        (forward.softmax(-1) + backward.softmax(-1)) / 2,
    )
    multi = AWDLSTMConfig(num_labels=3, problem_type="multi_label_classification")
    torch.testing.assert_close(
        ensemble_logits(forward, backward, multi).sigmoid(), (forward.sigmoid() + backward.sigmoid()) / 2
    )
    regression = AWDLSTMConfig(num_labels=1, problem_type="regression")
    torch.testing.assert_close(
        ensemble_logits(forward[:, :1], backward[:, :1], regression), (forward + backward)[:, :1] / 2
    )


def test_an_ensemble_has_both_members_in_its_layer_groups_and_no_onnx_export(tiny_config):
    model = AWDLSTMForSequenceClassification(tiny_config(bidirectional=True, num_labels=2))
    groups = model.layer_groups
    assert len(groups) == tiny_config().num_hidden_layers + 2
    grouped = [id(p) for group in groups for p in group.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every parameter, once
    assert model.backward_awd_lstm.embed_tokens in list(groups[0])
    with pytest.raises(ValueError, match="ONNX export covers forward classifiers only"):
        export_onnx_classifier(model, "unused")


# -- the LM stream reads the corpus right to left ----------------------------------------------------------------


def test_backward_stream_reads_the_corpus_right_to_left_with_targets_before_each_token():
    """Tokens 0..20 in 2 rows: reading order is the reversed corpus; items stay in text order for the model."""
    stream = LanguageModelStream(torch.arange(21), batch_size=2, bptt=3, backwards=True)
    # reversed stream 20..0 cut into rows [20..11] and [10..1] (the token 0 fills no whole column)
    first, second = stream[0], stream[1]
    assert first["input_ids"].tolist() == [18, 19, 20] and first["shift_labels"].tolist() == [17, 18, 19]
    assert second["input_ids"].tolist() == [8, 9, 10] and second["shift_labels"].tolist() == [7, 8, 9]
    assert stream[2]["input_ids"].tolist() == [15, 16, 17]  # the next window of row 0: the text before
    assert stream[2]["shift_labels"].tolist() == [14, 15, 16]


def test_backward_lm_over_a_backward_stream_equals_forward_lm_over_the_reversed_corpus(tiny_config):
    """With the state carried between windows, the backward model on the backward stream computes exactly what a
    forward model computes reading the reversed corpus forwards: data and model reverse once each."""
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(tiny_config(backwards=True)).eval()
    forward = forward_twin(model)
    corpus = torch.randint(4, 60, (41,))
    backward_stream = LanguageModelStream(corpus, batch_size=2, bptt=5, backwards=True)
    forward_stream = LanguageModelStream(corpus.flip(0), batch_size=2, bptt=5)
    state = forward_state = None
    with torch.no_grad():
        for start in range(0, len(backward_stream), 2):
            batch = default_data_collator([backward_stream[start], backward_stream[start + 1]])
            reference = default_data_collator([forward_stream[start], forward_stream[start + 1]])
            out = model(batch["input_ids"], cache=state, shift_labels=batch["shift_labels"])
            expected = forward(
                reference["input_ids"], cache=forward_state, shift_labels=reference["shift_labels"]
            )
            torch.testing.assert_close(out.logits.flip(1), expected.logits, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.loss, expected.loss, atol=1e-6, rtol=0)
            state, forward_state = out.cache, expected.cache


def test_the_trainer_refuses_a_stream_read_in_the_other_direction(tiny_config, tmp_path):
    model = AWDLSTMForCausalLM(tiny_config(backwards=True))
    args = ULMFiTTrainingArguments(
        output_dir=str(tmp_path), train_sampling_strategy="sequential", max_steps=1, **QUICK
    )
    stream = LanguageModelStream(torch.randint(4, 60, (50,)), batch_size=2, bptt=5)
    trainer = ULMFiTTrainer(model=model, args=args, train_dataset=stream, data_collator=default_data_collator)
    with pytest.raises(ValueError, match="backwards=False feeds a model with config.backwards=True"):
        trainer.get_train_dataloader()


# -- saving, loading, pipelines ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(REVIEWS * 20, vocab_size=300, show_progress=False)


def classifier(tokenizer, backwards: bool, seed: int, **overrides):
    torch.manual_seed(seed)
    size = dict(embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, max_len=20)
    labels = dict(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    config = AWDLSTMConfig(vocab_size=len(tokenizer), backwards=backwards, **{**size, **labels, **overrides})
    return randomize_batch_norms(AWDLSTMForSequenceClassification(config)).eval()


def save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def pipeline_scores(classify, texts) -> torch.Tensor:
    """(texts, labels) scores of a text-classification pipeline, labels in id order."""
    results = classify(texts, top_k=None)
    return torch.tensor(
        [[{s["label"]: s["score"] for s in r}[label] for label in ("neg", "pos")] for r in results]
    )


@pytest.fixture(scope="module")
def members(tokenizer, tmp_path_factory):
    """A forward and a backward classifier, saved, and their ensemble."""
    root = tmp_path_factory.mktemp("members")
    forward = save(classifier(tokenizer, backwards=False, seed=1), tokenizer, root / "forward")
    backward = save(classifier(tokenizer, backwards=True, seed=2), tokenizer, root / "backward")
    combine_bidirectional(str(forward), str(backward), root / "ensemble")
    return forward, backward, root / "ensemble"


def test_a_backward_classifier_saves_loads_and_runs_in_a_pipeline(members, tokenizer):
    _, backward_dir, _ = members
    loaded = AutoModelForSequenceClassification.from_pretrained(backward_dir).eval()
    assert loaded.config.backwards is True
    assert json.loads((backward_dir / "config.json").read_text())["backwards"] is True
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = loaded(**batch).logits.softmax(-1)
        reversed_docs = [reversed_by_hand(torch.tensor(ids)) for ids in tokenizer(TEXTS)["input_ids"]]
        by_hand = torch.cat([forward_twin(loaded)(doc[None]).logits.softmax(-1) for doc in reversed_docs])
    torch.testing.assert_close(probs, by_hand, atol=1e-5, rtol=0)
    scores = pipeline_scores(pipeline("text-classification", model=str(backward_dir)), TEXTS)
    torch.testing.assert_close(scores, probs, atol=1e-5, rtol=0)


def test_the_ensemble_scores_are_the_mean_of_the_members_softmax(members):
    forward_dir, backward_dir, ensemble_dir = members
    ensemble = AutoModelForSequenceClassification.from_pretrained(ensemble_dir)
    assert ensemble.config.bidirectional is True and ensemble.config.backwards is False
    assert {"model.safetensors", "modeling_awd_lstm.py", "tokenizer.json"} <= {
        p.name for p in ensemble_dir.iterdir()
    }
    forward_scores = pipeline_scores(pipeline("text-classification", model=str(forward_dir)), TEXTS)
    backward_scores = pipeline_scores(pipeline("text-classification", model=str(backward_dir)), TEXTS)
    ensemble_scores = pipeline_scores(pipeline("text-classification", model=str(ensemble_dir)), TEXTS)
    torch.testing.assert_close(ensemble_scores, (forward_scores + backward_scores) / 2, atol=1e-5, rtol=0)
    assert not torch.allclose(forward_scores, backward_scores, atol=1e-3)  # two different members
    batched = pipeline("text-classification", model=str(ensemble_dir))(TEXTS, batch_size=3, top_k=None)
    unbatched = [pipeline("text-classification", model=str(ensemble_dir))(text, top_k=None) for text in TEXTS]
    for a, b in zip(batched, unbatched):
        assert sorted((s["label"], round(s["score"], 5)) for s in a) == sorted(
            (s["label"], round(s["score"], 5)) for s in b
        )


def test_combine_bidirectional_from_the_command_line(members, tmp_path):
    forward_dir, backward_dir, ensemble_dir = members
    out = tmp_path / "cli-ensemble"
    argv = [
        "--forward_model_name_or_path",
        str(forward_dir),
        "--backward_model_name_or_path",
        str(backward_dir),
    ]
    assert cli_main(["combine-bidirectional", *argv, "--output_dir", str(out)]) == 0
    expected = AutoModelForSequenceClassification.from_pretrained(ensemble_dir).state_dict()
    got = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert (
        AutoTokenizer.from_pretrained(out).get_vocab()
        == AutoTokenizer.from_pretrained(forward_dir).get_vocab()
    )


def test_the_ensemble_refuses_members_that_do_not_belong_together(members, tokenizer, tmp_path):
    forward_dir, backward_dir, ensemble_dir = members
    with pytest.raises(UsageError, match="Both .* read forwards"):
        combine_bidirectional(str(forward_dir), str(forward_dir))
    with pytest.raises(UsageError, match="swap --forward_model_name_or_path"):
        combine_bidirectional(str(backward_dir), str(forward_dir))
    with pytest.raises(UsageError, match="already a bidirectional ensemble"):
        combine_bidirectional(str(ensemble_dir), str(backward_dir))
    relabelled = classifier(tokenizer, backwards=True, seed=3)
    relabelled.config.id2label, relabelled.config.label2id = {0: "pos", 1: "neg"}, {"pos": 0, "neg": 1}
    with pytest.raises(UsageError, match="different labels"):
        combine_bidirectional(str(forward_dir), str(save(relabelled, tokenizer, tmp_path / "relabelled")))
    wider = save(classifier(tokenizer, backwards=True, seed=3, hidden_size=16), tokenizer, tmp_path / "wider")
    with pytest.raises(UsageError, match="architectures differ: hidden_size 12 .forward. vs 16"):
        combine_bidirectional(str(forward_dir), str(wider))
    other_tokenizer = train_tokenizer(LABELLED_REVIEWS * 5, vocab_size=len(tokenizer), show_progress=False)
    other = save(classifier(tokenizer, backwards=True, seed=3), other_tokenizer, tmp_path / "other-vocab")
    with pytest.raises(UsageError, match="tokenizers differ"):
        combine_bidirectional(str(forward_dir), str(other))
    lm = AWDLSTMForCausalLM(AWDLSTMConfig(**{**relabelled.config.to_diff_dict(), "backwards": True}))
    with pytest.raises(UsageError, match="not a trained classifier"):
        combine_bidirectional(str(forward_dir), str(save(lm, tokenizer, tmp_path / "lm")))


REMOTE = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_ulmfit"] = None  # this interpreter cannot import hf_ulmfit
    from transformers import AutoModelForSequenceClassification, pipeline
    out = {}
    for name, directory in json.loads(sys.argv[1]).items():
        model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)
        classify = pipeline("text-classification", model=directory, trust_remote_code=True)
        out[name] = {"module": type(model).__module__.split(".")[0], "scores": classify(json.loads(sys.argv[2]), top_k=None)}
    print("RESULT" + json.dumps(out))
    """
)


def test_backward_classifier_and_ensemble_work_as_remote_code(members, tmp_path):
    forward_dir, backward_dir, ensemble_dir = members
    dirs = {"backward": str(backward_dir), "ensemble": str(ensemble_dir)}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE, json.dumps(dirs), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    for name, directory in dirs.items():
        assert out[name]["module"] == "transformers_modules"
        remote = pipeline_scores(lambda texts, top_k, scores=out[name]["scores"]: scores, TEXTS)
        local = pipeline_scores(pipeline("text-classification", model=directory), TEXTS)
        torch.testing.assert_close(remote, local, atol=1e-5, rtol=0)


# -- the stages: --backwards ------------------------------------------------------------------------------------


def test_pretrain_backwards_sets_the_config(tokenizer):
    argv = ["--train_file", "x.txt", "--output_dir", "out"]
    assert parse_stage_arguments("pretrain", [*argv, "--backwards"])[0].backwards is True
    assert parse_stage_arguments("pretrain", argv)[0].backwards is None
    assert _new_config(ModelArguments(backwards=True), tokenizer).backwards is True
    assert _new_config(ModelArguments(config_overrides="backwards=true"), tokenizer).backwards is True
    assert _new_config(ModelArguments(), tokenizer).backwards is False
    with pytest.raises(UsageError, match="contradicts --config_overrides"):
        _new_config(ModelArguments(backwards=False, config_overrides="backwards=true"), tokenizer)


@pytest.fixture(scope="module")
def backward_lm(tokenizer, tmp_path_factory):
    config = AWDLSTMConfig.for_language_model(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, max_len=16
    )
    config.backwards = True
    torch.manual_seed(0)
    return save(AWDLSTMForCausalLM(config), tokenizer, tmp_path_factory.mktemp("backward-lm"))


def test_finetune_lm_and_train_classifier_keep_the_direction_of_their_checkpoint(backward_lm, tmp_path):
    """The stages' trainer refuses a stream in the other direction, so these runs also show that the stage
    builds the backward stream for a backward LM."""
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(REVIEWS * 4) + "\n")
    finetune_language_model(
        model_name_or_path=str(backward_lm),
        train_file=str(texts),
        output_dir=str(tmp_path / "lm"),
        max_steps=2,
        **QUICK,
    )
    assert AWDLSTMConfig.from_pretrained(tmp_path / "lm").backwards is True
    Dataset.from_dict({"text": LABELLED_REVIEWS, "label": LABELS}).to_json(tmp_path / "train.jsonl")
    train_classifier(
        model_name_or_path=str(tmp_path / "lm"),
        train_file=str(tmp_path / "train.jsonl"),
        output_dir=str(tmp_path / "classifier"),
        max_steps=1,
        backwards=True,
        **QUICK,
    )
    assert AWDLSTMConfig.from_pretrained(tmp_path / "classifier").backwards is True


def test_a_backwards_flag_that_contradicts_the_checkpoint_is_a_usage_error(backward_lm, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(REVIEWS) + "\n")
    with pytest.raises(UsageError, match="--backwards False contradicts .*a backward"):
        finetune_language_model(
            model_name_or_path=str(backward_lm),
            train_file=str(texts),
            output_dir=str(tmp_path),
            backwards=False,
        )
    args = [
        "--model_name_or_path",
        str(backward_lm),
        "--train_file",
        str(texts),
        "--output_dir",
        str(tmp_path),
    ]
    assert cli_main(["finetune-lm", *args, "--backwards", "false"]) == 2
