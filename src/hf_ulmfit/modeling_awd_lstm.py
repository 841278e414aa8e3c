"""AWD-LSTM (Merity et al. 2018, "Regularizing and Optimizing LSTM Language Models") for ULMFiT
(Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text Classification").

Three models share one encoder, ``AWDLSTMModel``:
  * ``AWDLSTMForCausalLM``: the language model of ULMFiT's stages 1 and 2, decoder tied to the embedding.
  * ``AWDLSTMForSequenceClassification``: stage 3, concat pooling over a document encoded with BPT3C.

The models are functional: the recurrent state goes into ``forward`` (``cache``) and comes out of it; nothing is
kept between calls. This file imports only torch, transformers and its sibling config, so the Hub can serve it
as remote code.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_awd_lstm import AWDLSTMConfig

# Where each Auto class finds its class when a saved checkpoint is loaded as remote code.
AUTO_MAP = {
    "AutoConfig": "configuration_awd_lstm.AWDLSTMConfig",
    "AutoModel": "modeling_awd_lstm.AWDLSTMModel",
    "AutoModelForCausalLM": "modeling_awd_lstm.AWDLSTMForCausalLM",
    "AutoModelForSequenceClassification": "modeling_awd_lstm.AWDLSTMForSequenceClassification",
}

# The recurrent state: one (h, c) pair per layer, each of shape (batch, width of that layer).
LayerState = tuple[torch.Tensor, torch.Tensor]
State = tuple[LayerState, ...]


# ----------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class AWDLSTMModelOutput(ModelOutput):
    """
    pooler_output: (batch, 3*embedding_size) the document vector of each row, [last, max, mean] of
        ``last_hidden_state`` over the row's last ``config.max_len`` real tokens (``AWDLSTMModel.forward``);
        ``None`` with ``output_pooled=False``. It is the first field, so ``outputs[0]`` (what
        ``pipeline("feature-extraction")`` returns) is the document vector.
    last_hidden_state: (batch, seq_len, embedding_size) output of the last LSTM layer, before output dropout.
    cache: the recurrent state after the last real token of every row; feed it back to continue the stream.
    hidden_states: the embedded input and every layer's output, when ``output_hidden_states=True``.
    """

    pooler_output: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    cache: State | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class AWDLSTMCausalLMOutput(ModelOutput):
    """
    loss: next-token cross-entropy (plus AR/TAR in training), when labels are given.
    logits: (batch, seq_len, vocab_size).
    cache: the recurrent state, as in ``AWDLSTMModelOutput``.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: State | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------
# Regularisation: the dropouts of AWD-LSTM (Merity et al. 2018, section 4)


class LockedDropout(nn.Module):
    """Variational dropout (Gal & Ghahramani 2016; AWD-LSTM section 4.2): one mask per sequence and feature,
    shared by every time step, so the same units are dropped all along the sequence."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, seq_len, features)
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask


def embed_with_word_dropout(
    embedding: nn.Embedding, input_ids: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Embedding dropout (AWD-LSTM section 4.3): drop whole word types, i.e. rows of the embedding matrix, so a
    dropped word disappears everywhere in the batch; the kept rows are scaled by 1/(1-p).

    Masking the looked-up vectors by their word's mask equals masking the matrix, but costs batch*seq_len*dim
    instead of vocab_size*dim."""
    embedded = embedding(input_ids)  # (batch, seq_len, embedding_size)
    if not training or p == 0.0:
        return embedded
    keep_word = embedding.weight.new_empty(embedding.num_embeddings, 1).bernoulli_(1.0 - p) / (1.0 - p)
    return embedded * keep_word[input_ids]


def run_lstm_with_weight_drop(lstm: nn.LSTM, inputs, state: tuple, p: float, training: bool):
    """DropConnect on the hidden-to-hidden matrix (AWD-LSTM section 2): one mask on ``weight_hh_l0`` per
    forward, shared by all time steps. The dropped matrix is passed to the LSTM for this call only, so the module
    keeps its plain ``weight_hh_l0`` parameter (no raw copies in the state dict) and cuDNN/oneDNN kernels run."""
    if not training or p == 0.0:
        return lstm(inputs, state)
    dropped = F.dropout(lstm.weight_hh_l0, p=p, training=True)
    return functional_call(lstm, {"weight_hh_l0": dropped}, (inputs, state))


# ----------------------------------------------------------------------------------------------------------
# Input checks: a wrong input gets an error that names the problem and the fix, not a crash deep inside torch.


def check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """Raises ``ValueError`` unless ``input_ids`` is a (batch, seq_len) tensor of ids in [0, vocab_size).

    An id outside the vocabulary almost always means a tokenizer that does not belong to the model. One min/max
    reduction over the ids: negligible next to the LSTMs."""
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}; "
            "for a single sequence use input_ids.unsqueeze(0), or call the tokenizer with return_tensors='pt'."
        )
    if input_ids.numel() == 0 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return  # nothing to check, or a graph being traced (ONNX, torch.export): no data-dependent branch
    low, high = (int(v) for v in torch.aminmax(input_ids))
    if high >= vocab_size:
        raise ValueError(
            f"input_ids contain the token id {high}, but the model's vocabulary has {vocab_size} tokens "
            f"(ids 0 to {vocab_size - 1}): the tokenizer does not match the model. Use the tokenizer saved with "
            "the model (AutoTokenizer.from_pretrained on the model's directory), or call "
            "model.resize_token_embeddings(len(tokenizer)) before training with a larger tokenizer."
        )
    if low < 0:
        raise ValueError(
            f"input_ids contain the negative id {low}: ids index the vocabulary. Mark padding with "
            "attention_mask = 0 (any valid id, e.g. the pad token's, can fill those positions); -100 is for labels."
        )


def corrupt_weights_message(source, error: Exception) -> str:
    """What to tell a user whose ``.safetensors`` weights could not be read."""
    local = source is not None and os.path.isdir(source)
    files = sorted(str(path) for path in Path(source).glob("*.safetensors")) if local else []
    if len(files) == 1:
        what = f"{files[0]} is"
    elif files:
        what = f"one of {files} is"
    else:
        what = f"the downloaded .safetensors weights of {str(source)!r} are"
    return (
        f"{what} corrupt or truncated ({error}), e.g. an interrupted download or save. Save the model again, "
        "or download it again with from_pretrained(..., force_download=True)."
    )


# ----------------------------------------------------------------------------------------------------------
# Padding: a row's real tokens are moved to its front, so an LSTM can skip padding wherever it is.


def left_align(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moves each row's real tokens (mask 1) to the front, keeping their order: left, right or scattered padding
    all become right padding. Returns the aligned ids, the number of real tokens per row, and the gather index
    (aligned position j of row b came from position order[b, j])."""
    order = torch.sort((attention_mask == 0).to(torch.int8), dim=1, stable=True).indices  # (batch, seq_len)
    return input_ids.gather(1, order), attention_mask.sum(dim=1), order


def restore_positions(aligned: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Inverse of ``left_align`` for (batch, seq_len, features) tensors."""
    index = order.unsqueeze(-1).expand_as(aligned)
    return torch.empty_like(aligned).scatter_(1, index, aligned)


# ----------------------------------------------------------------------------------------------------------
# Direction: a backward model (config.backwards) reads each text right to left.


def reverse_real_tokens(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverses the order of each row's real tokens (mask 1), in place of each other: padding stays where it is,
    on the left, the right or scattered, and rows of any length are reversed on their own length.

    ULMFiT section 3.4 ("Bidirectional language model") trains a backward LM and classifier besides the forward
    ones and averages the two classifiers' predictions. A backward model applies this at its entry, so it is fed
    texts in their natural order like a forward one. Returns the reversed ids and the gather index (position j of
    row b now holds the token of position index[b, j]); the permutation is its own inverse, so the same index
    puts the outputs (``reverse_positions``) back at their tokens' positions."""
    batch_size, seq_len = input_ids.shape
    positions = torch.arange(seq_len, device=input_ids.device).expand(batch_size, seq_len)
    if attention_mask is None or bool(attention_mask.all()):
        index = positions.flip(1)
    else:
        real = attention_mask != 0  # (batch, seq_len)
        _, lengths, order = left_align(input_ids, attention_mask)  # order[b, k]: position of real token k
        rank = real.long().cumsum(dim=1) - 1  # rank of each real position among its row's real tokens
        mirrored = (lengths.unsqueeze(1) - 1 - rank).clamp(min=0)  # the rank it swaps with
        index = torch.where(real, order.gather(1, mirrored), positions)
    return input_ids.gather(1, index), index


def reverse_positions(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Applies ``reverse_real_tokens``'s permutation to a (batch, seq_len, ...) tensor."""
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, expanded)


# ----------------------------------------------------------------------------------------------------------
# The models


class AWDLSTMPreTrainedModel(PreTrainedModel):
    config_class = AWDLSTMConfig
    config: AWDLSTMConfig
    base_model_prefix = "awd_lstm"
    main_input_name = "input_ids"
    accepts_loss_kwargs = (
        False  # losses are per-batch means: the Trainer scales them for gradient accumulation
    )
    _no_split_modules = ["LSTM"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Saves as any transformers model, with an ``auto_map`` for all four Auto classes next to the code files,
        so the directory also loads with ``trust_remote_code=True`` where hf_ulmfit is not installed."""
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """``PreTrainedModel.from_pretrained``; a corrupt or truncated weights file raises an ``OSError`` that
        names the file and the fix (safetensors' own message names neither)."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as error:
            # Matched by name: this file imports only torch and transformers (it is served as remote code).
            if type(error).__name__ != "SafetensorError":
                raise
            raise OSError(corrupt_weights_message(pretrained_model_name_or_path, error)) from error

    def _init_weights(self, module: nn.Module) -> None:
        """Embeddings and the (tied) decoder ~ U(-r, r) as in AWD-LSTM; LSTMs keep PyTorch's U(-1/sqrt(H),
        1/sqrt(H)) as in the AWD-LSTM code; head layers get PyTorch's defaults."""
        r = self.config.initializer_range
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
        elif isinstance(module, nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for parameter in module.parameters():
                init.uniform_(parameter, -bound, bound)
        elif isinstance(module, nn.Linear) and module is getattr(self, "decoder", None):
            init.uniform_(module.weight, -r, r)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class AWDLSTMModel(AWDLSTMPreTrainedModel):
    """The AWD-LSTM encoder: embedding -> num_hidden_layers single-layer LSTMs, each with its own width (the last
    one as wide as the embedding, so a decoder can be tied to it), with the dropouts of AWD-LSTM."""

    _auto_class = "AutoModel"
    # An LM or a classifier checkpoint loads as the bare encoder (feature extraction) without a load report.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^head\."]

    def __init__(self, config: AWDLSTMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.input_dropout = LockedDropout(config.input_dropout)
        self.hidden_dropout = LockedDropout(config.hidden_dropout)
        self.layers = nn.ModuleList(
            nn.LSTM(n_in, n_out, batch_first=True) for n_in, n_out in self.layer_sizes(config)
        )
        self.post_init()

    @staticmethod
    def layer_sizes(config: AWDLSTMConfig) -> list[tuple[int, int]]:
        """(input width, output width) of each LSTM layer."""
        widths = [config.embedding_size] + [config.hidden_size] * (config.num_hidden_layers - 1)
        return list(zip(widths, widths[1:] + [config.embedding_size]))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def initial_state(self, batch_size: int) -> State:
        """All-zero state for a batch of new sequences."""
        weight = self.embed_tokens.weight
        return tuple(
            (weight.new_zeros(batch_size, lstm.hidden_size), weight.new_zeros(batch_size, lstm.hidden_size))
            for lstm in self.layers
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        cache: State | None = None,
        output_hidden_states: bool | None = None,
        use_cache: bool | None = True,
        token_type_ids: torch.Tensor | None = None,  # accepted for tokenizer compatibility, unused
        output_pooled: bool = True,
    ) -> AWDLSTMModelOutput:
        """
        input_ids: (batch, seq_len). attention_mask: (batch, seq_len), 1 for real tokens; padding may be
        anywhere (left, right, inside): padded positions are skipped, so the state that comes out is the one after
        each row's last real token and their outputs are zeros. cache: the state returned by a previous call, to
        continue the same streams; ``None`` starts from zeros. Feeding a sequence in pieces with the state carried
        over gives the same outputs as feeding it whole.

        With ``config.backwards`` each row's real tokens are read right to left (``reverse_real_tokens``) and the
        outputs are put back at their tokens' positions: position t then summarises tokens t to the row's end, and
        the state that comes out is the one after the row's first real token. A stream read backwards is thus
        continued by feeding the text that comes before it.

        output_pooled: also return ``pooler_output``, each row's document vector: ULMFiT's concat pooling
        [last, max, mean] of the outputs over the row's last ``config.max_len`` real tokens, in reading order
        (a backward model: over the first ``max_len`` tokens of the text, its last output the one at the first
        token). For a document this is the vector ``AWDLSTMForSequenceClassification.pool_document`` feeds its
        head (BPT3C), to float rounding (within 1e-5): encoding in ``bptt`` chunks with the state carried over
        equals encoding whole. Padding on either side is left out, so a document gets the same vector alone or
        in a batch. With a ``cache`` (a stream continued) only this call's tokens are pooled; a row without a
        real token gets zeros. The whole input is encoded in one pass, so memory grows with its length (the
        classifier's ``pool_document`` keeps it to ``max_len``). ``AWDLSTMForCausalLM`` passes False: language
        modelling and generation do not compute it.
        """
        check_input_ids(input_ids, self.embed_tokens.num_embeddings)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        state = cache if cache is not None else self.initial_state(input_ids.size(0))
        if self.config.backwards:
            input_ids, reversal = reverse_real_tokens(input_ids, attention_mask)
        pooled = None
        if attention_mask is None or bool(attention_mask.all()):
            outputs, state, hidden_states = self.encode(input_ids, state)
            if output_pooled:
                lengths = torch.full((input_ids.size(0),), input_ids.size(1), device=input_ids.device)
                pooled = concat_pool(outputs, lengths, self.config.max_len)
        else:
            aligned_ids, lengths, order = left_align(input_ids, attention_mask)
            outputs, state, hidden_states = self.encode(aligned_ids, state, lengths)
            if output_pooled:  # over the left-aligned outputs, in reading order
                pooled = concat_pool(outputs, lengths, self.config.max_len)
            outputs = restore_positions(outputs, order)
            hidden_states = tuple(restore_positions(h, order) for h in hidden_states)
        if self.config.backwards:  # outputs back at the positions of the tokens they were read at
            outputs = reverse_positions(outputs, reversal)
            hidden_states = tuple(reverse_positions(h, reversal) for h in hidden_states)
        return AWDLSTMModelOutput(
            pooler_output=pooled,
            last_hidden_state=outputs,
            cache=state if use_cache else None,
            hidden_states=hidden_states if output_hidden_states else None,
        )

    def encode(
        self, input_ids: torch.LongTensor, state: State, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State, tuple[torch.Tensor, ...]]:
        """Runs the stack on right-padded ids. With ``lengths`` (real tokens per row), padding is skipped: the
        state after each row's last real token is returned (a row of length 0 keeps its state). Without, every
        position is treated as real, which is also exact for the real positions of right-padded rows."""
        x = embed_with_word_dropout(
            self.embed_tokens, input_ids, self.config.embedding_dropout, self.training
        )
        x = self.input_dropout(x)  # (batch, seq_len, embedding_size)
        hidden_states, new_state = [x], []
        for depth, (lstm, layer_state) in enumerate(zip(self.layers, state)):
            x, layer_state = self._run_layer(lstm, x, layer_state, lengths)
            new_state.append(layer_state)
            hidden_states.append(x)
            if depth < len(self.layers) - 1:
                x = self.hidden_dropout(x)  # variational dropout between layers
        return hidden_states[-1], tuple(new_state), tuple(hidden_states)

    def _run_layer(
        self, lstm: nn.LSTM, x: torch.Tensor, state: LayerState, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, LayerState]:
        p, training = self.config.weight_dropout, self.training
        h, c = state  # each (batch, width)
        if lengths is None:
            out, (h, c) = run_lstm_with_weight_drop(lstm, x, (h.unsqueeze(0), c.unsqueeze(0)), p, training)
            return out, (h[0], c[0])
        # Rows with no real token in this piece keep their state; the others run packed, so padding is skipped.
        active = (lengths > 0).nonzero().squeeze(1)
        packed = pack_padded_sequence(
            x[active], lengths[active].cpu(), batch_first=True, enforce_sorted=False
        )
        active_state = (h[active].unsqueeze(0), c[active].unsqueeze(0))
        packed_out, (h_active, c_active) = run_lstm_with_weight_drop(lstm, packed, active_state, p, training)
        out_active, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.size(1))
        out = x.new_zeros(x.size(0), x.size(1), lstm.hidden_size).index_copy(0, active, out_active)
        return out, (h.index_copy(0, active, h_active[0]), c.index_copy(0, active, c_active[0]))

    @property
    def layer_groups(self) -> list[nn.ModuleList]:
        """ULMFiT's layer groups, bottom to top: [embedding, LSTM 0, ..., LSTM n-1]."""
        return [nn.ModuleList([self.embed_tokens]), *(nn.ModuleList([lstm]) for lstm in self.layers)]


class AWDLSTMForCausalLM(AWDLSTMPreTrainedModel, GenerationMixin):
    """AWD-LSTM language model: encoder -> output dropout -> linear decoder tied to the embedding
    (Inan et al. 2017; Press & Wolf 2017), trained with AR/TAR (AWD-LSTM section 4.6)."""

    _auto_class = "AutoModelForCausalLM"
    _tied_weights_keys = {"decoder.weight": "awd_lstm.embed_tokens.weight"}
    _is_stateful = True

    def __init__(self, config: AWDLSTMConfig):
        super().__init__(config)
        self.awd_lstm = AWDLSTMModel(config)
        self.output_dropout = LockedDropout(config.output_dropout)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.post_init()
        # A tied decoder weight is not saved; naming it here lets a Trainer resuming from a checkpoint re-tie it
        # instead of warning that it is missing.
        self._keys_to_ignore_on_save = set(self.all_tied_weights_keys)

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.decoder = value

    @property
    def layer_groups(self) -> list[nn.ModuleList]:
        """ULMFiT's layer groups for LM fine-tuning, bottom to top: [LSTM 0, ..., LSTM n-1, embedding+decoder]."""
        embedding, *lstms = self.awd_lstm.layer_groups
        return [*lstms, nn.ModuleList([*embedding, self.decoder])]

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        cache: State | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        use_cache: bool | None = True,
        token_type_ids: torch.Tensor | None = None,  # accepted for tokenizer compatibility, unused
    ) -> AWDLSTMCausalLMOutput:
        """
        labels: (batch, seq_len) ids, shifted inside (position t predicts labels[t+1]); -100 is ignored.
        shift_labels: (batch, seq_len) targets already aligned with the inputs (position t predicts
            shift_labels[t]), as BPTT streams provide so that no window loses its last prediction.

        A backward LM (``config.backwards``) predicts each token from the tokens after it: its logits stay at the
        positions of the tokens read, so position t predicts the token at t - 1, and ``labels`` are shifted that
        way (``previous_token_targets``). ``shift_labels`` are used as given: a backward ``LanguageModelStream``
        aligns them so.
        """
        if labels is not None and shift_labels is None and self.config.backwards:
            shift_labels = previous_token_targets(labels, attention_mask)
        encoded = self.awd_lstm(
            input_ids,
            attention_mask=attention_mask,
            cache=cache,
            output_hidden_states=output_hidden_states,
            use_cache=use_cache,
            output_pooled=False,  # no document vector for language modelling and generation
        )
        raw = encoded.last_hidden_state  # (batch, seq_len, embedding_size)
        dropped = self.output_dropout(raw)
        logits = self.decoder(dropped)  # (batch, seq_len, vocab_size)

        loss = None
        if labels is not None or shift_labels is not None:
            loss = self.loss_function(logits, labels, self.config.vocab_size, shift_labels=shift_labels)
            if self.training:
                loss = loss + self.activation_regularization(raw, dropped, attention_mask)
        return AWDLSTMCausalLMOutput(
            loss=loss, logits=logits, cache=encoded.cache, hidden_states=encoded.hidden_states
        )

    def activation_regularization(
        self, raw: torch.Tensor, dropped: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """AR (alpha * mean squared dropped-out activation) plus TAR (beta * mean squared change of the raw
        activation between neighbouring steps), AWD-LSTM section 4.6; padded positions are left out."""
        alpha = self.config.activation_regularization
        beta = self.config.temporal_activation_regularization
        real = torch.ones_like(raw[..., 0]) if attention_mask is None else attention_mask.to(raw.dtype)
        both_real = real[:, 1:] * real[:, :-1]
        ar = (dropped.float().pow(2).mean(-1) * real).sum() / real.sum().clamp(min=1)
        step = (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean(-1)
        tar = (step * both_real).sum() / both_real.sum().clamp(min=1)
        return alpha * ar + beta * tar

    # -- generation: the state carries the prefix, so each step feeds only the newest token -----------------

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is a tuple of (h, c), not a key/value cache

    def generate(self, *args, **kwargs):
        """``GenerationMixin.generate``; a backward LM refuses (``check_can_generate``)."""
        self.check_can_generate()
        return super().generate(*args, **kwargs)

    def check_can_generate(self) -> None:
        """Raises ``ValueError`` for a backward LM: ``generate`` appends tokens on the right of the prompt, but a
        backward LM reads right to left and predicts the token *before* its input, so its next-token outputs
        continue nothing."""
        if self.config.backwards:
            raise ValueError(
                "This language model reads text backwards (config.backwards=True): it predicts the token before "
                "its input, so generate() cannot continue a prompt to the right. Generate with a forward LM; a "
                "backward LM is for scoring text and for training a backward classifier (ULMFiT section 3.4)."
            )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: State | None = None,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = True,
        next_sequence_length: int | None = None,
        **kwargs,
    ) -> dict:
        self.check_can_generate()
        if cache is not None:
            # The state already holds the prefix (its padding skipped): feed only the new tokens, all real.
            input_ids = input_ids[:, -(next_sequence_length or 1) :]
            attention_mask = None
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "cache": cache,
            "use_cache": use_cache,
        }

    def _reorder_cache(self, cache: State, beam_idx: torch.LongTensor) -> State:
        """Beam search: keep the states of the surviving beams."""
        return tuple((h.index_select(0, beam_idx), c.index_select(0, beam_idx)) for h, c in cache)


def previous_token_targets(labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A backward LM's targets from unshifted ``labels``: position t predicts labels[t - 1]. The first position,
    and positions next to padding (attention_mask 0), get -100 (ignored). (batch, seq_len) -> (batch, seq_len)."""
    targets = F.pad(labels[:, :-1], (1, 0), value=-100)
    if attention_mask is not None:
        real = attention_mask != 0
        both_real = real & F.pad(real[:, :-1], (1, 0), value=False)
        targets = targets.masked_fill(~both_real, -100)
    return targets


class ConcatPoolingHead(nn.Module):
    """ULMFiT's classifier (section 3.3): the pooled document vector [h_last, maxpool(H), meanpool(H)] goes
    through blocks of BatchNorm -> Dropout -> Linear, with ReLU between blocks."""

    def __init__(self, config: AWDLSTMConfig):
        super().__init__()
        sizes = [3 * config.embedding_size, *config.classifier_hidden_sizes, config.num_labels]
        blocks: list[nn.Module] = []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], config.classifier_dropouts):
            if blocks:
                blocks.append(nn.ReLU())
            blocks += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: (batch, 3*embedding_size) -> logits: (batch, num_labels)."""
        x = pooled
        for layer in self.layers:
            if isinstance(layer, nn.BatchNorm1d) and self.training and x.size(0) == 1:
                # One document has no batch statistics (the last batch of an epoch can be that small):
                # normalise it with the running ones instead of failing.
                x = F.batch_norm(
                    x, layer.running_mean, layer.running_var, layer.weight, layer.bias, eps=layer.eps
                )
            else:
                x = layer(x)
        return x


def score_function(config: AWDLSTMConfig) -> str:
    """What ``pipeline("text-classification")`` applies to a classifier's logits: "identity" (regression),
    "sigmoid" (multi-label, or a single label) or "softmax", as ``problem_type`` and ``num_labels`` say."""
    if config.problem_type == "regression":
        return "identity"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def ensemble_logits(forward: torch.Tensor, backward: torch.Tensor, config: AWDLSTMConfig) -> torch.Tensor:
    """The logits of a forward + backward ensemble (ULMFiT section 3.4 averages the two classifiers'
    predictions): whatever the pipeline applies to them (``score_function``) gives the mean of what it gives for
    the two members. Computed in log space, so confident members do not overflow.
    (batch, num_labels) each -> (batch, num_labels)."""
    both = torch.stack([forward, backward])  # (2, batch, num_labels)
    log_half = math.log(2.0)
    scores = score_function(config)
    if scores == "identity":
        return both.mean(dim=0)
    if scores == "sigmoid":
        log_p = torch.logsumexp(F.logsigmoid(both), dim=0) - log_half  # log of the mean sigmoid
        log_not_p = torch.logsumexp(F.logsigmoid(-both), dim=0) - log_half  # log of 1 - that mean
        return log_p - log_not_p
    return torch.logsumexp(both.log_softmax(dim=-1), dim=0) - log_half  # log of the mean softmax


class AWDLSTMForSequenceClassification(AWDLSTMPreTrainedModel):
    """ULMFiT's text classifier: the document is encoded with BPT3C and the last ``max_len`` positions are
    concat-pooled into a BatchNorm-Dropout-Linear head. ``problem_type`` selects single-label, multi-label or
    regression losses as in every transformers classifier.

    With ``config.backwards`` the document is read right to left (``reverse_real_tokens``). With
    ``config.bidirectional`` the model is ULMFiT's forward + backward ensemble (section 3.4): ``awd_lstm`` and
    ``head`` are the forward member, ``backward_awd_lstm`` and ``backward_head`` the backward one, and the logits
    are those of the mean of the two members' probabilities (``ensemble_logits``)."""

    _auto_class = "AutoModelForSequenceClassification"
    # A language-model checkpoint loads into the classifier: its decoder is not needed here.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]

    def __init__(self, config: AWDLSTMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.awd_lstm = AWDLSTMModel(config)
        self.head = ConcatPoolingHead(config)
        if config.bidirectional:
            self.backward_awd_lstm = AWDLSTMModel(config)
            self.backward_head = ConcatPoolingHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.awd_lstm.embed_tokens

    @property
    def members(self) -> list[tuple[AWDLSTMModel, ConcatPoolingHead, bool]]:
        """(encoder, head, reads backwards) of each member: one, or the forward and the backward one."""
        members = [(self.awd_lstm, self.head, self.config.backwards)]
        if self.config.bidirectional:
            members.append((self.backward_awd_lstm, self.backward_head, True))
        return members

    @property
    def layer_groups(self) -> list[nn.ModuleList]:
        """ULMFiT's layer groups for the classifier, bottom to top: [embedding, LSTM 0, ..., LSTM n-1, head]; each
        group holds that layer of every member."""
        groups = [[*encoder.layer_groups, nn.ModuleList([head])] for encoder, head, _ in self.members]
        return [nn.ModuleList([module for group in layer for module in group]) for layer in zip(*groups)]

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted for tokenizer compatibility, unused
    ) -> SequenceClassifierOutput:
        """input_ids, attention_mask: (batch, seq_len), padding on either side. labels: (batch,) class ids,
        (batch, num_labels) multi-hot, or (batch,) floats for regression."""
        check_input_ids(input_ids, self.awd_lstm.embed_tokens.num_embeddings)
        padded = attention_mask is not None and not bool(attention_mask.all())
        member_logits = []
        for encoder, head, backwards in self.members:
            ids = reverse_real_tokens(input_ids, attention_mask)[0] if backwards else input_ids
            if padded:
                aligned_ids, lengths, _ = left_align(ids, attention_mask)
            else:  # no padding: no copies of a long document
                aligned_ids = ids
                lengths = torch.full((ids.size(0),), ids.size(1), device=ids.device)
            if bool((lengths == 0).any()):
                raise ValueError(
                    "Every sequence needs at least one real token (attention_mask 1); encode texts with the "
                    "model's tokenizer, which starts every sequence with the <bos> token."
                )
            member_logits.append(head(self.pool_document(aligned_ids, lengths, encoder)))
        logits = member_logits[0] if len(member_logits) == 1 else ensemble_logits(*member_logits, self.config)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def pool_document(
        self, input_ids: torch.LongTensor, lengths: torch.Tensor, encoder: AWDLSTMModel | None = None
    ) -> torch.Tensor:
        """BPT3C (section 3.3): encode right-padded documents in ``bptt``-sized chunks, each chunk starting from
        the state the previous one ended in, and concat-pool [last, max, mean] over each document's last
        ``max_len`` real tokens. Chunks before every document's pooling window run without autograd, so memory
        grows with ``max_len``, not with the document; gradients flow through the chunks that are pooled.

        Every chunk boundary is at the same absolute position whatever the batch, so a document gets the same
        vector alone or batched with documents of any lengths. Documents that have ended drop out of later
        chunks, so padding costs no LSTM work. ``encoder``: the member's encoder (default: ``awd_lstm``).
        input_ids: (batch, seq_len) -> (batch, 3*emb)."""
        encoder = self.awd_lstm if encoder is None else encoder
        bptt = self.config.bptt
        pooling = ConcatPooling.over_last(lengths, self.config.max_len)
        window_start = pooling.window_start  # (batch,) first pooled position
        state = encoder.initial_state(input_ids.size(0))
        for start in range(0, int(lengths.max()), bptt):
            rows = (lengths > start).nonzero().squeeze(1)  # documents with real tokens in this chunk
            chunk = input_ids[rows, start : start + bptt]
            pooled_here = bool(((start + chunk.size(1) > window_start) & (start < lengths)).any())
            with torch.set_grad_enabled(torch.is_grad_enabled() and pooled_here):
                # Positions past a row's end are padding: their outputs are computed but never pooled.
                outputs, rows_state, _ = encoder.encode(chunk, select_rows(state, rows))
            state = replace_rows(state, rows, rows_state)
            if pooled_here:
                pooling.update(expand_rows(outputs, rows, input_ids.size(0)), start)
        return pooling.result()


def select_rows(state: State, rows: torch.Tensor) -> State:
    """The state of the given batch rows (BPT3C drops documents that have ended)."""
    if rows.numel() == state[0][0].size(0):
        return state
    return tuple((h[rows], c[rows]) for h, c in state)


def replace_rows(state: State, rows: torch.Tensor, new: State) -> State:
    """``state`` with the given rows replaced by ``new``."""
    if rows.numel() == state[0][0].size(0):
        return new
    return tuple(
        (h.index_copy(0, rows, h_new), c.index_copy(0, rows, c_new))
        for (h, c), (h_new, c_new) in zip(state, new)
    )


def expand_rows(outputs: torch.Tensor, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(len(rows), ...) -> (batch_size, ...), zeros in the rows that were left out."""
    if rows.numel() == batch_size:
        return outputs
    return outputs.new_zeros(batch_size, *outputs.shape[1:]).index_copy(0, rows, outputs)


class ConcatPooling:
    """Running [last, max, mean] pooling over positions [window_start, length) of each row, fed chunk by chunk.

    The one implementation of ULMFiT's concat pooling: the classifier's BPT3C (``pool_document``), the encoder's
    document vector (``concat_pool``) and the ONNX export all run it."""

    def __init__(self, lengths: torch.Tensor, window_start: torch.Tensor):
        self.lengths, self.window_start = lengths, window_start
        self.last = self.max = self.sum = None

    @classmethod
    def over_last(cls, lengths: torch.Tensor, max_len: int) -> "ConcatPooling":
        """The pooling window of BPT3C: each row's last ``max_len`` real tokens (all of a shorter row)."""
        return cls(lengths, (lengths - max_len).clamp(min=0))

    def update(self, outputs: torch.Tensor, start: int) -> None:  # outputs: (batch, chunk_len, features)
        positions = torch.arange(start, start + outputs.size(1), device=outputs.device)
        pooled = (positions >= self.window_start[:, None]) & (positions < self.lengths[:, None])
        is_last = (positions == self.lengths[:, None] - 1).unsqueeze(-1)
        chunk_max = outputs.masked_fill(~pooled.unsqueeze(-1), float("-inf")).amax(dim=1)
        chunk_sum = (outputs * pooled.unsqueeze(-1)).sum(dim=1)
        chunk_last = (outputs * is_last).sum(dim=1)
        if self.sum is None:
            self.last, self.max, self.sum = chunk_last, chunk_max, chunk_sum
        else:
            self.last, self.max, self.sum = (
                self.last + chunk_last,
                torch.maximum(self.max, chunk_max),
                self.sum + chunk_sum,
            )

    def result(self) -> torch.Tensor:  # (batch, 3*features)
        count = (self.lengths - self.window_start).clamp(min=1).unsqueeze(-1).to(self.sum.dtype)
        return torch.cat([self.last, self.max, self.sum / count], dim=-1)


def concat_pool(outputs: torch.Tensor, lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """ULMFiT's document vector from the outputs of a whole input at once: ``ConcatPooling`` over each row's last
    ``max_len`` real tokens. outputs: (batch, seq_len, features), right-padded, ``lengths`` real tokens per row
    -> (batch, 3*features); a row without a real token gets zeros."""
    pooling = ConcatPooling.over_last(lengths, max_len)
    pooling.update(outputs, 0)
    return torch.where((lengths > 0).unsqueeze(-1), pooling.result(), 0.0)


__all__ = [
    "AWDLSTMCausalLMOutput",
    "AWDLSTMForCausalLM",
    "AWDLSTMForSequenceClassification",
    "AWDLSTMModel",
    "AWDLSTMModelOutput",
    "AWDLSTMPreTrainedModel",
]
