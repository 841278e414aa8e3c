"""hf-ulmfit: ULMFiT (Howard & Ruder 2018) with an AWD-LSTM as a native Hugging Face transformers model.

``pretrained_path("awd-lstm-wiki-en")`` is the directory of the English Wikipedia LM the package ships (stage 1
of ULMFiT, done once), and ``pretrained_path("awd-lstm-wiki-en-backward")`` that of its backward twin (section
3.4); every stage also takes either name itself as ``--model_name_or_path``.

Importing the package registers the model with the Auto classes, so ``AutoConfig``, ``AutoModel``,
``AutoModelForCausalLM``, ``AutoModelForSequenceClassification`` and ``AutoTokenizer`` load ``awd_lstm``
checkpoints, and ``pipeline(...)`` serves them.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from .configuration_awd_lstm import AWDLSTMConfig
from .modeling_awd_lstm import (
    AWDLSTMForCausalLM,
    AWDLSTMForSequenceClassification,
    AWDLSTMModel,
    AWDLSTMPreTrainedModel,
)
from .pretrained import pretrained_path
from .tokenization_awd_lstm import train_tokenizer

__version__ = "0.1.0"

AutoConfig.register(AWDLSTMConfig.model_type, AWDLSTMConfig, exist_ok=True)
AutoModel.register(AWDLSTMConfig, AWDLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(AWDLSTMConfig, AWDLSTMForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(AWDLSTMConfig, AWDLSTMForSequenceClassification, exist_ok=True)
AutoTokenizer.register(AWDLSTMConfig, fast_tokenizer_class=PreTrainedTokenizerFast, exist_ok=True)


def __getattr__(name: str):
    """The training and export layers are imported on first use, so that ``import hf_ulmfit`` stays light."""
    if name in _TRAINING_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_TRAINING_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TRAINING_EXPORTS = {
    "ULMFiTTrainingArguments": ".training_args",
    "ULMFiTTrainer": ".trainer",
    "GradualUnfreezingCallback": ".callbacks",
    "get_slanted_triangular_schedule": ".schedules",
    "LanguageModelStream": ".data",
    "language_model_stream": ".data",
    "classification_dataset": ".data",
    "classification_collator": ".data",
    "compute_classification_metrics": ".metrics",
    "lr_find": ".lr_finder",
    "LRFinderResult": ".lr_finder",
    "build_model_card": ".cards",
    "write_model_card": ".cards",
    "quantize_for_cpu": ".export",
    "export_onnx_classifier": ".export",
    "export_onnx_language_model_step": ".export",
    "OnnxClassifier": ".export",
    "convert_fastai_checkpoint": ".convert_fastai",
    "combine_bidirectional": ".bidirectional",
    "build_fastai_tokenizer": ".tokenization_fastai",
}

__all__ = [
    *_TRAINING_EXPORTS,
    "pretrained_path",
    "train_tokenizer",
    "AWDLSTMConfig",
    "AWDLSTMForCausalLM",
    "AWDLSTMForSequenceClassification",
    "AWDLSTMModel",
    "AWDLSTMPreTrainedModel",
]
