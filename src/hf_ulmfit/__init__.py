"""hf-ulmfit: ULMFiT (Howard & Ruder 2018) with an AWD-LSTM as a native Hugging Face transformers model.

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

__version__ = "0.1.0"

AutoConfig.register(AWDLSTMConfig.model_type, AWDLSTMConfig, exist_ok=True)
AutoModel.register(AWDLSTMConfig, AWDLSTMModel, exist_ok=True)
AutoModelForCausalLM.register(AWDLSTMConfig, AWDLSTMForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(AWDLSTMConfig, AWDLSTMForSequenceClassification, exist_ok=True)
AutoTokenizer.register(AWDLSTMConfig, fast_tokenizer_class=PreTrainedTokenizerFast, exist_ok=True)

__all__ = [
    "AWDLSTMConfig",
    "AWDLSTMForCausalLM",
    "AWDLSTMForSequenceClassification",
    "AWDLSTMModel",
    "AWDLSTMPreTrainedModel",
]
