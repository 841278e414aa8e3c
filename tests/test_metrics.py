"""The local evaluate metric (accuracy, macro-F1) and the Trainer's compute_metrics helper."""

import evaluate
import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hf_ulmfit.metrics import (
    CLASSIFICATION_METRIC_PATH,
    compute_classification_metrics,
    load_classification_metric,
)


def _reference_macro_f1(predictions: list[int], references: list[int]) -> float:
    """Macro-F1 by counting, one label at a time, over the labels seen in either list."""
    scores = []
    for label in sorted(set(predictions) | set(references)):
        pairs = list(zip(predictions, references, strict=True))
        tp = sum(p == label and r == label for p, r in pairs)
        fp = sum(p == label and r != label for p, r in pairs)
        fn = sum(p != label and r == label for p, r in pairs)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def test_loads_offline_from_the_package_through_evaluate():
    metric = evaluate.load(str(CLASSIFICATION_METRIC_PATH))
    assert isinstance(metric, evaluate.EvaluationModule)
    assert load_classification_metric() is load_classification_metric()  # loaded once


def test_hand_computed_example():
    # label 0: TP 1, FN 1 -> F1 2/3; label 1: TP 1, FP 1 -> 2/3; label 2: TP 1 -> 1.
    result = load_classification_metric().compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2])
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_explicit_labels_count_absent_ones_as_zero():
    result = load_classification_metric().compute(
        predictions=[0, 1, 1, 2], references=[0, 1, 0, 2], labels=[0, 1, 2, 3]
    )
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_counting(seed):
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 5, size=200).tolist()
    predictions = np.where(rng.random(200) < 0.6, references, rng.integers(0, 5, size=200)).tolist()
    result = load_classification_metric().compute(predictions=predictions, references=references)
    assert result["accuracy"] == pytest.approx(np.mean(np.array(predictions) == np.array(references)))
    assert result["macro_f1"] == pytest.approx(_reference_macro_f1(predictions, references))


def test_agrees_with_scikit_learn_when_installed():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    references, predictions = rng.integers(0, 4, size=300), rng.integers(0, 4, size=300)
    result = load_classification_metric().compute(predictions=predictions, references=references)
    assert result["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(references, predictions))
    assert result["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(references, predictions, average="macro")
    )


def test_compute_metrics_takes_argmax_of_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 0.5], [0.2, 0.1, 4.0]])
    labels = np.array([0, 1, 0, 2])  # predictions [0, 1, 1, 2]
    result = compute_classification_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert result == pytest.approx({"accuracy": 0.75, "macro_f1": (2 / 3 + 2 / 3 + 1) / 3})
    from_tuple = compute_classification_metrics(EvalPrediction(predictions=(logits,), label_ids=labels))
    assert from_tuple == pytest.approx(result)


def test_trainer_reports_accuracy_and_macro_f1(tmp_path):
    from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
    from hf_ulmfit.modeling_awd_lstm import AWDLSTMForSequenceClassification
    from hf_ulmfit.trainer import ULMFiTTrainer
    from hf_ulmfit.training_args import ULMFiTTrainingArguments

    torch.manual_seed(0)
    config = AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=3, num_labels=3)
    model = AWDLSTMForSequenceClassification(config)
    examples = [{"input_ids": torch.randint(4, 50, (6,)), "labels": torch.tensor(i % 3)} for i in range(12)]
    args = ULMFiTTrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True, disable_tqdm=True
    )
    trainer = ULMFiTTrainer(
        model=model, args=args, eval_dataset=examples, compute_metrics=compute_classification_metrics
    )
    metrics = trainer.evaluate()

    model.eval()
    with torch.no_grad():
        logits = model(torch.stack([e["input_ids"] for e in examples])).logits
    predictions = logits.argmax(-1).tolist()
    references = [int(e["labels"]) for e in examples]
    assert metrics["eval_accuracy"] == pytest.approx(np.mean(np.array(predictions) == np.array(references)))
    assert metrics["eval_macro_f1"] == pytest.approx(_reference_macro_f1(predictions, references))
    assert "eval_perplexity" not in metrics
