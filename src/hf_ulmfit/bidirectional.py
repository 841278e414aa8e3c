"""ULMFiT's bidirectional ensemble (Howard & Ruder 2018, section 3.4) as one Hugging Face model directory.

The paper trains a forward and a backward classifier, each fine-tuned from its own LM, and averages their
predictions. ``combine_bidirectional`` puts the two trained classifiers into one
``AWDLSTMForSequenceClassification`` with ``config.bidirectional=True`` (both members' encoders and heads; see
``modeling_awd_lstm.ensemble_logits``), so the ensemble loads with ``AutoModelForSequenceClassification``, also
as remote code, and ``pipeline("text-classification")`` scores are the mean of the members' probabilities.

This module only checks and copies: the model class lives in ``modeling_awd_lstm``, which the Hub serves.
"""

import copy
import logging
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .configuration_awd_lstm import AWDLSTMConfig
from .errors import UsageError
from .modeling_awd_lstm import AWDLSTMForSequenceClassification, score_function
from .pretrained import resolve_model_name

logger = logging.getLogger(__name__)

# What the two members must agree on: the shapes of their weights, and what the ensemble's one config decides
# at inference (the pooled window, the special tokens, how logits become scores). Dropouts may differ: they are
# off at inference.
SHARED_FIELDS = (
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "classifier_hidden_sizes",
    "num_labels",
    "max_len",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
)


def combine_bidirectional(
    forward: str, backward: str, output_dir: str | Path | None = None
) -> tuple[AWDLSTMForSequenceClassification, PreTrainedTokenizerBase]:
    """One classifier from a forward and a backward one, trained on the same labels with the same tokenizer.

    Args:
        forward: the forward classifier (``config.backwards=False``): a directory or Hub id.
        backward: the backward classifier (trained with ``--backwards``): a directory or Hub id.
        output_dir: if given, the ensemble and the members' tokenizer are saved there.

    Returns:
        The ensemble (eval mode), whose logits are the log of the mean of the members' softmax outputs, and the
        tokenizer. Raises ``UsageError`` when either is not a classifier, the directions are not one forward and
        one backward, or the labels, sizes or vocabularies differ.
    """
    sources = {"forward": resolve_model_name(forward), "backward": resolve_model_name(backward)}
    configs = {role: member_config(source) for role, source in sources.items()}
    check_directions(configs["forward"], configs["backward"], forward, backward)
    check_same_labels_and_sizes(configs["forward"], configs["backward"])
    tokenizer = shared_tokenizer(sources["forward"], sources["backward"])
    members = {
        role: AWDLSTMForSequenceClassification.from_pretrained(source).eval()
        for role, source in sources.items()
    }
    config = copy.deepcopy(members["forward"].config)
    config.bidirectional = True
    model = AWDLSTMForSequenceClassification(config).eval()
    model.awd_lstm.load_state_dict(members["forward"].awd_lstm.state_dict())
    model.head.load_state_dict(members["forward"].head.state_dict())
    model.backward_awd_lstm.load_state_dict(members["backward"].awd_lstm.state_dict())
    model.backward_head.load_state_dict(members["backward"].head.state_dict())
    if output_dir is not None:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        logger.info(
            "Saved the ensemble of %s (forward) and %s (backward) at %s", forward, backward, output_dir
        )
    return model, tokenizer


def member_config(source: str) -> AWDLSTMConfig:
    """The config of a member, after checking it is a trained single-direction classifier."""
    config = AWDLSTMConfig.from_pretrained(source)
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise UsageError(
            f"{source!r} holds {', '.join(architectures) or 'no head'}, not a trained classifier: train one "
            "with `hf-ulmfit train-classifier` (add --backwards for the backward one) first."
        )
    if config.bidirectional:
        raise UsageError(f"{source!r} is already a bidirectional ensemble; give its two members instead.")
    return config


def check_directions(forward: AWDLSTMConfig, backward: AWDLSTMConfig, forward_name, backward_name) -> None:
    """One member must read forwards, the other backwards."""
    if forward.backwards == backward.backwards:
        direction = "backwards" if forward.backwards else "forwards"
        raise UsageError(
            f"Both {forward_name!r} and {backward_name!r} read {direction}: the ensemble needs one forward and "
            "one backward classifier (train the backward one from a backward LM, `hf-ulmfit pretrain "
            "--backwards`)."
        )
    if forward.backwards:
        raise UsageError(
            f"{forward_name!r} reads backwards and {backward_name!r} forwards: swap --forward_model_name_or_path "
            "and --backward_model_name_or_path."
        )


def check_same_labels_and_sizes(forward: AWDLSTMConfig, backward: AWDLSTMConfig) -> None:
    """The members must predict the same labels, in the same order, with the same architecture."""
    forward_labels, backward_labels = dict(forward.id2label), dict(backward.id2label)
    if forward_labels != backward_labels:
        raise UsageError(
            f"The members predict different labels: forward {forward_labels}, backward {backward_labels}. Train "
            "both classifiers on the same labelled data."
        )
    differing = {
        name: (getattr(forward, name), getattr(backward, name))
        for name in SHARED_FIELDS
        if getattr(forward, name) != getattr(backward, name)
    }
    if score_function(forward) != score_function(backward):
        differing["scores"] = (score_function(forward), score_function(backward))
    if differing:
        listed = ", ".join(
            f"{name} {f!r} (forward) vs {b!r} (backward)" for name, (f, b) in differing.items()
        )
        raise UsageError(f"The members' architectures differ: {listed}.")


def shared_tokenizer(forward: str, backward: str) -> PreTrainedTokenizerBase:
    """The members' tokenizer, after checking that they have the same vocabulary (the ensemble has one)."""
    forward_tokenizer, backward_tokenizer = (
        AutoTokenizer.from_pretrained(forward),
        AutoTokenizer.from_pretrained(backward),
    )
    forward_vocab, backward_vocab = forward_tokenizer.get_vocab(), backward_tokenizer.get_vocab()
    if forward_vocab != backward_vocab:
        only_forward = sorted(set(forward_vocab) - set(backward_vocab))[:5]
        only_backward = sorted(set(backward_vocab) - set(forward_vocab))[:5]
        raise UsageError(
            f"The members' tokenizers differ ({len(forward_vocab)} and {len(backward_vocab)} tokens; e.g. only "
            f"forward: {only_forward}, only backward: {only_backward}, or the same tokens with other ids): the "
            "ensemble feeds both members the same ids. Train both from LMs that share a tokenizer."
        )
    return forward_tokenizer


__all__ = ["combine_bidirectional"]
