"""bf16 mixed precision on CPU: autocast inference close to fp32, and bf16 training of both kinds of stage."""

import pytest
import torch
from transformers import default_data_collator

from conftest import pad_batch
from hf_ulmfit import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from hf_ulmfit.data import LanguageModelStream
from hf_ulmfit.metrics import compute_classification_metrics
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments

NO_DROPOUT = dict(
    embedding_dropout=0.0, input_dropout=0.0, weight_dropout=0.0, hidden_dropout=0.0, output_dropout=0.0
)
# Weights large enough that the activations are far from zero (and bf16 rounding shows).
LARGE_INIT = dict(initializer_range=0.5)


@pytest.fixture(autouse=True)
def one_thread():
    """oneDNN's bf16 LSTM with 2 threads took about a second per tiny call on this (busy) 2-core machine, and a
    millisecond with one thread: these tests use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _bf16(model, **inputs):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(**inputs)


def _assert_close_in_bf16(low: torch.Tensor, reference: torch.Tensor, tolerance: float = 0.03) -> None:
    """bf16 keeps 8 significant bits (~0.4% per rounding): a loose tolerance, relative to the largest value."""
    scale = reference.abs().max().item()
    torch.testing.assert_close(low.float(), reference, rtol=tolerance, atol=tolerance * scale)


def test_language_model_in_bf16_is_close_to_fp32_across_carried_batches(tiny_config):
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(tiny_config(**LARGE_INIT)).eval()
    ids = torch.randint(4, 60, (3, 40))
    with torch.no_grad():
        first = model(ids[:, :20])
        second = model(ids[:, 20:], cache=first.cache)
    first_bf16 = _bf16(model, input_ids=ids[:, :20])
    second_bf16 = _bf16(model, input_ids=ids[:, 20:], cache=first_bf16.cache)
    assert first_bf16.logits.dtype == torch.bfloat16  # autocast did run the model in bf16
    _assert_close_in_bf16(first_bf16.logits, first.logits)
    _assert_close_in_bf16(second_bf16.logits, second.logits)


def test_classifier_in_bf16_is_close_to_fp32(tiny_config):
    """Padded documents of several BPT3C chunks: packed LSTM runs, pooling and BatchNorm under autocast."""
    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(
        tiny_config(num_labels=3, bptt=5, max_len=8, **LARGE_INIT)
    ).eval()
    generator = torch.Generator().manual_seed(0)
    ids, mask = pad_batch([torch.randint(4, 60, (n,), generator=generator) for n in (17, 4, 11, 9)])
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).logits
    low = _bf16(model, input_ids=ids, attention_mask=mask).logits
    assert low.dtype == torch.bfloat16
    _assert_close_in_bf16(low, reference)


def _args(tmp_path, bf16: bool, **kwargs) -> ULMFiTTrainingArguments:
    return ULMFiTTrainingArguments(
        output_dir=str(tmp_path),
        bf16=bf16,
        use_cpu=True,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        **kwargs,
    )


def _record_output_dtypes(module: torch.nn.Module) -> list[torch.dtype]:
    dtypes = []
    module.register_forward_hook(lambda _module, _args, output: dtypes.append(output.dtype))
    return dtypes


def test_language_model_trains_in_bf16_as_in_fp32(tmp_path, tiny_config):
    tokens = torch.randint(4, 60, (600,), generator=torch.Generator().manual_seed(0))
    stream, evaluation = LanguageModelStream(tokens[:400], 4, 8), LanguageModelStream(tokens[400:], 4, 8)
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = AWDLSTMForCausalLM(tiny_config(**NO_DROPOUT, **LARGE_INIT))
        decoder_dtypes = _record_output_dtypes(model.decoder)
        trainer = ULMFiTTrainer(
            model=model,
            args=_args(
                tmp_path,
                bf16,
                max_steps=4,
                per_device_train_batch_size=4,
                per_device_eval_batch_size=4,
                train_sampling_strategy="sequential",
            ),
            train_dataset=stream,
            eval_dataset=evaluation,
            data_collator=default_data_collator,
        )
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results[bf16] = (losses, trainer.evaluate()["eval_loss"])
        assert set(decoder_dtypes) == {torch.bfloat16 if bf16 else torch.float32}
        assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
        carried = trainer._recurrent_state["train"]
        assert all(h.dtype == c.dtype == torch.float32 for h, c in carried)  # resumable without autocast
    (losses, eval_loss), (losses_bf16, eval_loss_bf16) = results[False], results[True]
    assert len(losses_bf16) == 4 and losses_bf16 == pytest.approx(losses, rel=2e-2)
    assert eval_loss_bf16 == pytest.approx(eval_loss, rel=2e-2)


def test_classifier_trains_in_bf16_with_gradual_unfreezing(tmp_path, tiny_config):
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 14, (16,), generator=generator).tolist()
    documents = [
        {"input_ids": torch.randint(4, 60, (n,), generator=generator), "labels": i % 2}
        for i, n in enumerate(lengths)
    ]

    def collate(features):
        ids, mask = pad_batch([feature["input_ids"] for feature in features])
        labels = torch.tensor([feature["labels"] for feature in features])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(tiny_config(num_labels=2, bptt=5, max_len=8))
    embedding = model.awd_lstm.embed_tokens.weight.detach().clone()
    head_dtypes = _record_output_dtypes(model.head.layers[-1])
    trainer = ULMFiTTrainer(
        model=model,
        args=_args(
            tmp_path, True, num_train_epochs=2, per_device_train_batch_size=4, gradual_unfreezing=True
        ),
        train_dataset=documents,
        eval_dataset=documents,
        data_collator=collate,
        compute_metrics=compute_classification_metrics,
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert set(head_dtypes) == {torch.bfloat16}
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    assert torch.equal(model.awd_lstm.embed_tokens.weight, embedding)  # still frozen after two epochs
