"""CPU inference export: int8 dynamic quantization and ONNX (classifier via BPT3C driver, LM step with state)."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized import dynamic as quantized_dynamic
from transformers import pipeline

from conftest import pad_batch
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from hf_ulmfit.export import (
    CLASSIFIER_HEAD_FILE,
    CLASSIFIER_STEP_FILE,
    ONNX_CONFIG_FILE,
    Int8Embedding,
    OnnxClassifier,
    export_onnx_classifier,
    export_onnx_language_model_step,
    left_align_numpy,
    quantize_for_cpu,
    state_names,
)
from hf_ulmfit.modeling_awd_lstm import left_align
from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

EXPORTER_PARAMS = [
    pytest.param("torchscript"),
    pytest.param(
        "dynamo",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("onnxscript") is None,
            reason="exporter='dynamo' needs onnxscript (torch.onnx.export(dynamo=True)); not installed",
        ),
    ),
]
ONNX_MISSING = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
needs_onnx = pytest.mark.skipif(
    bool(ONNX_MISSING),
    reason=f"ONNX export needs the `export` extra (onnx, onnxruntime); missing: {ONNX_MISSING}",
)

# bptt=8, max_len=20: documents of 1..47 tokens cover one chunk, several chunks, and pooling windows that start
# inside a chunk (length > max_len).
SIZES = dict(embedding_size=16, hidden_size=24, num_hidden_layers=3, bptt=8, max_len=20)
LENGTH_MIXES = {
    "one-token": [1],
    "short": [3, 5, 2],
    "chunk-boundaries": [8, 16, 9, 7],
    "beyond-max-len": [47, 1, 20, 21, 33],
}
CORPUS = [
    "a good film, I loved it",
    "bad movie and boring plot",
    "great acting but long",
    "awful, a waste",
] * 25
TEXTS = ["a good film", "bad", "boring and awful " * 12, "great acting, I loved it!"]


def random_docs(lengths: list[int], vocab_size: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab_size, (n,), generator=generator) for n in lengths]


def calibrated_classifier(config: AWDLSTMConfig, seed: int = 0) -> AWDLSTMForSequenceClassification:
    """A random-weight classifier whose first BatchNorm has the running statistics of random documents, as a
    trained one would, so its logits differ from document to document (a fresh one's barely do)."""
    torch.manual_seed(seed)
    model = AWDLSTMForSequenceClassification(config).eval()
    ids, mask = pad_batch(random_docs([5, 9, 17, 30, 44, 12, 3, 25] * 4, config.vocab_size, seed=seed + 1))
    aligned, lengths, _ = left_align(ids, mask)
    with torch.no_grad():
        pooled = model.pool_document(aligned, lengths)
    norm = model.head.layers[0]
    norm.running_mean.copy_(pooled.mean(0))
    norm.running_var.copy_(pooled.var(0))
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def classifier(tokenizer):
    config = AWDLSTMConfig(
        vocab_size=len(tokenizer), num_labels=3, id2label={0: "neg", 1: "mixed", 2: "pos"}, **SIZES
    )
    return calibrated_classifier(config)


@pytest.fixture(scope="module")
def language_model(tokenizer):
    torch.manual_seed(1)
    return AWDLSTMForCausalLM(AWDLSTMConfig(vocab_size=len(tokenizer), **SIZES)).eval()


def classifier_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


# -- int8 dynamic quantization --------------------------------------------------------------------------------


def test_quantize_for_cpu_replaces_lstms_linears_and_embedding_and_keeps_the_input_model(classifier):
    quantized = quantize_for_cpu(classifier)
    assert type(quantized) is AWDLSTMForSequenceClassification and not quantized.training
    assert all(isinstance(lstm, quantized_dynamic.LSTM) for lstm in quantized.awd_lstm.layers)
    head_types = {type(module) for module in quantized.head.layers}
    assert quantized_dynamic.Linear in head_types and torch.nn.Linear not in head_types
    assert isinstance(quantized.awd_lstm.embed_tokens, Int8Embedding)
    assert isinstance(classifier.awd_lstm.layers[0], torch.nn.LSTM)  # the input model is untouched
    assert isinstance(classifier.awd_lstm.embed_tokens, torch.nn.Embedding)
    kept = quantize_for_cpu(classifier, quantize_embedding=False)
    assert isinstance(kept.awd_lstm.embed_tokens, torch.nn.Embedding)


def test_quantize_for_cpu_leaves_a_training_model_in_training_unless_inplace(tiny_config):
    model = AWDLSTMForCausalLM(tiny_config()).train()
    assert not quantize_for_cpu(model).training and model.training
    quantized = quantize_for_cpu(model, inplace=True)
    assert quantized is model and not model.training
    assert isinstance(model.decoder, quantized_dynamic.Linear)


@pytest.mark.parametrize("quantize_embedding", [True, False])
def test_int8_classifier_logits_are_close_to_fp32(classifier, quantize_embedding, record_property):
    quantized = quantize_for_cpu(classifier, quantize_embedding=quantize_embedding)
    lengths = [int(n) for n in torch.randint(1, 60, (64,), generator=torch.Generator().manual_seed(3))]
    ids, mask = pad_batch(random_docs(lengths, classifier.config.vocab_size, seed=4))
    fp32, int8 = classifier_logits(classifier, ids, mask), classifier_logits(quantized, ids, mask)
    max_abs_diff = float((fp32 - int8).abs().max())
    agreement = float((fp32.argmax(-1) == int8.argmax(-1)).float().mean())
    record_property("int8_max_abs_logit_diff", max_abs_diff)
    record_property("int8_argmax_agreement", agreement)
    print(f"int8 vs fp32: max |logit diff| {max_abs_diff:.4f}, argmax agreement {agreement:.3f}")
    assert len(fp32.argmax(-1).unique()) > 1  # the documents are not all one class: agreement means something
    assert max_abs_diff < 0.2  # measured 0.05-0.07 with this tiny model (per-tensor int8 weights)
    assert agreement >= 0.9


def test_int8_classifier_runs_in_the_text_classification_pipeline(classifier, tokenizer):
    quantized = quantize_for_cpu(classifier)
    fp32_out = pipeline("text-classification", model=classifier, tokenizer=tokenizer)(TEXTS)
    int8_out = pipeline("text-classification", model=quantized, tokenizer=tokenizer)(TEXTS, batch_size=2)
    assert [o["label"] for o in int8_out] == [o["label"] for o in fp32_out]
    assert all(abs(a["score"] - b["score"]) < 0.05 for a, b in zip(int8_out, fp32_out))


def test_int8_classifier_takes_a_padded_batch_on_either_side(classifier):
    quantized = quantize_for_cpu(classifier)
    docs = random_docs([30, 4, 11], classifier.config.vocab_size)
    right, left = (classifier_logits(quantized, *pad_batch(docs, side)) for side in ("right", "left"))
    torch.testing.assert_close(right, left, atol=1e-5, rtol=0)


def test_int8_language_model_keeps_the_state_and_generates(language_model, tokenizer):
    quantized = quantize_for_cpu(language_model)
    ids = torch.randint(4, language_model.config.vocab_size, (2, 12))
    with torch.no_grad():
        whole = quantized(input_ids=ids)
        first = quantized(input_ids=ids[:, :5])
        second = quantized(input_ids=ids[:, 5:], cache=first.cache)
        fp32 = language_model(input_ids=ids).logits
    assert len(whole.cache) == 3 and whole.cache[2][0].shape == (2, SIZES["embedding_size"])
    assert float((whole.logits - fp32).abs().max()) < 0.1
    # Activations are quantized per call, so pieces match the whole to quantization noise, not bit for bit.
    torch.testing.assert_close(second.logits, whole.logits[:, 5:], atol=0.05, rtol=0)
    prompt = tokenizer(["a good film"], return_tensors="pt")
    generated = quantized.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].size(1) + 4)


# -- ONNX: classifier -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=EXPORTER_PARAMS)
def onnx_classifier_dir(request, classifier, tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("export") / "nested" / "onnx-classifier"
    paths = export_onnx_classifier(classifier, directory, tokenizer=tokenizer, exporter=request.param)
    return directory, paths


@needs_onnx
def test_export_onnx_classifier_writes_its_files_where_asked(onnx_classifier_dir, classifier):
    directory, paths = onnx_classifier_dir
    assert paths == {
        "step": directory / CLASSIFIER_STEP_FILE,
        "head": directory / CLASSIFIER_HEAD_FILE,
        "config": directory / ONNX_CONFIG_FILE,
    }
    assert all(path.is_file() for path in paths.values())
    assert (directory / "tokenizer.json").is_file()
    config = json.loads(paths["config"].read_text())
    assert (config["bptt"], config["max_len"]) == (8, 20)
    assert config["layer_widths"] == [24, 24, 16]
    assert config["id2label"] == {"0": "neg", "1": "mixed", "2": "pos"}


@needs_onnx
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mix", LENGTH_MIXES)
def test_onnx_classifier_equals_pytorch(onnx_classifier_dir, classifier, mix, side):
    onnx_model = OnnxClassifier(onnx_classifier_dir[0])
    ids, mask = pad_batch(random_docs(LENGTH_MIXES[mix], classifier.config.vocab_size), side)
    expected = classifier_logits(classifier, ids, mask).numpy()
    np.testing.assert_allclose(onnx_model.logits(ids.numpy(), mask.numpy()), expected, atol=1e-4, rtol=0)


@needs_onnx
def test_onnx_classifier_gives_a_document_the_same_logits_alone_and_batched(onnx_classifier_dir, classifier):
    onnx_model = OnnxClassifier(onnx_classifier_dir[0])
    docs = random_docs([47, 3, 21], classifier.config.vocab_size, seed=7)
    batched = onnx_model.logits(*(t.numpy() for t in pad_batch(docs)))
    alone = np.concatenate([onnx_model.logits(doc[None].numpy()) for doc in docs])
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)


@needs_onnx
def test_onnx_classifier_on_raw_texts_matches_the_pipeline(onnx_classifier_dir, classifier, tokenizer):
    onnx_model = OnnxClassifier(onnx_classifier_dir[0], num_threads=1)  # loads the exported tokenizer
    expected = pipeline("text-classification", model=classifier, tokenizer=tokenizer)(TEXTS)
    got = onnx_model(TEXTS, batch_size=3)
    assert [o["label"] for o in got] == [o["label"] for o in expected]
    np.testing.assert_allclose([o["score"] for o in got], [o["score"] for o in expected], atol=1e-4)
    assert onnx_model.predict_proba(TEXTS).shape == (len(TEXTS), 3)


@needs_onnx
def test_onnx_classifier_rejects_an_empty_row(onnx_classifier_dir):
    onnx_model = OnnxClassifier(onnx_classifier_dir[0])
    with pytest.raises(ValueError, match="at least one real token"):
        onnx_model.logits(np.array([[2, 5, 6], [1, 1, 1]]), np.array([[1, 1, 1], [0, 0, 0]]))


def test_export_rejects_an_unknown_exporter(classifier, tmp_path):
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx_classifier(classifier, tmp_path, exporter="tensorrt")


def test_left_align_numpy_matches_the_model():
    ids, mask = pad_batch(random_docs([4, 1, 6], 60), "left")
    mask[0, 3] = 0  # a hole inside a row
    expected_ids, expected_lengths, _ = left_align(ids, mask)
    aligned, lengths = left_align_numpy(ids.numpy(), mask.numpy())
    np.testing.assert_array_equal(aligned, expected_ids.numpy())
    np.testing.assert_array_equal(lengths, expected_lengths.numpy())


# -- ONNX: language-model step --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=EXPORTER_PARAMS)
def lm_session(request, language_model, tmp_path_factory):
    import onnxruntime as ort

    path = tmp_path_factory.mktemp("export") / "sub" / "lm_step.onnx"
    assert export_onnx_language_model_step(language_model, path, exporter=request.param) == path
    assert path.is_file()
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_lm_step(session, ids: torch.Tensor, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    names = state_names(len(state) // 2)
    logits, *next_state = session.run(None, {"input_ids": ids.numpy(), **dict(zip(names, state))})
    return logits, next_state


def zero_state(model, batch: int) -> list[np.ndarray]:
    return [t.numpy() for layer in model.awd_lstm.initial_state(batch) for t in layer]


@needs_onnx
def test_onnx_lm_step_has_the_documented_inputs_and_outputs(lm_session):
    assert [i.name for i in lm_session.get_inputs()] == ["input_ids", *state_names(3)]
    assert [o.name for o in lm_session.get_outputs()] == ["logits", *state_names(3, "next_")]
    assert lm_session.get_outputs()[0].shape[:2] == ["batch", "sequence"]


@needs_onnx
@pytest.mark.parametrize("batch, seq_len", [(1, 1), (2, 3), (5, 17), (3, 40)])
def test_onnx_lm_step_equals_pytorch(lm_session, language_model, batch, seq_len):
    ids = torch.randint(0, language_model.config.vocab_size, (batch, seq_len))
    logits, state = run_lm_step(lm_session, ids, zero_state(language_model, batch))
    with torch.no_grad():
        expected = language_model(input_ids=ids)
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
    for got, want in zip(state, [t for layer in expected.cache for t in layer]):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


@needs_onnx
def test_onnx_lm_state_carried_across_two_steps_equals_pytorch(lm_session, language_model):
    ids = torch.randint(0, language_model.config.vocab_size, (3, 19))
    first_logits, state = run_lm_step(lm_session, ids[:, :7], zero_state(language_model, 3))
    second_logits, state = run_lm_step(lm_session, ids[:, 7:], state)
    with torch.no_grad():
        first = language_model(input_ids=ids[:, :7])
        second = language_model(input_ids=ids[:, 7:], cache=first.cache)
        whole = language_model(input_ids=ids)
    np.testing.assert_allclose(second_logits, second.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        np.concatenate([first_logits, second_logits], axis=1), whole.logits.numpy(), atol=1e-4, rtol=0
    )
    for got, want in zip(state, [t for layer in whole.cache for t in layer]):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
