"""CPU inference: int8 dynamic quantization, and ONNX export of the classifier and of the LM step.

``quantize_for_cpu(model)`` returns an int8 copy of a classifier or language model (weights of the LSTMs, the
linear layers and, optionally, the embedding stored as int8; activations quantized on the fly). It is the same
model class, so ``model(**batch)``, ``pipeline("text-classification", model=..., tokenizer=...)`` and
``generate`` keep working; it is for inference in the running process (it cannot be ``save_pretrained``).

ONNX. The classifier's BPT3C loop (``pool_document``) runs a data-dependent number of ``bptt``-sized chunks,
each starting from the state the previous one ended in. Rather than exporting that Python loop as an ONNX
``Loop`` (``torch.export`` would need it rewritten with ``torch.cond``/``while_loop``), the exported unit is one
chunk, and a few lines of numpy drive the loop exactly as ``pool_document`` does:

* ``classifier_step.onnx``: ids of one chunk + the per-layer state + the running [last, max, sum] pooling ->
  the new state + the updated pooling. The pooling update is the model's own ``ConcatPooling`` code, traced,
  so no pooling arithmetic is re-implemented outside the model.
* ``classifier_head.onnx``: the running pooling -> [last, max, mean] -> the BatchNorm/Linear head -> logits.
* ``OnnxClassifier`` left-aligns the padding from the attention mask, runs the chunks with onnxruntime and
  returns the logits of ``AWDLSTMForSequenceClassification`` (to float rounding) for any padding and any
  document lengths, also beyond ``bptt`` and ``max_len``; with a tokenizer it also takes raw texts.

``export_onnx_language_model_step`` exports ``AWDLSTMForCausalLM`` as one step with the state in and out
(``input_ids``, ``h_0``, ``c_0``, ... -> ``logits``, ``next_h_0``, ``next_c_0``, ...), for streaming scoring
or generation loops outside Python/PyTorch.

Two exporters give the same results (tested to 1e-4 against PyTorch); running the files needs only
``onnxruntime`` and numpy:

* ``exporter="torchscript"`` (default): ``torch.onnx.export(dynamo=False)``. Deprecated by PyTorch since 2.9
  but present in 2.13; it folds each LSTM's weights into ONNX ``LSTM`` initializers, exports in a fraction of
  a second and needs no extra package.
* ``exporter="dynamo"``: ``torch.onnx.export(dynamo=True)`` (torch.export based, PyTorch's default), which
  needs ``onnxscript``. Its graphs re-slice the LSTM weights into ONNX gate order at every run (they hang off
  the state's shape, so onnxruntime cannot fold them; about 10% slower at the demo size), it takes seconds
  per graph, and in torch 2.13 it needs the shape workaround of ``_clear_traced_shapes``. Use it once the
  TorchScript exporter is gone.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data import longest_first
from .modeling_awd_lstm import (
    AWDLSTMForCausalLM,
    AWDLSTMForSequenceClassification,
    AWDLSTMModel,
    ConcatPooling,
    State,
)

CLASSIFIER_STEP_FILE = "classifier_step.onnx"
CLASSIFIER_HEAD_FILE = "classifier_head.onnx"
ONNX_CONFIG_FILE = "onnx_config.json"
POOLING_NAMES = ("pool_last", "pool_max", "pool_sum")
EXPORTERS = ("torchscript", "dynamo")
ONNX_OPSET = 17


# ----------------------------------------------------------------------------------------------------------
# Dynamic int8 quantization


class Int8Embedding(nn.Module):
    """An embedding whose table is stored as uint8 with one float scale and offset per row (per-row "float
    qparams" quantization), dequantized row by row at lookup.

    ``AWDLSTMModel.initial_state`` reads ``embed_tokens.weight`` only for its dtype and device, so ``weight``
    here is an empty float placeholder with those; the table itself is ``self.quantized``. The placeholder is a
    (frozen) parameter so that a fully quantized language model still has one, from which ``model.device`` and
    ``model.dtype`` (read by ``generate`` and the pipelines) are taken."""

    def __init__(self, quantized: nn.Module, embedding: nn.Embedding):
        super().__init__()
        self.quantized = quantized
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.weight = nn.Parameter(embedding.weight.new_empty(0).detach(), requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The int8 lookup kernel needs contiguous ids; BPT3C passes column slices of the batch.
        return self.quantized(input_ids.contiguous())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}, dtype=quint8"


def quantize_for_cpu(
    model: PreTrainedModel, *, quantize_embedding: bool = True, inplace: bool = False
) -> PreTrainedModel:
    """Dynamic int8 quantization for CPU inference (``torch.ao.quantization.quantize_dynamic``): the weights of
    every ``nn.LSTM`` and ``nn.Linear`` become int8 (per tensor), their inputs are quantized on the fly, and the
    embedding table (``quantize_embedding``) becomes uint8 with per-row scales. BatchNorm, the recurrent state
    and the pooling stay float32.

    Works on ``AWDLSTMForSequenceClassification``, ``AWDLSTMForCausalLM`` and ``AWDLSTMModel``. Returns the
    model in eval mode and float32 outside the quantized layers, of the same class (so ``pipeline(...)``
    accepts it); the input model is left unchanged unless ``inplace``. The result is for inference in this
    process: it cannot be trained or saved with ``save_pretrained`` (quantize after loading instead; it takes
    well under a second). The decoder of a language model is quantized on its own, so it is no longer tied to
    the embedding."""
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float_qparams_weight_only_qconfig,
        quantize_dynamic,
    )

    spec: dict[type[nn.Module], object] = {
        nn.LSTM: default_dynamic_qconfig,
        nn.Linear: default_dynamic_qconfig,
    }
    if quantize_embedding:
        spec[nn.Embedding] = float_qparams_weight_only_qconfig
    target = (model if inplace else copy.deepcopy(model)).float().eval()
    encoders = [module for module in target.modules() if isinstance(module, AWDLSTMModel)]
    float_embeddings = [encoder.embed_tokens for encoder in encoders]
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, whose int8 path does not cover nn.LSTM.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*", category=UserWarning)
        quantize_dynamic(target, spec, inplace=True)  # swaps the modules inside ``target``
    if quantize_embedding:
        for encoder, embedding in zip(encoders, float_embeddings):
            encoder.embed_tokens = Int8Embedding(encoder.embed_tokens, embedding)
    return target


# ----------------------------------------------------------------------------------------------------------
# ONNX export: the traced units


def _pairs(flat: Sequence[torch.Tensor]) -> State:
    """(h_0, c_0, h_1, c_1, ...) -> ((h_0, c_0), (h_1, c_1), ...)."""
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def _flat(state: State) -> tuple[torch.Tensor, ...]:
    """((h_0, c_0), (h_1, c_1), ...) -> (h_0, c_0, h_1, c_1, ...)."""
    return tuple(tensor for layer in state for tensor in layer)


def state_names(num_layers: int, prefix: str = "") -> list[str]:
    """ONNX names of a flattened state: ``h_0, c_0, h_1, c_1, ...`` (with ``prefix``, e.g. ``next_``)."""
    return [f"{prefix}{kind}_{layer}" for layer in range(num_layers) for kind in ("h", "c")]


def _running_pooling(
    lengths: torch.Tensor,
    window_start: torch.Tensor,
    last: torch.Tensor,
    max_: torch.Tensor,
    sum_: torch.Tensor,
) -> ConcatPooling:
    """The model's ``ConcatPooling`` resumed from running values (zeros, -inf, zeros before the first chunk,
    which the first update turns into exactly what a fresh ``ConcatPooling`` would hold)."""
    pooling = ConcatPooling(lengths, window_start)
    pooling.last, pooling.max, pooling.sum = last, max_, sum_
    return pooling


class ClassifierChunkStep(nn.Module):
    """One BPT3C chunk of ``pool_document``: encodes ``input_ids`` (batch, chunk_len), the chunk at absolute
    position ``start`` of left-aligned documents, from ``state``, and folds its outputs into the running
    pooling. Returns (pool_last, pool_max, pool_sum, h_0, c_0, ...)."""

    def __init__(self, model: AWDLSTMForSequenceClassification):
        super().__init__()
        self.encoder = model.awd_lstm

    def forward(self, input_ids, start, lengths, window_start, pool_last, pool_max, pool_sum, *state):
        outputs, new_state, _ = self.encoder.encode(input_ids, _pairs(state))
        # Positions counted from the chunk start: the same masks as ConcatPooling.update(outputs, start).
        pooling = _running_pooling(lengths - start, window_start - start, pool_last, pool_max, pool_sum)
        pooling.update(outputs, 0)
        return (pooling.last, pooling.max, pooling.sum, *_flat(new_state))


class ClassifierHead(nn.Module):
    """The end of the classifier's forward: running pooling -> [last, max, mean] -> head -> logits."""

    def __init__(self, model: AWDLSTMForSequenceClassification):
        super().__init__()
        self.head = model.head

    def forward(self, pool_last, pool_max, pool_sum, lengths, window_start):
        return self.head(_running_pooling(lengths, window_start, pool_last, pool_max, pool_sum).result())


class LanguageModelStep(nn.Module):
    """``AWDLSTMForCausalLM`` with the state flattened: (input_ids, h_0, c_0, ...) -> (logits, h_0, c_0, ...)."""

    def __init__(self, model: AWDLSTMForCausalLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids, *state):
        output = self.model(input_ids=input_ids, cache=_pairs(state))
        return (output.logits, *_flat(output.cache))


# ----------------------------------------------------------------------------------------------------------
# ONNX export: writing the files


def _layer_widths(config) -> list[int]:
    return [n_out for _, n_out in AWDLSTMModel.layer_sizes(config)]


def _example_state(widths: Sequence[int], batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(batch, width) for width in widths for _ in ("h", "c"))


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    names: tuple[list[str], list[str]],
    dynamic: dict[str, dict[int, str]],
    exporter: str,
) -> Path:
    """Exports ``module(*args)`` to ``path`` with the named inputs and outputs (``names``) and the labelled
    axes of ``dynamic`` dynamic, with the TorchScript-based or the torch.export-based ("dynamo") exporter."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, the LSTM batch-size notice
        if exporter == "torchscript":
            torch.onnx.export(
                module.eval(),
                args,
                str(path),
                dynamo=False,
                input_names=names[0],
                output_names=names[1],
                dynamic_axes=dynamic,
                opset_version=ONNX_OPSET,
            )
        else:
            _export_with_dynamo(module.eval(), args, path, names, dynamic)
    _clear_traced_shapes(path, dynamic)
    return path


def _export_with_dynamo(
    module: nn.Module, args: tuple, path: Path, names: tuple[list[str], list[str]], dynamic: dict
) -> None:
    """``torch.onnx.export(dynamo=True)``: needs ``onnxscript``; ``dynamic`` becomes ``torch.export.Dim``s."""
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError("exporter='dynamo' needs the onnxscript package: pip install onnxscript")
    dims: dict[str, torch.export.Dim] = {}
    specs = [
        {
            axis: dims.setdefault(label, torch.export.Dim(label))
            for axis, label in dynamic.get(name, {}).items()
        }
        or None
        for name in names[0]
    ]
    # torch.export matches dynamic_shapes to forward's signature: the *state varargs form one nested tuple.
    kinds = [parameter.kind for parameter in inspect.signature(module.forward).parameters.values()]
    num_named = kinds.count(inspect.Parameter.POSITIONAL_OR_KEYWORD)
    varargs = (tuple(specs[num_named:]),) if inspect.Parameter.VAR_POSITIONAL in kinds else ()
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        input_names=names[0],
        output_names=names[1],
        dynamic_shapes=(*specs[:num_named], *varargs),
        external_data=False,
        verbose=False,
        optimize=False,  # see _clear_traced_shapes; onnxruntime folds what is constant itself at load
    )


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raises a logger's level for a while (the exporter logs every optional op library it does not find)."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _clear_traced_shapes(path: Path, dynamic: dict[str, dict[int, str]]) -> None:
    """Drops the intermediate shapes the exporter recorded and names the outputs' dynamic axes.

    For the dynamo exporter: torch 2.13 traces ``nn.LSTM``'s output with the example's sequence length as a
    constant, not as the dynamic dimension; the graph itself is dynamic, but that recorded shape leaks into
    shape inference (onnxruntime warns at every run with another length, and the exporter's constant folding,
    hence ``optimize=False``, bakes it into a Reshape). Without ``value_info`` onnxruntime infers every shape
    from the inputs."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    for output in model.graph.output:
        shape = output.type.tensor_type.shape
        for axis, label in dynamic.get(output.name, {}).items():
            shape.dim[axis].dim_param = label
    onnx.save(model, str(path))


def _write_onnx_config(directory: Path, model: PreTrainedModel, **extra) -> None:
    """What the numpy driver needs besides the graphs: BPT3C sizes, layer widths, labels."""
    config = model.config
    content = {
        "bptt": config.bptt,
        "max_len": config.max_len,
        "layer_widths": _layer_widths(config),
        "embedding_size": config.embedding_size,
        "pad_token_id": config.pad_token_id,
        "id2label": {str(k): v for k, v in config.id2label.items()},
        "problem_type": config.problem_type,
        **extra,
    }
    (directory / ONNX_CONFIG_FILE).write_text(json.dumps(content, indent=2) + "\n")


def export_onnx_classifier(
    model: AWDLSTMForSequenceClassification,
    directory: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    exporter: str = "torchscript",
) -> dict[str, Path]:
    """Writes ``classifier_step.onnx``, ``classifier_head.onnx`` and ``onnx_config.json`` (and the tokenizer,
    when given) into ``directory``, for ``OnnxClassifier``. Batch size and chunk length are dynamic. Returns the
    paths by name ("step", "head", "config"). ``exporter``: see the module docstring."""
    if model.config.backwards or model.config.bidirectional:
        raise ValueError(
            "ONNX export covers forward classifiers only: OnnxClassifier feeds each document left to right, and "
            "this model reads backwards (config.backwards) or is a bidirectional ensemble. Run it in PyTorch "
            "(quantize_for_cpu works), or export a forward classifier."
        )
    directory = Path(directory)
    model = copy.deepcopy(model).float().eval()
    widths, batch, chunk = _layer_widths(model.config), 2, min(model.config.bptt, 3)
    ids = torch.randint(0, model.config.vocab_size, (batch, max(chunk, 2)))
    pooled = [torch.zeros(batch, model.config.embedding_size) for _ in POOLING_NAMES]
    lengths, window_start = torch.tensor([ids.size(1), 1]), torch.zeros(batch, dtype=torch.long)
    per_row = {0: "batch"}
    step_inputs = ["input_ids", "start", "lengths", "window_start", *POOLING_NAMES, *state_names(len(widths))]
    step_outputs = [f"next_{name}" for name in (*POOLING_NAMES, *state_names(len(widths)))]
    dynamic = {name: per_row for name in step_inputs[2:] + step_outputs} | {
        "input_ids": {0: "batch", 1: "chunk"}
    }
    step_args = (ids, torch.tensor(0), lengths, window_start, *pooled, *_example_state(widths, batch))
    paths = {
        "step": _export(
            ClassifierChunkStep(model),
            step_args,
            directory / CLASSIFIER_STEP_FILE,
            (step_inputs, step_outputs),
            dynamic,
            exporter,
        )
    }
    head_inputs = [*POOLING_NAMES, "lengths", "window_start"]
    head_dynamic = {name: per_row for name in [*head_inputs, "logits"]}
    paths["head"] = _export(
        ClassifierHead(model),
        (*pooled, lengths, window_start),
        directory / CLASSIFIER_HEAD_FILE,
        (head_inputs, ["logits"]),
        head_dynamic,
        exporter,
    )
    _write_onnx_config(directory, model)
    paths["config"] = directory / ONNX_CONFIG_FILE
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return paths


def export_onnx_language_model_step(
    model: AWDLSTMForCausalLM, path: str | Path, *, exporter: str = "torchscript"
) -> Path:
    """Writes the LM as one step with the state in and out: inputs ``input_ids`` (batch, seq_len) int64 and
    ``h_0, c_0, h_1, c_1, ...`` (batch, width of the layer) float32, all-zero to start a stream; outputs
    ``logits`` (batch, seq_len, vocab_size) and ``next_h_0, next_c_0, ...``, the state to feed to the next
    step. Every position is a real token (no attention mask): feed streams of equal length, or one at a time.
    ``exporter``: see the module docstring."""
    path = Path(path)
    model = copy.deepcopy(model).float().eval()
    widths, batch = _layer_widths(model.config), 2
    ids = torch.randint(0, model.config.vocab_size, (batch, 3))
    inputs, outputs = ["input_ids", *state_names(len(widths))], ["logits", *state_names(len(widths), "next_")]
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    dynamic |= {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    return _export(
        LanguageModelStep(model),
        (ids, *_example_state(widths, batch)),
        path,
        (inputs, outputs),
        dynamic,
        exporter,
    )


# ----------------------------------------------------------------------------------------------------------
# Running the exported classifier


def _session(path: Path, num_threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def left_align_numpy(input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of ``modeling_awd_lstm.left_align``: each row's real tokens moved to the front, in order;
    returns the aligned ids and the number of real tokens per row."""
    order = np.argsort(attention_mask == 0, axis=1, kind="stable")
    return np.take_along_axis(input_ids, order, axis=1), attention_mask.sum(axis=1).astype(np.int64)


class OnnxClassifier:
    """``AWDLSTMForSequenceClassification`` run by onnxruntime from the files of ``export_onnx_classifier``.

    ``logits(input_ids, attention_mask)`` equals the PyTorch model's logits (to float rounding) for padding on
    any side and documents of any length; ``__call__(texts)`` tokenizes raw texts (needs the tokenizer saved by
    the export, or passed in) and returns pipeline-style ``[{"label", "score"}]``."""

    def __init__(
        self,
        directory: str | Path,
        tokenizer: PreTrainedTokenizerBase | None = None,
        num_threads: int | None = None,
    ):
        directory = Path(directory)
        self.config = json.loads((directory / ONNX_CONFIG_FILE).read_text())
        self.step = _session(directory / CLASSIFIER_STEP_FILE, num_threads)
        self.head = _session(directory / CLASSIFIER_HEAD_FILE, num_threads)
        if tokenizer is None and (directory / "tokenizer.json").exists():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(directory)
        self.tokenizer = tokenizer
        self.id2label = {int(k): v for k, v in self.config["id2label"].items()}

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """(batch, seq_len) ids and mask (any padding side) -> (batch, num_labels) float32 logits."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
        ids, lengths = left_align_numpy(input_ids, mask)
        if (lengths == 0).any():
            raise ValueError("Every sequence needs at least one real token (attention_mask 1).")
        window_start = np.maximum(lengths - self.config["max_len"], 0)
        pooled = self._pool(ids, lengths, window_start)
        return self.head.run(None, {**pooled, "lengths": lengths, "window_start": window_start})[0]

    def _pool(self, ids: np.ndarray, lengths: np.ndarray, window_start: np.ndarray) -> dict[str, np.ndarray]:
        """BPT3C as in ``pool_document``: chunk after chunk, carrying the state and the running pooling."""
        batch, width, bptt = ids.shape[0], self.config["embedding_size"], self.config["bptt"]
        widths = self.config["layer_widths"]
        state = {
            name: np.zeros((batch, widths[i // 2]), np.float32)
            for i, name in enumerate(state_names(len(widths)))
        }
        pooled = {
            "pool_last": np.zeros((batch, width), np.float32),
            "pool_max": np.full((batch, width), -np.inf, np.float32),
            "pool_sum": np.zeros((batch, width), np.float32),
        }
        carried = [*pooled, *state]  # the step's outputs, in order, are the next values of these inputs
        for start in range(0, int(lengths.max()), bptt):
            feed = {"input_ids": np.ascontiguousarray(ids[:, start : start + bptt]), "start": np.array(start)}
            feed |= {"lengths": lengths, "window_start": window_start, **pooled, **state}
            values = dict(zip(carried, self.step.run(None, feed)))
            pooled = {name: values[name] for name in POOLING_NAMES}
            state = {name: values[name] for name in state}
        return pooled

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Raw texts -> (len(texts), num_labels) scores, as the text-classification pipeline computes them."""
        if self.tokenizer is None:
            raise ValueError(
                "OnnxClassifier needs a tokenizer for raw texts: export with one or pass one in."
            )
        order = longest_first(texts)  # batches of similar lengths; the rows go back in the given order below
        scores = []
        for begin in range(0, len(texts), batch_size):
            batch_texts = [texts[index] for index in order[begin : begin + batch_size]]
            batch = self.tokenizer(batch_texts, padding=True, return_tensors="np")
            scores.append(self._scores(self.logits(batch["input_ids"], batch["attention_mask"])))
        return np.concatenate(scores)[np.argsort(order)]

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        """As the text-classification pipeline: identity for regression, sigmoid for multi-label or a single
        label, softmax otherwise."""
        if self.config["problem_type"] == "regression":
            return logits
        if self.config["problem_type"] == "multi_label_classification" or logits.shape[-1] == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def __call__(self, texts: str | Sequence[str], batch_size: int = 32) -> list[dict[str, float | str]]:
        """Like ``pipeline("text-classification")``: the top label and its score for each text."""
        probabilities = self.predict_proba([texts] if isinstance(texts, str) else texts, batch_size)
        return [
            {"label": self.id2label[int(row.argmax())], "score": float(row.max())} for row in probabilities
        ]


__all__ = [
    "ClassifierChunkStep",
    "ClassifierHead",
    "Int8Embedding",
    "LanguageModelStep",
    "OnnxClassifier",
    "export_onnx_classifier",
    "export_onnx_language_model_step",
    "left_align_numpy",
    "quantize_for_cpu",
    "state_names",
]
