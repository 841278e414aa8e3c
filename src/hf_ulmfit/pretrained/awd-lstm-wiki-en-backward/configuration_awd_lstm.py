"""Configuration of the AWD-LSTM (Merity et al. 2018) as used by ULMFiT (Howard & Ruder 2018).

This file imports only ``transformers`` so that the Hub can serve it as remote code.
"""

import math
from dataclasses import field

from transformers import PreTrainedConfig

# Dropout probabilities, in the order the encoder applies them. The LM values are fastai's defaults for
# pretraining a language model; the classifier values are the ones of ULMFiT's section 4 ("dropout of 0.4 to
# layers, 0.3 to RNN layers, 0.4 to input embedding layers, 0.05 to embedding layers, and weight dropout of 0.5
# to the RNN hidden-to-hidden matrix").
LANGUAGE_MODEL_DROPOUTS = {
    "embedding_dropout": 0.02,
    "input_dropout": 0.25,
    "weight_dropout": 0.2,
    "hidden_dropout": 0.15,
    "output_dropout": 0.1,
}
CLASSIFIER_DROPOUTS = {
    "embedding_dropout": 0.05,
    "input_dropout": 0.4,
    "weight_dropout": 0.5,
    "hidden_dropout": 0.3,
    "output_dropout": 0.4,
}


class AWDLSTMConfig(PreTrainedConfig):
    r"""
    Configuration of an AWD-LSTM encoder with a language-model head or a ULMFiT classifier head.

    Args:
        vocab_size: number of tokens in the vocabulary.
        embedding_size: width of the token embeddings, and of the last LSTM layer (so the decoder can be
            tied to the embedding).
        hidden_size: width of every LSTM layer but the last.
        num_hidden_layers: number of stacked single-layer LSTMs.
        embedding_dropout: probability of dropping a whole word type from the embedding matrix.
        input_dropout: variational (locked) dropout on the embedded input.
        weight_dropout: DropConnect on each LSTM's hidden-to-hidden matrix.
        hidden_dropout: variational dropout between LSTM layers.
        output_dropout: variational dropout on the last layer's output, before the LM decoder.
        initializer_range: embeddings are drawn from U(-initializer_range, initializer_range).
        activation_regularization: AR coefficient (alpha), on the dropped-out last-layer output, LM training only.
        temporal_activation_regularization: TAR coefficient (beta), on the raw last-layer output, LM training only.
        bptt: tokens per chunk when the classifier encodes a document (BPT3C), and the default window length of
            LM training.
        max_len: the classifier pools over (at most) the last ``max_len`` tokens of a document.
        classifier_hidden_sizes: widths of the hidden layers of the classifier head (the paper uses one of 50).
        classifier_dropouts: dropout before each linear layer of the head (``len(classifier_hidden_sizes) + 1``).
        backwards: the model reads every text right to left (ULMFiT section 3.4, "Bidirectional language
            model"): each row's real tokens are reversed inside the model, whatever the padding, so texts are
            passed as usual. A classifier inherits the direction of the language model it starts from.
        bidirectional: a classifier that holds a second, backward encoder and head and averages the two
            members' probabilities (the paper's forward + backward ensemble; built by
            ``hf_ulmfit.combine_bidirectional``). The first member reads forwards, so ``backwards`` must be False.

    The two standard dropout settings are one call away: ``AWDLSTMConfig.for_language_model()`` and
    ``AWDLSTMConfig.for_classifier()``, each scaled by an optional ``dropout_multiplier``.
    """

    model_type = "awd_lstm"
    _auto_class = "AutoConfig"  # save_pretrained copies this file next to config.json, for remote code
    keys_to_ignore_at_inference = ["cache", "hidden_states"]

    vocab_size: int = 30000
    embedding_size: int = 400
    hidden_size: int = 1152
    num_hidden_layers: int = 3
    embedding_dropout: float = LANGUAGE_MODEL_DROPOUTS["embedding_dropout"]
    input_dropout: float = LANGUAGE_MODEL_DROPOUTS["input_dropout"]
    weight_dropout: float = LANGUAGE_MODEL_DROPOUTS["weight_dropout"]
    hidden_dropout: float = LANGUAGE_MODEL_DROPOUTS["hidden_dropout"]
    output_dropout: float = LANGUAGE_MODEL_DROPOUTS["output_dropout"]
    initializer_range: float = 0.1
    activation_regularization: float = 2.0
    temporal_activation_regularization: float = 1.0
    bptt: int = 72
    max_len: int = 1440
    classifier_hidden_sizes: list[int] = field(default_factory=lambda: [50])
    classifier_dropouts: list[float] = field(default_factory=lambda: [0.4, 0.1])
    backwards: bool = False
    bidirectional: bool = False
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._validate()

    @classmethod
    def for_language_model(cls, dropout_multiplier: float = 1.0, **kwargs) -> "AWDLSTMConfig":
        """A config with the LM dropouts (fastai's defaults), each multiplied by ``dropout_multiplier``."""
        return cls(**{**scaled_dropouts("language_model", dropout_multiplier), **kwargs})

    @classmethod
    def for_classifier(cls, dropout_multiplier: float = 1.0, **kwargs) -> "AWDLSTMConfig":
        """A config with the classifier dropouts of ULMFiT (section 4), each multiplied by ``dropout_multiplier``."""
        return cls(**{**scaled_dropouts("classifier", dropout_multiplier), **kwargs})

    def _validate(self) -> None:
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "bptt", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AWDLSTMConfig.{name} must be a positive integer, got {value!r}.")
        dropouts = {name: getattr(self, name) for name in LANGUAGE_MODEL_DROPOUTS}
        dropouts.update({f"classifier_dropouts[{i}]": p for i, p in enumerate(self.classifier_dropouts)})
        for name, p in dropouts.items():
            if not _is_number(p) or not 0.0 <= p < 1.0:
                raise ValueError(f"AWDLSTMConfig.{name} is a dropout probability in [0, 1), got {p!r}.")
        for name in ("activation_regularization", "temporal_activation_regularization", "initializer_range"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"AWDLSTMConfig.{name} must be a finite number >= 0, got {value!r}.")
        if self.num_labels < 1:
            raise ValueError(f"AWDLSTMConfig.num_labels must be >= 1, got {self.num_labels!r}.")
        for name in ("classifier_hidden_sizes", "classifier_dropouts"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise ValueError(f"AWDLSTMConfig.{name} must be a list, got {getattr(self, name)!r}.")
        if any(not isinstance(size, int) or size < 1 for size in self.classifier_hidden_sizes):
            raise ValueError(
                f"AWDLSTMConfig.classifier_hidden_sizes must be positive integers, got {self.classifier_hidden_sizes}."
            )
        if len(self.classifier_dropouts) != len(self.classifier_hidden_sizes) + 1:
            raise ValueError(
                "AWDLSTMConfig.classifier_dropouts needs one probability per linear layer of the head, i.e. "
                f"len(classifier_hidden_sizes) + 1 = {len(self.classifier_hidden_sizes) + 1}, "
                f"got {len(self.classifier_dropouts)}."
            )
        for name in ("backwards", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AWDLSTMConfig.{name} must be True or False, got {getattr(self, name)!r}.")
        if self.bidirectional and self.backwards:
            raise ValueError(
                "AWDLSTMConfig: a bidirectional classifier's first member reads forwards (its second member is "
                "the backward one): set backwards=False with bidirectional=True."
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            token_id = getattr(self, name)
            if token_id is not None and not 0 <= token_id < self.vocab_size:
                raise ValueError(
                    f"AWDLSTMConfig.{name}={token_id} is outside the vocabulary [0, {self.vocab_size}); "
                    "set it to the tokenizer's id for that token."
                )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scaled_dropouts(preset: str, multiplier: float = 1.0) -> dict:
    """The dropouts of a preset, ``"language_model"`` or ``"classifier"``, each multiplied by ``multiplier``, as
    ``AWDLSTMConfig`` keyword arguments. The classifier's include its head: ``output_dropout`` before the head's
    first linear layer and 0.1 before the last, as in ULMFiT's classifier."""
    dropouts = {"language_model": LANGUAGE_MODEL_DROPOUTS, "classifier": CLASSIFIER_DROPOUTS}[preset]
    scaled = {name: p * multiplier for name, p in dropouts.items()}
    if preset == "classifier":
        scaled["classifier_dropouts"] = [scaled["output_dropout"], 0.1]
    return scaled


__all__ = ["AWDLSTMConfig", "CLASSIFIER_DROPOUTS", "LANGUAGE_MODEL_DROPOUTS", "scaled_dropouts"]
