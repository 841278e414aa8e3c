"""The three stages of ULMFiT (Howard & Ruder 2018, section 3), and prediction, as plain functions.

Each stage takes the dataclasses the ``hf-ulmfit`` command line parses (``ModelArguments``, ``DataArguments``,
``ULMFiTTrainingArguments``), or their fields as keyword arguments with the recipe's defaults
(``hf_ulmfit.recipe``, the same as the command line's). It trains with ``ULMFiTTrainer`` and leaves in
``output_dir`` what any transformers training script leaves: the model and tokenizer in HF format,
``train_results.json``, ``eval_results.json`` and ``all_results.json``, and the trainer state. This module only
orchestrates: data files are read by ``data_files``, shipped model names resolved by ``pretrained``.
"""

import dataclasses
import difflib
import json
import logging
from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import (
    AutoConfig,
    AutoTokenizer,
    Pipeline,
    PreTrainedTokenizerBase,
    Trainer,
    default_data_collator,
    pipeline,
    set_seed,
)
from transformers.utils import logging as transformers_logging

from .cards import DEFAULT_LICENSE, dataset_names
from .configuration_awd_lstm import AWDLSTMConfig, scaled_dropouts
from .cpu import advise_on_allocator
from .data import classification_collator, classification_dataset, language_model_stream, longest_first
from .data_files import DataArguments, label_names, load_texts
from .errors import UsageError
from .metrics import compute_classification_metrics
from .modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from .pretrained import resolve_model_name
from .recipe import few_label_schedule, stage_defaults
from .tokenization_awd_lstm import check_text, train_tokenizer
from .trainer import ULMFiTTrainer, last_complete_checkpoint
from .training_args import ULMFiTTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model and tokenizer to start from, and how to build them when starting from scratch."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The model to start from: a directory or Hub id (an LM for finetune-lm and train-classifier)."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "pretrain: a config (directory or Hub id) to start from instead of the default."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": 'Override config values, e.g. "hidden_size=256,num_hidden_layers=2,bptt=70".'},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A tokenizer to use instead of the model's (pretrain: instead of training one)."},
    )
    vocab_size: int = field(
        default=30000, metadata={"help": "pretrain: vocabulary size of the tokenizer it trains."}
    )
    dropout_multiplier: float = field(
        default=1.0,
        metadata={
            "help": "Scales the stage's dropouts (the LM or the classifier preset of AWDLSTMConfig); "
            "train-classifier's recipe: 0.5 (1 is the paper's dropouts); e.g. 0.3 for LM fine-tuning."
        },
    )
    license: str = field(
        default=DEFAULT_LICENSE, metadata={"help": "License of the trained model, for its model card."}
    )
    backwards: bool | None = field(
        default=None,
        metadata={
            "nargs": "?",  # `--backwards` alone means true, as for the other boolean flags
            "const": True,
            "help": "Read texts right to left (ULMFiT section 3.4, the backward half of the bidirectional "
            "ensemble). pretrain: train a backward LM. finetune-lm and train-classifier inherit the direction of "
            "--model_name_or_path; a contradicting --backwards is an error.",
        },
    )


# ----------------------------------------------------------------------------------------------------------
# The arguments of a stage


def stage_arguments(stage: str, **values) -> tuple[ModelArguments, DataArguments, ULMFiTTrainingArguments]:
    """The three argument dataclasses of ``stage`` ("pretrain", "finetune-lm" or "train-classifier"): the
    recipe's defaults (``hf_ulmfit.recipe``), then ``values`` by field name, e.g.
    ``stage_arguments("train-classifier", model_name_or_path="lm", train_file="train.csv", output_dir="out")``.
    These are the defaults ``hf-ulmfit STAGE`` starts from, too."""
    defaults = stage_defaults(stage, given=values)
    values = {**defaults, **values}
    classes = (ModelArguments, DataArguments, ULMFiTTrainingArguments)
    known = {name: cls for cls in classes for name in cls.__dataclass_fields__}
    unknown = [name for name in values if name not in known]
    if unknown:
        close = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        hints = ", ".join(
            f"{name!r}" + (f" (did you mean {m[0]!r}?)" if m else "") for name, m in close.items()
        )
        raise TypeError(f"{stage}: unknown argument(s) {hints}.")
    return tuple(cls(**{k: v for k, v in values.items() if known[k] is cls}) for cls in classes)


def _arguments(stage: str, model_args, data_args, training_args, values: dict):
    """The dataclasses a stage function was given, the missing ones built by ``stage_arguments``."""
    given = (model_args, data_args, training_args)
    if all(a is not None for a in given):
        if values:
            raise TypeError(f"{stage}: give the three argument dataclasses or keyword arguments, not both.")
        return given
    built = stage_arguments(stage, **values)
    return tuple(a if a is not None else b for a, b in zip(given, built))


# ----------------------------------------------------------------------------------------------------------
# Stages


def pretrain(model_args=None, data_args=None, training_args=None, **arguments):
    """Stage 1 (section 3.1): train a tokenizer and an AWD-LSTM language model from scratch on general text.

    Takes the three dataclasses the command line parses, or keyword arguments by field name (the missing
    dataclasses are built by ``stage_arguments("pretrain", **arguments)``, with the recipe's defaults)."""
    model_args, data_args, training_args = _arguments(
        "pretrain", model_args, data_args, training_args, arguments
    )
    set_seed(training_args.seed)  # the new model's initial weights
    raw = load_texts(data_args)
    checkpoint = _resumed_checkpoint(training_args)
    if model_args.tokenizer_name:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(model_args.tokenizer_name))
    elif checkpoint is not None:  # the tokenizer the interrupted run trained, not a new one
        logger.info("Resuming: the tokenizer saved in %s", checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    else:
        logger.info("Training a %d-token tokenizer on %s", model_args.vocab_size, data_args.training_files)
        tokenizer = train_tokenizer(
            raw["train"][data_args.text_column_name], vocab_size=model_args.vocab_size
        )
    config = _new_config(model_args, tokenizer)
    model = AWDLSTMForCausalLM(config)
    logger.info("AWD-LSTM language model with %.1fM parameters", model.num_parameters() / 1e6)
    card = _card_arguments("pretrain", model_args, data_args)
    return _train_language_model(model, tokenizer, raw, data_args, training_args, card)


def finetune_language_model(model_args=None, data_args=None, training_args=None, **arguments):
    """Stage 2 (section 3.2): fine-tune the LM on the target task's texts (discriminative rates and STLR),
    by default starting from the shipped ``awd-lstm-wiki-en``. Arguments as for ``pretrain``."""
    model_args, data_args, training_args = _arguments(
        "finetune-lm", model_args, data_args, training_args, arguments
    )
    source = _require_model(model_args)
    check_direction(source, model_args)
    raw = load_texts(data_args)
    tokenizer = _tokenizer(model_args, source)
    model = AWDLSTMForCausalLM.from_pretrained(
        source,
        **scaled_dropouts("language_model", model_args.dropout_multiplier),
        **_overrides(model_args),
    )
    card = _card_arguments("finetune-lm", model_args, data_args)
    return _train_language_model(model, tokenizer, raw, data_args, training_args, card)


def train_classifier(model_args=None, data_args=None, training_args=None, **arguments):
    """Stage 3 (section 3.3): the classifier on top of the fine-tuned LM, every layer group trained from the
    start (``gradual_unfreezing=True`` for the paper's unfreezing). Arguments as for ``pretrain``.
    ``freeze_encoder=True`` trains the head only, the encoder kept bit-identical to the LM's (feature extraction;
    asking for gradual unfreezing as well is an error)."""
    model_args, data_args, training_args = _arguments(
        "train-classifier", model_args, data_args, training_args, arguments
    )
    source = _require_model(model_args)
    check_direction(source, model_args)
    set_seed(training_args.seed)  # the new head's initial weights
    raw = load_texts(data_args, needs_labels=True)
    training_args = _schedule_for_size(training_args, len(raw["train"]))
    tokenizer = _tokenizer(model_args, source)
    labels = label_names(raw, data_args.label_column_name)
    label2id = {label: index for index, label in enumerate(labels)}
    raw = raw.map(
        lambda batch: {"labels": [label2id[label] for label in batch[data_args.label_column_name]]},
        batched=True,
        remove_columns=[data_args.label_column_name],
    )
    model = _classifier_from(
        source,
        num_labels=len(labels),
        id2label={index: str(label) for index, label in enumerate(labels)},
        label2id={str(label): index for index, label in enumerate(labels)},
        **scaled_dropouts("classifier", model_args.dropout_multiplier),
        **_overrides(model_args),
    )
    check_vocabulary(tokenizer, model.config)
    datasets = {
        split: classification_dataset(
            dataset,
            tokenizer,
            data_args.text_column_name,
            "labels",
            num_proc=data_args.preprocessing_num_workers,
        )
        for split, dataset in raw.items()
    }
    trainer = ULMFiTTrainer(
        model=model,
        args=dataclasses.replace(training_args, train_sampling_strategy="group_by_length"),
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=classification_collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_classification_metrics,
    )
    return _train_and_save(trainer, _card_arguments("train-classifier", model_args, data_args))


def predict(model_name_or_path: str | Pipeline, texts: list[str], batch_size: int = 32) -> list[dict]:
    """Labels and scores of ``texts`` from a trained classifier, through ``pipeline("text-classification")``:
    one ``{"label", "score"}`` per text, in order. ``model_name_or_path`` is a folder or Hub id, or a
    text-classification pipeline already built (to classify many lists without loading the model each time).

    Texts are batched longest first, which makes batches of similar lengths; the results do not depend on the
    batching (BPT3C is exact per document). Texts of any length are read whole; an empty text is classified from
    the ``<bos>`` token alone. A text that is not a string raises ``TypeError``, one that is not valid Unicode
    ``ValueError``, each naming the text."""
    if texts is None or isinstance(texts, bytes):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}.")
    texts = [texts] if isinstance(texts, str) else list(texts)
    check_texts(texts)
    if not texts:
        return []
    if isinstance(model_name_or_path, Pipeline):
        classify = model_name_or_path
    else:
        source = resolve_model_name(model_name_or_path)
        require_classifier(source)
        classify = pipeline("text-classification", model=source)
    order = longest_first(texts)  # batches of similar lengths, then the results back in the given order
    results = [None] * len(texts)
    for index, result in zip(order, classify([texts[index] for index in order], batch_size=batch_size)):
        results[index] = result
    return results


def require_classifier(model_name_or_path: str) -> None:
    """Raises unless ``model_name_or_path`` holds a trained classifier (a language model has no trained head: a
    pipeline would label every text from a random one)."""
    architectures = AutoConfig.from_pretrained(model_name_or_path).architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise UsageError(
            f"{model_name_or_path!r} holds a language model ({', '.join(architectures) or 'no head'}), not a "
            "trained classifier. Train one on it first: `hf-ulmfit train-classifier --model_name_or_path "
            f"{model_name_or_path} --train_file ... --output_dir CLASSIFIER`, then predict with CLASSIFIER."
        )


def check_texts(texts: list) -> None:
    """Raises unless every item is a string the tokenizer can encode, naming the first bad one (counted from 0)."""
    for index, text in enumerate(texts):
        check_text(text, index)


# ----------------------------------------------------------------------------------------------------------
# Shared steps


def _require_model(model_args: ModelArguments) -> str:
    """What ``from_pretrained`` loads for ``--model_name_or_path`` (a shipped model's name resolved)."""
    if model_args.model_name_or_path is None:
        raise ValueError("--model_name_or_path is required: the language model of the previous stage.")
    return resolve_model_name(model_args.model_name_or_path)


def _classifier_from(source: str, **config) -> AWDLSTMForSequenceClassification:
    """The classifier of stage 3 from ``source``. Starting from a language model, the head is new (and the
    decoder is left out): said in one line, instead of the load report's table of every missing head tensor;
    any other missing weight is still reported."""
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = AWDLSTMForSequenceClassification.from_pretrained(
            source, output_loading_info=True, **config
        )
    finally:
        transformers_logging.set_verbosity(previous)
    missing = sorted(info["missing_keys"])
    new_head = [key for key in missing if key.startswith("head.")]
    if new_head:
        logger.info(
            "Starting from the language model %s: a new classifier head, the LM decoder left out.", source
        )
    if len(new_head) < len(missing):
        logger.warning(
            "Weights missing from %s, initialised at random: %s",
            source,
            [k for k in missing if k not in new_head],
        )
    return model


def _schedule_for_size(training_args: ULMFiTTrainingArguments, num_examples: int) -> ULMFiTTrainingArguments:
    """The classifier's training arguments with the recipe's few-label schedule (batch size, epochs) for
    ``num_examples`` training examples, where ``few_label_schedule`` asks for it and the set is small."""
    schedule = few_label_schedule(num_examples) if training_args.few_label_schedule else None
    if schedule is None:
        return training_args
    logger.info(
        "%d training examples: the recipe's few-label schedule, batch %d, %d epochs "
        "(--few_label_schedule false, or either set by you, keeps batch %d and %g epochs)",
        num_examples,
        schedule["per_device_train_batch_size"],
        schedule["num_train_epochs"],
        training_args.per_device_train_batch_size,
        training_args.num_train_epochs,
    )
    return dataclasses.replace(training_args, **schedule)


def _resumed_checkpoint(training_args: ULMFiTTrainingArguments) -> str | None:
    """The checkpoint ``--resume_from_checkpoint`` names (``true``: the last complete one), or None."""
    resume = training_args.resume_from_checkpoint
    if resume is None or str(resume).lower() == "false":
        return None
    return last_complete_checkpoint(training_args.output_dir) if str(resume).lower() == "true" else resume


def requested_direction(model_args: ModelArguments) -> bool | None:
    """``--backwards`` (or ``backwards`` in ``--config_overrides``): True, False, or None when not given."""
    flag, override = model_args.backwards, _overrides(model_args).get("backwards")
    if flag is not None and override is not None and flag != override:
        raise UsageError(f"--backwards {flag} contradicts --config_overrides backwards={override}.")
    return flag if flag is not None else override


def check_direction(source: str, model_args: ModelArguments) -> None:
    """Raises ``UsageError`` when ``--backwards`` contradicts the direction of the model a stage starts from: a
    language model trained in one direction has learnt nothing about the other, and a classifier reads in the
    direction of its LM (``AWDLSTMConfig.backwards``)."""
    requested = requested_direction(model_args)
    if requested is None:
        return
    trained = bool(getattr(AutoConfig.from_pretrained(source), "backwards", False))
    if requested != trained:
        direction = {True: "backward (right to left)", False: "forward (left to right)"}
        raise UsageError(
            f"--backwards {requested} contradicts {model_args.model_name_or_path!r}, a {direction[trained]} model: "
            "a stage keeps the direction of the model it starts from. Drop --backwards, or start from a "
            f"{direction[requested]} language model (pretrain one with `hf-ulmfit pretrain"
            f"{' --backwards' if requested else ''}`)."
        )


def _tokenizer(model_args: ModelArguments, source: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_model_name(model_args.tokenizer_name) or source)


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, config: AWDLSTMConfig) -> None:
    """Raises unless every id the tokenizer can produce is in the model's vocabulary."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model only {config.vocab_size}: "
            "use the tokenizer saved with the model."
        )


def _overrides(model_args: ModelArguments) -> dict:
    """``"a=1,b=0.5"`` -> ``{"a": 1, "b": 0.5}``, typed like the config's fields."""
    if not model_args.config_overrides:
        return {}
    defaults = AWDLSTMConfig().to_dict()
    overrides = {}
    for item in model_args.config_overrides.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in defaults:
            raise ValueError(f"--config_overrides: {item!r} is not name=value for a field of AWDLSTMConfig.")
        try:
            overrides[name] = json.loads(value) if not isinstance(defaults[name], str) else value
        except json.JSONDecodeError:
            raise ValueError(
                f"--config_overrides: {item!r} has no valid value; give a number, true, false or null."
            ) from None
    return overrides


def _new_config(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase) -> AWDLSTMConfig:
    """The LM config of stage 1, sized to the tokenizer, with the tokenizer's special-token ids."""
    base = AWDLSTMConfig.from_pretrained(model_args.config_name).to_dict() if model_args.config_name else {}
    base.pop("model_type", None)
    dropouts = scaled_dropouts("language_model", model_args.dropout_multiplier)
    backwards = requested_direction(model_args)
    direction = {} if backwards is None else {"backwards": backwards}
    return AWDLSTMConfig(
        **{**dropouts, **base, **_overrides(model_args), **direction},
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _train_language_model(
    model, tokenizer, raw: DatasetDict, data_args: DataArguments, training_args, card: dict
):
    """Stages 1 and 2: the texts become one token stream in ``batch_size`` rows per process, read in BPTT windows
    (each process of a distributed run reads its own rows: see ``LanguageModelStream``)."""
    check_vocabulary(tokenizer, model.config)

    def stream(split: str, batch_size: int, training: bool):
        return language_model_stream(
            raw[split],
            tokenizer,
            batch_size=batch_size,
            bptt=model.config.bptt,
            variable_bptt=training and training_args.variable_bptt,
            seed=training_args.seed,
            text_column=data_args.text_column_name,
            num_proc=data_args.preprocessing_num_workers,
            num_shards=training_args.world_size,
            shuffle_documents=training and training_args.shuffle_documents,
            backwards=model.config.backwards,  # the corpus read in the model's direction
        )

    trainer = ULMFiTTrainer(
        model=model,
        args=dataclasses.replace(
            training_args, train_sampling_strategy="sequential", dataloader_drop_last=True
        ),
        train_dataset=stream("train", training_args.per_device_train_batch_size, training=True),
        eval_dataset=stream("validation", training_args.per_device_eval_batch_size, training=False),
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    return _train_and_save(trainer, card)


def _card_arguments(stage: str, model_args: ModelArguments, data_args: DataArguments) -> dict:
    """What the model card (``hf_ulmfit.cards``) needs to know that the trainer does not."""
    return {
        "stage": stage,
        "finetuned_from": model_args.model_name_or_path if stage != "pretrain" else None,
        "dataset": dataset_names(
            *data_args.training_files, data_args.validation_file, name=data_args.dataset_name
        ),
        "license": model_args.license,
    }


def _train_and_save(trainer: Trainer, card: dict) -> dict[str, float]:
    """Train, save model + tokenizer, evaluate, write the results files as the Trainer does, and the model card
    (``card``: the arguments of ``ULMFiTTrainer.create_model_card``); with ``push_to_hub``, push the whole output
    directory, card included.

    ``--resume_from_checkpoint`` takes a checkpoint directory, or ``true`` for the last complete checkpoint in
    ``output_dir``: the run then continues exactly where that checkpoint left it."""
    training_args = trainer.args
    if training_args.device.type == "cpu":
        advise_on_allocator()
    resume = training_args.resume_from_checkpoint
    train_result = trainer.train(resume_from_checkpoint=True if str(resume).lower() == "true" else resume)
    trainer.save_model()
    trainer.save_state()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if training_args.push_to_hub:
        trainer.push_to_hub(**card)  # writes the card (create_model_card), then uploads output_dir
    else:
        trainer.create_model_card(**card)
    return {**train_result.metrics, **eval_metrics}


__all__ = [
    "DataArguments",
    "ModelArguments",
    "check_texts",
    "check_vocabulary",
    "finetune_language_model",
    "predict",
    "pretrain",
    "stage_arguments",
    "train_classifier",
]
