"""Convert fastai AWD-LSTM checkpoints (ULMFiT language models and classifiers) into Hugging Face directories.

Supported inputs (``weights``):

* fastai v2 ``learn.save`` files of a language model (``get_language_model``) or a text classifier
  (``get_text_classifier``): a bare state dict, or ``{"model": state_dict, "opt": ...}`` (``with_opt=True``);
* fastai v2 ``learn.save_encoder`` files (the AWD-LSTM alone, no decoder or head);
* fastai v1 files, including the WikiText-103 release (``lstm_fwd.pth`` / ``lstm_bwd.pth`` with
  ``itos_wt103.pkl``; hidden size 1150 or 1152), and fastai 0.7 language models.

Keys are mapped by name, per fastai generation (the names of fastai 0.7, v1 and v2 differ in where the
DropConnect copy of each hidden-to-hidden matrix lives and in how the classifier head is nested); every size
(vocabulary, embedding, hidden, layers, head, labels) is read from the tensor shapes. Nothing is unpickled beyond
tensors and plain containers: weights load with ``torch.load(weights_only=True)`` and a vocabulary pickle with an
unpickler that accepts lists of strings only.

A backward model (fastai's ``backwards=True`` data, or the ``lstm_bwd.pth`` release) has the same weights as a
forward one: fastai keeps the direction in its data loaders, so the file cannot tell. ``backwards=True`` (CLI
``--backwards``) sets ``AWDLSTMConfig.backwards``, and the converted model reverses each text itself, so it takes
texts in their natural order. By default a file whose name contains ``bwd`` (``lstm_bwd.pth``, ``clas_bwd.pth``)
is taken as backward, any other as forward; ``backwards=False`` (``--backwards false``) overrides that.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from .configuration_awd_lstm import AWDLSTMConfig
from .modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, AWDLSTMPreTrainedModel
from .tokenization_fastai import BOS, EOS, PAD, build_fastai_tokenizer, check_fastai_vocab

logger = logging.getLogger(__name__)

KINDS = ("lm", "classifier")
StateDict = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------------------
# Reading files


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for vocabularies: lists, tuples, strings, numbers and dicts need no class lookup, so every
    ``find_class`` (any other object, hence any code) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a vocabulary pickle may only hold lists of strings "
            "(save it with pickle.dump(list(vocab), f) or as JSON)"
        )


def load_fastai_state_dict(path: str | Path) -> StateDict:
    """Loads a fastai ``.pth`` file as a state dict of tensors, unwrapping ``{"model": ..., "opt": ...}``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds more than tensors and plain containers, so it is not loaded (weights_only=True). "
            "Save the model alone: learn.save(name, with_opt=False), or torch.save(learn.model.state_dict(), path)."
        ) from error
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} is not a fastai state dict (a mapping of names to tensors)")
    return dict(checkpoint)


def load_fastai_vocab(path: str | Path) -> tuple[list[str], list[str] | None]:
    """Reads a fastai vocabulary: a pickle (``itos_wt103.pkl``, or ``pickle.dump(list(vocab), f)``), a JSON list,
    or a text file with one token per line (only for vocabularies without tokens that contain a line break).

    A classifier's ``learn.dls.vocab`` is ``[tokens, labels]``; then both lists are returned, else labels is
    None."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix in (".pkl", ".pickle") or data[:1] == b"\x80":
        vocab = RestrictedUnpickler(io.BytesIO(data)).load()
    elif path.suffix == ".json" or data.lstrip()[:1] == b"[":
        vocab = json.loads(data.decode("utf-8"))
    else:
        text = data.decode("utf-8")
        vocab = (text[:-1] if text.endswith("\n") else text).split("\n")
    return _split_labels(vocab, path)


def _split_labels(vocab, path: Path) -> tuple[list[str], list[str] | None]:
    if (
        isinstance(vocab, (list, tuple))
        and len(vocab) == 2
        and all(isinstance(v, (list, tuple)) for v in vocab)
    ):
        tokens, labels = vocab
        labels = [str(label) for label in labels]
    else:
        tokens, labels = vocab, None
    if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{path} does not hold a list of strings (a fastai vocabulary)")
    return list(tokens), labels


# ----------------------------------------------------------------------------------------------------------
# Reading fastai's names

# Where each generation keeps an LSTM layer's tensors, relative to the AWD-LSTM ("{i}": the layer). fastai wraps
# each nn.LSTM in WeightDropout, whose ``weight_hh_l0_raw`` is the trained matrix; v1 also stores the last
# dropped-out copy under ``module.weight_hh_l0``, which must not be used.
_LSTM_KEYS = {
    "v2": {
        "weight_ih_l0": "rnns.{i}.module.weight_ih_l0",
        "weight_hh_l0": "rnns.{i}.weight_hh_l0_raw",
        "bias_ih_l0": "rnns.{i}.module.bias_ih_l0",
        "bias_hh_l0": "rnns.{i}.module.bias_hh_l0",
    },
    "0.7": {
        "weight_ih_l0": "rnns.{i}.module.weight_ih_l0",
        "weight_hh_l0": "rnns.{i}.module.weight_hh_l0_raw",
        "bias_ih_l0": "rnns.{i}.module.bias_ih_l0",
        "bias_hh_l0": "rnns.{i}.module.bias_hh_l0",
    },
}
_LSTM_KEYS["v1"] = _LSTM_KEYS["v2"]  # same names; v1 has the extra dropped-out copy
# Where the AWD-LSTM sits in each kind of model (``learn.save_encoder`` saves it alone).
_ENCODER_PREFIXES = {"classifier": "0.module.", "lm": "0.", "encoder": ""}


@dataclass
class FastaiWeights:
    """A fastai AWD-LSTM checkpoint, read by name: the tensors our model needs, and what was detected."""

    generation: str  # "v2", "v1" or "0.7"
    kind: str  # "lm", "classifier" or "encoder" (an AWD-LSTM saved alone)
    embedding: torch.Tensor  # (vocab_size, embedding_size)
    lstm_layers: list[StateDict]  # per layer: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
    decoder_weight: torch.Tensor | None = None
    decoder_bias: torch.Tensor | None = None
    head: list[tuple[StateDict, StateDict]] = field(default_factory=list)  # (batch norm, linear) per block

    @property
    def sizes(self) -> dict[str, int]:
        """Vocabulary, embedding and hidden sizes and the number of layers, from the tensor shapes."""
        hidden = self.lstm_layers[0]["weight_hh_l0"].shape[1] if len(self.lstm_layers) > 1 else None
        vocab_size, embedding_size = self.embedding.shape
        return {
            "vocab_size": vocab_size,
            "embedding_size": embedding_size,
            "hidden_size": hidden or embedding_size,
            "num_hidden_layers": len(self.lstm_layers),
        }


def detect_generation(state_dict: StateDict) -> str:
    """fastai 0.7 keeps the DropConnect matrix inside the wrapped LSTM (``module.weight_hh_l0_raw``); v1 stores
    both the raw matrix and a dropped-out copy (``module.weight_hh_l0``); v2 stores the raw matrix only."""
    if any(key.endswith("module.weight_hh_l0_raw") for key in state_dict):
        return "0.7"
    if any(key.endswith("module.weight_hh_l0") for key in state_dict):
        return "v1"
    return "v2"


def detect_kind(state_dict: StateDict) -> str:
    """``"classifier"`` (a pooling head under ``1.layers``), ``"lm"`` (a decoder under ``1.decoder``) or
    ``"encoder"`` (an AWD-LSTM alone, as ``learn.save_encoder`` writes it)."""
    if any(key.startswith("1.layers.") for key in state_dict) and "0.module.encoder.weight" in state_dict:
        return "classifier"
    if "1.decoder.weight" in state_dict and "0.encoder.weight" in state_dict:
        return "lm"
    if "encoder.weight" in state_dict:
        return "encoder"
    if any(".layers.0.linear." in key or ".layers.0.weight_hh" in key for key in state_dict):
        raise ValueError(
            "this is a fastai QRNN checkpoint; only AWD-LSTM (nn.LSTM) checkpoints are supported"
        )
    raise ValueError(
        "not a fastai AWD-LSTM checkpoint: expected 0.encoder.weight + 1.decoder.weight (language model), "
        "0.module.encoder.weight + 1.layers.* (classifier) or encoder.weight (learn.save_encoder); found "
        f"{sorted(state_dict)[:6]}..."
    )


def read_fastai_weights(state_dict: StateDict) -> FastaiWeights:
    """Picks out the tensors of a fastai state dict by name (see ``detect_generation`` / ``detect_kind``)."""
    if state_dict and all(key.startswith("module.") for key in state_dict):  # saved from nn.DataParallel
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    kind, generation = detect_kind(state_dict), detect_generation(state_dict)
    prefix = _ENCODER_PREFIXES[kind]
    weights = FastaiWeights(
        generation=generation,
        kind=kind,
        embedding=_get(state_dict, f"{prefix}encoder.weight"),
        lstm_layers=_read_lstm_layers(state_dict, prefix, _LSTM_KEYS[generation]),
    )
    if kind == "lm":
        weights.decoder_weight = _get(state_dict, "1.decoder.weight")
        weights.decoder_bias = state_dict.get("1.decoder.bias")  # fastai 0.7 decoders have no bias
    elif kind == "classifier":
        weights.head = _read_head(state_dict)
    return weights


def _get(state_dict: StateDict, key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"the checkpoint lacks {key!r}; is it a complete fastai AWD-LSTM checkpoint?")
    return state_dict[key]


def _read_lstm_layers(state_dict: StateDict, prefix: str, names: dict[str, str]) -> list[StateDict]:
    pattern = re.compile(re.escape(prefix) + r"rnns\.(\d+)\.")
    count = 1 + max((int(m.group(1)) for key in state_dict if (m := pattern.match(key))), default=-1)
    if count == 0:
        raise ValueError(f"the checkpoint has no LSTM layers under {prefix}rnns.*")
    layers = []
    for i in range(count):
        layer = {ours: _get(state_dict, prefix + theirs.format(i=i)) for ours, theirs in names.items()}
        if layer["weight_hh_l0"].shape[0] != 4 * layer["weight_hh_l0"].shape[1]:
            raise ValueError(
                f"layer {i} is not an LSTM (weight_hh_l0 of shape {tuple(layer['weight_hh_l0'].shape)})"
            )
        layers.append(layer)
    return layers


def _read_head(state_dict: StateDict) -> list[tuple[StateDict, StateDict]]:
    """The head's (BatchNorm1d, Linear) pairs in order. fastai v2 nests them in LinBnDrop blocks
    (``1.layers.{block}.{0: BatchNorm1d, 1: Dropout, 2: Linear (no bias)}``; no Dropout when p=0), v1 lists them
    flat (``1.layers.{0: BatchNorm1d, 1: Dropout, 2: Linear, 3: ReLU, 4: BatchNorm1d...}``): modules are told
    apart by their tensors, a batch norm having running statistics."""
    modules: dict[tuple[int, ...], StateDict] = {}
    for key, value in state_dict.items():
        if key.startswith("1.layers."):
            path, name = key[len("1.layers.") :].rsplit(".", 1)
            modules.setdefault(tuple(int(part) for part in path.split(".")), {})[name] = value
    ordered = [modules[path] for path in sorted(modules)]
    kinds = [
        "norm" if "running_mean" in m else "linear" if m.get("weight", torch.empty(0)).dim() == 2 else "?"
        for m in ordered
    ]
    if not ordered or kinds != ["norm", "linear"] * (len(ordered) // 2):
        raise ValueError(
            "unsupported classifier head: expected fastai's BatchNorm1d -> Linear blocks (PoolingLinearClassifier "
            "with bn=True), found modules " + ", ".join(".".join(map(str, p)) for p in sorted(modules))
        )
    return list(zip(ordered[::2], ordered[1::2]))


# ----------------------------------------------------------------------------------------------------------
# Building our model


def config_from_fastai(
    weights: FastaiWeights, itos: list[str], kind: str, labels: list[str] | None = None, **overrides
) -> AWDLSTMConfig:
    """The ``AWDLSTMConfig`` matching ``weights`` (sizes from the tensor shapes, special ids from ``itos``)."""
    sizes = weights.sizes
    if len(itos) != sizes["vocab_size"]:
        raise ValueError(
            f"the vocabulary has {len(itos)} tokens but the embedding has {sizes['vocab_size']} rows: they do not "
            "belong together (a text vocabulary file cannot hold tokens with line breaks: use JSON or a pickle)"
        )
    special_ids = {
        "pad_token_id": itos.index(PAD),
        "bos_token_id": itos.index(BOS),
        "eos_token_id": itos.index(EOS),
    }
    tied = weights.decoder_weight is None or torch.equal(weights.decoder_weight, weights.embedding)
    common = {**sizes, **special_ids, "tie_word_embeddings": tied}
    if kind == "lm":
        return AWDLSTMConfig.for_language_model(**common, **overrides)
    hidden_sizes = [linear["weight"].shape[0] for _, linear in weights.head[:-1]]
    num_labels = weights.head[-1][1]["weight"].shape[0]
    labels = (
        labels
        if labels is not None and len(labels) == num_labels
        else [f"LABEL_{i}" for i in range(num_labels)]
    )
    head = {
        "classifier_hidden_sizes": hidden_sizes,
        "classifier_dropouts": [0.4] + [0.1] * len(hidden_sizes),  # fastai's defaults; unused in eval
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    return AWDLSTMConfig.for_classifier(**common, **head, **overrides)


def hf_state_dict(weights: FastaiWeights, kind: str) -> StateDict:
    """Our parameter names for the tensors of ``weights`` (see ``AWDLSTMForCausalLM`` /
    ``AWDLSTMForSequenceClassification``)."""
    state = {"awd_lstm.embed_tokens.weight": weights.embedding}
    for i, layer in enumerate(weights.lstm_layers):
        state.update({f"awd_lstm.layers.{i}.{name}": tensor for name, tensor in layer.items()})
    if kind == "lm":
        vocab_size = weights.embedding.shape[0]
        decoder = weights.decoder_weight
        if decoder is not None and not torch.equal(decoder, weights.embedding):
            state["decoder.weight"] = decoder
        bias = weights.decoder_bias
        state["decoder.bias"] = bias if bias is not None else weights.embedding.new_zeros(vocab_size)
        return state
    for block, (norm, linear) in enumerate(weights.head):  # ours: BatchNorm1d, Dropout, Linear, ReLU, ...
        base = 4 * block
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if name in norm:
                state[f"head.layers.{base}.{name}"] = norm[name]
        state[f"head.layers.{base + 2}.weight"] = linear["weight"]
        bias = linear.get("bias")  # fastai v2 drops the bias of a Linear that follows a batch norm
        state[f"head.layers.{base + 2}.bias"] = (
            bias if bias is not None else linear["weight"].new_zeros(len(linear["weight"]))
        )
    return state


def resolve_kind(weights: FastaiWeights, kind: str | None) -> str:
    """The kind of model to build: the detected one unless ``kind`` forces it. An encoder alone or a classifier
    converts to a language model (the encoder's weights, a decoder tied to the embedding with a zero bias)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind is None:
        kind = "lm" if weights.kind == "encoder" else weights.kind
    if kind == "classifier" and weights.kind != "classifier":
        raise ValueError(
            f"a fastai {weights.kind} checkpoint has no classifier head: convert it as a language model and load "
            "it with AWDLSTMForSequenceClassification.from_pretrained(output_dir, num_labels=...) to add a new head"
        )
    if kind == "lm" and weights.decoder_bias is None:
        logger.warning(
            "The checkpoint has no LM decoder bias (%s): the converted LM uses a zero bias.", weights.kind
        )
    return kind


def build_model(
    weights: FastaiWeights, itos: list[str], kind: str, labels=None, **overrides
) -> AWDLSTMPreTrainedModel:
    """Our model holding the fastai weights, in eval mode."""
    config = config_from_fastai(weights, itos, kind, labels, **overrides)
    model_class = AWDLSTMForCausalLM if kind == "lm" else AWDLSTMForSequenceClassification
    model = model_class(config)
    state = hf_state_dict(weights, kind)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (key == "decoder.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"conversion bug: missing {missing}, unexpected {unexpected}")
    return model.eval()


def reads_backwards(weights: str | Path, backwards: bool | None) -> bool:
    """The direction of a fastai checkpoint: ``backwards`` when given, else whether the file name contains
    ``bwd`` (fastai's naming, e.g. ``lstm_bwd.pth``): the weights alone cannot tell."""
    if backwards is not None:
        return backwards
    detected = "bwd" in Path(weights).name.lower()
    if detected:
        logger.info("%s is named as a backward model: converting with backwards=True.", Path(weights).name)
    return detected


def convert_fastai_checkpoint(
    weights: str | Path,
    vocab: str | Path,
    output_dir: str | Path | None = None,
    kind: str | None = None,
    labels: list[str] | None = None,
    backwards: bool | None = None,
    **config_overrides,
) -> tuple[AWDLSTMPreTrainedModel, PreTrainedTokenizerFast]:
    """Converts a fastai checkpoint and its vocabulary into our model and a fastai-compatible tokenizer.

    Args:
        weights: the ``.pth`` file (``learn.save``, ``learn.save_encoder``, or fastai v1's ``lstm_fwd.pth``).
        vocab: fastai's vocabulary: a pickle (``itos_wt103.pkl``), JSON list or text file (one token per line).
        output_dir: if given, the model, config and tokenizer are saved there with ``save_pretrained``.
        kind: ``"lm"`` or ``"classifier"``; by default the kind found in the checkpoint (``"lm"`` for an encoder).
        labels: class names of a classifier, in fastai's order (by default those of a ``[tokens, labels]``
            vocabulary, else ``LABEL_0``...).
        backwards: whether fastai trained the model on reversed texts (``backwards=True`` data); by default
            whether the file name contains ``bwd``. Sets ``AWDLSTMConfig.backwards``.
        config_overrides: other ``AWDLSTMConfig`` fields, e.g. ``bptt`` and ``max_len`` of a classifier (fastai's
            ``seq_len`` and ``max_len``; the defaults, 72 and 1440, are fastai's too).

    Returns:
        The model (``AWDLSTMForCausalLM`` or ``AWDLSTMForSequenceClassification``, eval mode) and the tokenizer.
    """
    itos, vocab_labels = load_fastai_vocab(vocab)
    check_fastai_vocab(itos)
    fastai_weights = read_fastai_weights(load_fastai_state_dict(weights))
    kind = resolve_kind(fastai_weights, kind)
    config_overrides["backwards"] = reads_backwards(weights, backwards)
    model = build_model(fastai_weights, itos, kind, labels or vocab_labels, **config_overrides)
    tokenizer = build_fastai_tokenizer(itos)
    if output_dir is not None:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        logger.info(
            "Converted a fastai %s %s checkpoint (%s) into %s at %s",
            fastai_weights.generation,
            fastai_weights.kind,
            ", ".join(f"{k}={v}" for k, v in fastai_weights.sizes.items()),
            type(model).__name__,
            output_dir,
        )
    return model, tokenizer


__all__ = [
    "FastaiWeights",
    "RestrictedUnpickler",
    "convert_fastai_checkpoint",
    "detect_generation",
    "detect_kind",
    "load_fastai_state_dict",
    "load_fastai_vocab",
    "read_fastai_weights",
    "reads_backwards",
]
