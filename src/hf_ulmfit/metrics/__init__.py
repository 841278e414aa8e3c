"""Classification metrics (accuracy, macro-F1) through ``evaluate``, from a metric module shipped in the package.

``evaluate.load("accuracy")`` downloads the metric from the Hub; the local module in ``ulmfit_classification/``
loads offline.
"""

from functools import cache
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

CLASSIFICATION_METRIC_PATH = Path(__file__).parent / "ulmfit_classification"


@cache
def load_classification_metric() -> evaluate.EvaluationModule:
    """The package's ``evaluate`` metric computing ``accuracy`` and ``macro_f1`` (loaded once per process)."""
    return evaluate.load(str(CLASSIFICATION_METRIC_PATH))


def compute_classification_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: argmax of the logits against the labels -> accuracy, macro-F1."""
    logits = eval_prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    predictions = np.argmax(logits, axis=-1)
    return load_classification_metric().compute(predictions=predictions, references=eval_prediction.label_ids)


__all__ = ["CLASSIFICATION_METRIC_PATH", "compute_classification_metrics", "load_classification_metric"]
