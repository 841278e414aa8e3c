"""Accuracy and macro-averaged F1 for single-label classification, as a local ``evaluate`` metric.

ULMFiT (Howard & Ruder 2018, section 4) reports error rates (1 - accuracy); macro-F1 is reported alongside for
imbalanced label sets. This module depends only on ``evaluate``, ``datasets`` and ``numpy`` so that
``evaluate.load(path_to_this_folder)`` works offline.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy (fraction of predictions equal to the reference) and macro-F1 (the unweighted mean over labels of the
per-label F1 = 2 * TP / (2 * TP + FP + FN)). The labels averaged over are `labels` when given, otherwise every
label that occurs in the predictions or the references. A label with no true positive, false positive or false
negative has an F1 of 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): true labels.
    labels (`list` of `int`, *optional*): the labels macro-F1 averages over.
Returns:
    accuracy (`float`): in [0, 1].
    macro_f1 (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("path/to/ulmfit_classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.666..., 'macro_f1': 0.666...}
"""

_CITATION = """
@inproceedings{howard-ruder-2018-universal,
  title = {Universal Language Model Fine-tuning for Text Classification},
  author = {Howard, Jeremy and Ruder, Sebastian},
  booktitle = {Proceedings of ACL},
  year = {2018},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class UlmfitClassification(evaluate.Metric):
    """Accuracy and macro-F1 computed with numpy."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None) -> dict[str, float]:
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if labels is None:
            labels = np.union1d(predictions, references)
        return {
            "accuracy": float(np.mean(predictions == references)) if len(references) else 0.0,
            "macro_f1": _macro_f1(predictions, references, np.asarray(labels, dtype=np.int64)),
        }


def _macro_f1(predictions: np.ndarray, references: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of the per-label F1 scores."""
    if len(labels) == 0:
        return 0.0
    predicted = predictions[None, :] == labels[:, None]
    actual = references[None, :] == labels[:, None]
    true_positives = np.sum(predicted & actual, axis=1)
    false_positives = np.sum(predicted & ~actual, axis=1)
    false_negatives = np.sum(~predicted & actual, axis=1)
    denominator = 2 * true_positives + false_positives + false_negatives
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros(len(labels)), where=denominator > 0)
    return float(np.mean(f1))
