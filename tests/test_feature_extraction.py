"""Feature extraction: the encoder's document vector (``pooler_output``, what ``pipeline("feature-extraction")``
returns) is the classifier's BPT3C concat pooling; and ``freeze_encoder`` trains a classifier's head only."""

import json
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import default_data_collator, pipeline

from conftest import REVIEWS, pad_batch
from conftest import STAGE_LABELS as LABELS
from conftest import STAGE_REVIEWS as LABELLED_REVIEWS
from hf_ulmfit import (
    AWDLSTMConfig,
    AWDLSTMForCausalLM,
    AWDLSTMForSequenceClassification,
    AWDLSTMModel,
    train_tokenizer,
)
from hf_ulmfit.callbacks import GradualUnfreezingCallback
from hf_ulmfit.cli import main as cli_main
from hf_ulmfit.cli import parse_stage_arguments
from hf_ulmfit.errors import UsageError
from hf_ulmfit.modeling_awd_lstm import reverse_real_tokens
from hf_ulmfit.stages import stage_arguments
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

SIZE = dict(embedding_size=8, hidden_size=12, num_hidden_layers=3, bptt=8, max_len=12)
TEXTS = [
    "great film",
    "It was a long, boring and terrible movie with bad acting, " * 6,  # far beyond max_len and bptt
    "bad",
    "One of the best films I have seen this year! The acting was superb.",
    "ok",
    "Terrible plot, bad acting, a waste of time. " * 3,
    "loved it!",
    "fine",
    "A wonderful film with great acting.",
]


def random_docs(lengths, vocab_size=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (n,), generator=generator) for n in lengths]


def bpt3c_vectors(classifier: AWDLSTMForSequenceClassification, docs: list[torch.Tensor]) -> torch.Tensor:
    """The classifier's own pooled vectors (``pool_document``: chunked, state carried), one document at a time,
    each read in the classifier's direction as its forward does."""
    vectors = []
    with torch.no_grad():
        for doc in docs:
            ids = reverse_real_tokens(doc[None])[0] if classifier.config.backwards else doc[None]
            vectors.append(classifier.pool_document(ids, torch.tensor([len(doc)]))[0])
    return torch.stack(vectors)


def encoder_of(classifier: AWDLSTMForSequenceClassification) -> AWDLSTMModel:
    encoder = AWDLSTMModel(classifier.config).eval()
    encoder.load_state_dict(classifier.awd_lstm.state_dict())
    return encoder


# -- the encoder's document vector -----------------------------------------------------------------------------


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pooler_output_is_the_classifiers_bpt3c_vector_batched_or_alone(tiny_config, backwards, side):
    """Lengths around and far beyond bptt (8) and max_len (12), padded on either side."""
    config = tiny_config(num_labels=2, bptt=8, max_len=12, backwards=backwards)
    classifier = AWDLSTMForSequenceClassification(config).eval()
    encoder = encoder_of(classifier)
    docs = random_docs([45, 12, 3, 13, 8, 1, 30])
    ids, mask = pad_batch(docs, side)
    with torch.no_grad():
        batched = encoder(ids, attention_mask=mask).pooler_output
        alone = torch.cat([encoder(doc[None]).pooler_output for doc in docs])
    assert batched.shape == (len(docs), 3 * config.embedding_size)
    expected = bpt3c_vectors(classifier, docs)
    torch.testing.assert_close(alone, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=0)


def test_pooler_output_pools_the_last_max_len_tokens_by_hand(tiny_config):
    """Independent of ``ConcatPooling``: [last, max, mean] of the last max_len outputs, by hand."""
    encoder = AWDLSTMModel(tiny_config(max_len=12)).eval()
    with torch.no_grad():
        for doc in random_docs([40, 12, 5]):
            out = encoder(doc[None])
            h = out.last_hidden_state[0, -12:]
            expected = torch.cat([h[-1], h.max(dim=0).values, h.mean(dim=0)])
            torch.testing.assert_close(out.pooler_output[0], expected, atol=1e-6, rtol=0)
            assert out[0] is out.pooler_output and out.to_tuple()[0] is out.pooler_output


def test_with_a_cache_only_this_calls_tokens_are_pooled(tiny_config):
    encoder = AWDLSTMModel(tiny_config(max_len=50)).eval()
    (doc,) = random_docs([30])
    with torch.no_grad():
        whole = encoder(doc[None])
        first = encoder(doc[None, :20])
        second = encoder(doc[None, 20:], cache=first.cache)
    h = whole.last_hidden_state[0, 20:]  # the continued call's outputs, in the context of the whole stream
    expected = torch.cat([h[-1], h.max(dim=0).values, h.mean(dim=0)])
    torch.testing.assert_close(second.pooler_output[0], expected, atol=1e-6, rtol=0)


def test_a_row_without_real_tokens_gets_zeros(tiny_config):
    encoder = AWDLSTMModel(tiny_config()).eval()
    ids = torch.randint(4, 60, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    with torch.no_grad():
        pooled = encoder(ids, attention_mask=mask).pooler_output
    assert torch.isfinite(pooled).all() and torch.equal(pooled[1], torch.zeros_like(pooled[1]))


def test_the_language_model_does_not_compute_the_pooled_output(tiny_config):
    lm = AWDLSTMForCausalLM(tiny_config()).eval()
    seen = []
    lm.awd_lstm.register_forward_hook(lambda module, args, output: seen.append(output.pooler_output))
    ids = torch.randint(4, 60, (2, 7))
    with torch.no_grad():
        lm(ids, labels=ids)
        lm.generate(ids[:1], max_new_tokens=3, do_sample=False)
    assert len(seen) >= 4 and all(pooled is None for pooled in seen)
    assert lm.awd_lstm(ids).pooler_output is not None  # the bare encoder does compute it
    assert lm.awd_lstm(ids, output_pooled=False).pooler_output is None


# -- pipeline("feature-extraction") on saved directories ------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tokenizer, an LM and a classifier (other weights) saved as the training stages save them."""
    tokenizer = train_tokenizer(REVIEWS * 20, vocab_size=300, show_progress=False)
    size = dict(vocab_size=len(tokenizer), **SIZE)
    labels = dict(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    torch.manual_seed(0)
    models = {
        "lm": AWDLSTMForCausalLM(AWDLSTMConfig(**size)),
        "classifier": AWDLSTMForSequenceClassification(AWDLSTMConfig(**size, **labels)),
    }
    dirs = {}
    for name, model in models.items():
        dirs[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(dirs[name])
        tokenizer.save_pretrained(dirs[name])
    return dirs, tokenizer


@pytest.mark.parametrize("kind", ["lm", "classifier"])
def test_pipeline_gives_one_bpt3c_vector_per_document(saved, kind):
    dirs, tokenizer = saved
    extract = pipeline("feature-extraction", model=str(dirs[kind]))
    docs = [torch.tensor(tokenizer(text)["input_ids"]) for text in TEXTS]
    assert max(len(doc) for doc in docs) > 3 * max(SIZE["bptt"], SIZE["max_len"])
    assert min(len(doc) for doc in docs) < min(SIZE["bptt"], SIZE["max_len"])

    features = extract(TEXTS)
    assert len(features) == len(TEXTS)
    vectors = np.array(features, dtype=np.float32)
    assert vectors.shape == (len(TEXTS), 1, 3 * SIZE["embedding_size"])  # one vector per document
    # The saved encoder's weights in a classifier (for an LM: the classifier stage 3 starts from).
    saved_model = {"lm": AWDLSTMForCausalLM, "classifier": AWDLSTMForSequenceClassification}[kind]
    classifier = AWDLSTMForSequenceClassification(AWDLSTMConfig.from_pretrained(dirs[kind])).eval()
    classifier.awd_lstm.load_state_dict(saved_model.from_pretrained(dirs[kind]).awd_lstm.state_dict())
    expected = bpt3c_vectors(classifier, docs)
    torch.testing.assert_close(torch.tensor(vectors[:, 0]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(extract(TEXTS[1], return_tensors=True)[0], expected[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pipeline_batched_equals_one_at_a_time(saved, side):
    dirs, _ = saved
    extract = pipeline("feature-extraction", model=str(dirs["classifier"]))
    extract.tokenizer.padding_side = side
    alone = torch.tensor(np.array([extract(text) for text in TEXTS], dtype=np.float32))
    batched = torch.tensor(
        np.array(extract(TEXTS, batch_size=8), dtype=np.float32)
    )  # two batches, mixed lengths, padded
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


# -- freeze_encoder: the head trains alone on the encoder's features --------------------------------------------


def tiny_classifier(seed: int = 0) -> AWDLSTMForSequenceClassification:
    torch.manual_seed(seed)
    return AWDLSTMForSequenceClassification(AWDLSTMConfig(vocab_size=50, **SIZE, num_labels=2))


def examples(count: int = 16) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50, (count, 7), generator=generator)
    return [{"input_ids": row, "labels": torch.tensor(int(row[1] > 26))} for row in ids]


def training_args(output_dir, **kwargs) -> ULMFiTTrainingArguments:
    defaults = dict(
        output_dir=str(output_dir),
        learning_rate=5e-2,
        weight_decay=0.5,  # a frozen parameter inside the optimizer would still decay
        num_train_epochs=2,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    return ULMFiTTrainingArguments(**{**defaults, **kwargs})


def encoder_tensors(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("awd_lstm.")}


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_encoder_trains_the_head_only(tmp_path, freeze):
    """The same run with and without ``freeze_encoder``: only the flag keeps the encoder as it was."""
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = ULMFiTTrainer(
        model=model,
        args=training_args(tmp_path, freeze_encoder=freeze),
        train_dataset=examples(),
        data_collator=default_data_collator,
    )
    trainer.train()
    after = model.state_dict()
    encoder_kept = [torch.equal(after[k], before[k]) for k in encoder_tensors(model)]
    assert all(encoder_kept) if freeze else not any(encoder_kept)
    head = [k for k in after if k.startswith("head.") and not k.endswith("num_batches_tracked")]
    assert head and not any(
        torch.equal(after[k], before[k]) for k in head
    )  # weights and BatchNorm statistics
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in (model.head.parameters() if freeze else model.parameters())}


def test_freeze_encoder_keeps_the_encoder_dropouts_on_while_the_head_trains(tmp_path):
    """Only the encoder's weights are frozen: it runs in train mode, so its dropouts regularise the head (as in
    gradual unfreezing's first epoch); evaluation runs it in eval mode."""
    model = tiny_classifier()
    assert model.config.weight_dropout > 0 and model.config.hidden_dropout > 0
    modes, encode = [], model.awd_lstm.encode

    def recording_encode(*args, **kwargs):  # the classifier runs its encoder chunk by chunk through encode
        modes.append(model.awd_lstm.training)
        return encode(*args, **kwargs)

    model.awd_lstm.encode = recording_encode
    trainer = ULMFiTTrainer(
        model=model,
        args=training_args(tmp_path, freeze_encoder=True),
        train_dataset=examples(),
        eval_dataset=examples(4),
        data_collator=default_data_collator,
    )
    trainer.train()
    assert modes and all(modes)
    modes.clear()
    trainer.evaluate()
    assert modes and not any(modes)


def test_freeze_encoder_contradicts_gradual_unfreezing_and_needs_a_classifier(tmp_path):
    with pytest.raises(ValueError, match="ask for one of them"):
        training_args(tmp_path, freeze_encoder=True, gradual_unfreezing=True)
    with pytest.raises(ValueError, match="use one"):
        ULMFiTTrainer(
            model=tiny_classifier(),
            args=training_args(tmp_path, freeze_encoder=True),
            callbacks=[GradualUnfreezingCallback()],
        )
    lm = AWDLSTMForCausalLM(AWDLSTMConfig(vocab_size=50, **SIZE))
    with pytest.raises(ValueError, match="AWDLSTMForCausalLM has none"):
        ULMFiTTrainer(model=lm, args=training_args(tmp_path, freeze_encoder=True))


def test_freeze_encoder_fits_the_recipe_and_refuses_gradual_unfreezing(tmp_path):
    """The recipe trains every group from the start, so --freeze_encoder needs nothing turned off; asking for
    gradual unfreezing as well is an error, in Python and on the command line."""
    out = ["--output_dir", str(tmp_path)]
    frozen = stage_arguments("train-classifier", output_dir="o", freeze_encoder=True)[2]
    assert frozen.freeze_encoder is True and frozen.gradual_unfreezing is False
    with pytest.raises(ValueError, match="ask for one of them"):
        stage_arguments("train-classifier", output_dir="o", freeze_encoder=True, gradual_unfreezing=True)
    assert parse_stage_arguments("train-classifier", [*out, "--freeze_encoder"])[2].freeze_encoder is True
    assert parse_stage_arguments(
        "train-classifier", [*out, "--freeze_encoder", "false", "--gradual_unfreezing"]
    )[2].gradual_unfreezing
    with pytest.raises(UsageError, match="ask for one of them"):
        parse_stage_arguments("train-classifier", [*out, "--freeze_encoder", "--gradual_unfreezing"])


def test_train_classifier_freeze_encoder_from_the_command_line(tmp_path, capsys, caplog):
    """A real (tiny) stage-3 run: the saved classifier's encoder is the LM's, bit for bit."""
    tokenizer = train_tokenizer(REVIEWS * 20, vocab_size=300, show_progress=False)
    config = AWDLSTMConfig.for_language_model(vocab_size=len(tokenizer), **SIZE)
    torch.manual_seed(0)
    lm = AWDLSTMForCausalLM(config)
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    Dataset.from_dict({"text": LABELLED_REVIEWS, "label": LABELS}).to_json(tmp_path / "train.jsonl")
    with pytest.raises(SystemExit):
        cli_main(["train-classifier", "--help"])
    assert "--freeze_encoder (default: False)" in capsys.readouterr().out

    flags = (
        f"train-classifier --model_name_or_path {tmp_path / 'lm'} --train_file {tmp_path / 'train.jsonl'} "
        f"--output_dir {tmp_path / 'classifier'} --max_steps 4 --per_device_train_batch_size 4 "
        "--learning_rate 0.05 --weight_decay 0.5 --report_to none --save_strategy no --seed 0 "
        "--disable_tqdm true --use_cpu true --bf16 false --freeze_encoder"
    )
    caplog.set_level(logging.INFO, logger="hf_ulmfit.trainer")
    assert cli_main(flags.split()) == 0

    classifier = AWDLSTMForSequenceClassification.from_pretrained(tmp_path / "classifier")
    saved = classifier.state_dict()
    for name, tensor in lm.awd_lstm.state_dict().items():
        assert torch.equal(saved[f"awd_lstm.{name}"], tensor), name
    batch_norm = classifier.head.layers[0]
    assert int(batch_norm.num_batches_tracked) == 4 and batch_norm.running_mean.abs().sum() > 0
    args = json.loads((tmp_path / "classifier" / "training_args.json").read_text())
    assert args["freeze_encoder"] is True and args["gradual_unfreezing"] is False
    assert "freeze_encoder: only the head trains, without gradual unfreezing" in caplog.text
    assert "| encoder frozen (head only) | True |" in (tmp_path / "classifier" / "README.md").read_text()
