"""Model cards (``README.md``) for the models of the three ULMFiT stages, with Hub metadata.

``build_model_card`` fills the package's template (``templates/model_card.md``, Jinja2) through
``huggingface_hub.ModelCard.from_template``. The metadata header carries ``library_name: transformers``, the
stage's ``pipeline_tag`` (``text-generation`` for the forward language models, none for a backward one, which
cannot generate, ``text-classification`` for the classifier), ``tags`` (``ulmfit``, ``awd-lstm``, ...),
``datasets``, ``metrics``, ``license``, ``base_model`` for the fine-tuned stages, and a ``model-index`` with the evaluation results (perplexity, accuracy, macro F1).

``ULMFiTTrainer.create_model_card`` (and so ``trainer.push_to_hub``) runs ``write_trainer_model_card``: it
renders the card from the trainer's model and last evaluation, and keeps what a card already in
``output_dir`` says (datasets, base model, license, ...) unless told otherwise.

The shipped LMs' cards also show the accuracy campaign's plots (``campaign_plots``), which their directories
carry (``copy_campaign_plots``); a user's card shows no image it does not carry.

``base_model`` must be a model id on the Hub (the Hub refuses other values), so a stage that starts from a
local directory names that directory in the card's text only, unless the directory's own card (written by the
previous stage with ``hub_model_id`` set) says which Hub repo it is.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = "model_card.md"
CARD_NAME = "README.md"
DEFAULT_LICENSE = "apache-2.0"
TAGS = ("ulmfit", "awd-lstm", "lstm", "safetensors")

# The accuracy campaign's plots (``scripts/reproduce_accuracy.py report`` draws them), by file name, with the alt
# text a card shows them under. A model directory that carries them does so in PLOT_FOLDER, the folder that holds
# them in the repository too, so that one relative link works in the shipped card and in the repository's copy.
PLOT_FOLDER = "docs"
CAMPAIGN_PLOTS = {
    "accuracy_vs_labels_imdb.png": "IMDb accuracy against labels",
    "accuracy_vs_labels_trec.png": "TREC-6 accuracy against labels",
    "accuracy_vs_compute_imdb-1000.png": "IMDb accuracy against stage-1 and stage-2 tokens",
    "accuracy_vs_compute_trec-5452.png": "TREC-6 accuracy against stage-1 tokens",
}

# A Hub model id: "name" or "owner/name".
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class Stage:
    """What a stage's card says about the model it produced: its Hub task and the Auto class that loads it."""

    pipeline_tag: str
    auto_class: str


STAGES = {
    "pretrain": Stage("text-generation", "AutoModelForCausalLM"),
    "finetune-lm": Stage("text-generation", "AutoModelForCausalLM"),
    "train-classifier": Stage("text-classification", "AutoModelForSequenceClassification"),
}
# Tags a card gets from its stage; a re-rendered card recomputes them rather than keeping the old card's.
_AUTOMATIC_TAGS = {*TAGS, "backward", *(stage.pipeline_tag for stage in STAGES.values())}


@dataclass(frozen=True)
class Metric:
    """How an evaluation metric of the stages appears in ``model-index``."""

    type: str
    name: str
    args: dict | None = None


METRICS = {
    "eval_perplexity": Metric("perplexity", "Perplexity"),
    "eval_accuracy": Metric("accuracy", "Accuracy"),
    "eval_macro_f1": Metric("f1", "Macro F1", {"average": "macro"}),
}


def template_path() -> Path:
    """The card template shipped inside the package."""
    return Path(str(resources.files(__package__).joinpath("templates", TEMPLATE)))


def build_model_card(
    stage: str,
    config: Any,
    *,
    metrics: dict[str, float] | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | None = None,
    license: str | None = DEFAULT_LICENSE,
    language: str | list[str] | None = None,
    tags: list[str] | None = None,
    num_parameters: int | None = None,
    training: dict[str, Any] | None = None,
    details: str | None = None,
    campaign_plots: bool = False,
) -> ModelCard:
    """The model card of a ULMFiT stage.

    Args:
        stage: ``"pretrain"``, ``"finetune-lm"`` or ``"train-classifier"`` (the keys of ``STAGES``).
        config: the model's ``AWDLSTMConfig`` (sizes, labels).
        metrics: evaluation metrics as the Trainer names them; ``eval_perplexity``, ``eval_accuracy`` and
            ``eval_macro_f1`` go into ``model-index``.
        model_name: the card's title and ``model-index`` name; default ``repo_id`` or ``"ulmfit-<stage>"``.
        repo_id: the Hub id used in the usage examples; defaults to ``model_name`` when that is a full id.
        base_model: the model the stage started from: a Hub id becomes ``base_model`` metadata, anything else
            (a local directory) is only named in the text. See ``hub_base_model``.
        datasets: names of the training data (Hub dataset ids or file names, see ``dataset_names``).
        license, language: Hub metadata.
        tags: tags added to the ULMFiT ones.
        num_parameters: shown in the card when given.
        training: hyperparameters to list in the card (name -> value).
        details: Markdown placed after the training data (how a shipped model was trained and measured).
        campaign_plots: show the accuracy campaign's plots (``CAMPAIGN_PLOTS``) beside its table, linked in
            ``PLOT_FOLDER``: for a model directory that carries them (``copy_campaign_plots``), as the shipped
            LMs do.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {sorted(STAGES)}, got {stage!r}.")
    info = STAGES[stage]
    backwards = bool(getattr(config, "backwards", False))
    # A backward LM cannot continue a prompt, so no Hub widget fits it; its metrics still measure the LM task.
    pipeline_tag = None if backwards and stage != "train-classifier" else info.pipeline_tag
    model_name = model_name or repo_id or f"ulmfit-{stage}"
    repo_id = repo_id or (model_name if "/" in model_name else f"your-username/{model_name}")
    datasets = list(datasets or [])
    hub_base = hub_base_model(base_model) if stage != "pretrain" else None
    results = evaluation_results(metrics or {}, info.pipeline_tag, datasets[-1] if datasets else "unknown")
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=[*TAGS, *filter(None, [pipeline_tag, "backward" if backwards else None]), *(tags or [])],
        license=license,
        language=language,
        datasets=datasets or None,
        metrics=sorted({result.metric_type for result in results}) or None,
        base_model=hub_base,
        eval_results=results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=model_name,
        repo_id=repo_id,
        stage=stage,
        auto_class=info.auto_class,
        is_classifier=stage == "train-classifier",
        backwards=backwards,
        started_from=(hub_base or base_model) if stage != "pretrain" else None,
        datasets=datasets,
        results=[
            {
                "name": r.metric_name,
                "value": r.metric_value,
                "dataset": r.dataset_name,
                "split": r.dataset_split,
            }
            for r in results
        ],
        training=training or {},
        details=details,
        plots=[{"path": f"{PLOT_FOLDER}/{name}", "alt": alt} for name, alt in CAMPAIGN_PLOTS.items()]
        if campaign_plots
        else [],
        **_architecture(config, num_parameters),
    )


def write_model_card(output_dir: str | os.PathLike, stage: str, config: Any, **kwargs) -> Path:
    """Renders ``build_model_card(stage, config, **kwargs)`` into ``output_dir/README.md``, its path."""
    path = Path(output_dir) / CARD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    build_model_card(stage, config, **kwargs).save(path)
    return path


def copy_campaign_plots(plot_dir: str | os.PathLike, model_dir: str | os.PathLike) -> list[Path]:
    """Copies the campaign's plots (``CAMPAIGN_PLOTS``) from ``plot_dir`` into ``model_dir``'s ``PLOT_FOLDER``,
    where a card built with ``campaign_plots=True`` links them; the copies' paths. Copies none if one is missing."""
    sources = [Path(plot_dir) / name for name in CAMPAIGN_PLOTS]
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:
        raise FileNotFoundError(f"The accuracy campaign's plots are missing: {missing}; draw them with "
                                "`python scripts/reproduce_accuracy.py report --plot_dir ...` first.")  # fmt: skip
    target = Path(model_dir) / PLOT_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, target / source.name)) for source in sources]


def evaluation_results(metrics: dict[str, float], task: str, dataset: str) -> list[EvalResult]:
    """The ``model-index`` entries for the known metrics in ``metrics`` (finite values only)."""
    results = []
    for key, metric in METRICS.items():
        value = metrics.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split="validation",
                metric_type=metric.type,
                metric_name=metric.name,
                metric_value=float(value),
                metric_args=metric.args,
            )
        )
    return results


def dataset_names(*files: str | None, name: str | None = None) -> list[str]:
    """``[name]`` when given, else the names of the data files without directory and extension, in order."""
    if name:
        return [name]
    names = [Path(file).stem for file in files if file]
    return list(dict.fromkeys(names))


def hub_base_model(model_name_or_path: str | None) -> str | None:
    """The Hub id of the model a stage started from, or None.

    A name that is not a local directory is the Hub id ``from_pretrained`` loaded. A local directory is
    resolved through its own card: written by a previous stage whose ``model_name`` is a full Hub id
    (``owner/name``, from ``hub_model_id``), it names the repo; otherwise the directory has no Hub id.
    """
    if not model_name_or_path:
        return None
    if not os.path.isdir(model_name_or_path):
        return model_name_or_path if _HUB_ID.fullmatch(model_name_or_path) else None
    card_path = Path(model_name_or_path) / CARD_NAME
    if not card_path.is_file():
        return None
    name = ModelCard.load(card_path, ignore_metadata_errors=True).data.model_name
    return name if name and "/" in name and _HUB_ID.fullmatch(name) else None


def is_ulmfit_card(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a model card written by this module (tagged ``ulmfit``)."""
    if not Path(path).is_file():
        return False
    tags = ModelCard.load(path, ignore_metadata_errors=True).data.tags or []
    return "ulmfit" in tags


def write_trainer_model_card(
    trainer: Any,
    *,
    stage: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: str | list[str] | None = None,
    model_name: str | None = None,
    finetuned_from: str | None = None,
    dataset: str | list[str] | None = None,
    **ignored: Any,
) -> Path:
    """Writes the ULMFiT card of ``trainer``'s model into ``trainer.args.output_dir``.

    Takes ``Trainer.create_model_card``'s arguments (``tasks``, ``dataset_tags`` and ``dataset_args`` are
    ignored) plus ``stage``. The evaluation results are those of the trainer's last evaluation. What is not
    given is taken from a ULMFiT card already in ``output_dir`` (written by a stage): its datasets, base
    model, license, language and tags; the stage defaults to the model's kind (classifier, or a language
    model fine-tuned when it started from a checkpoint).
    """
    output_dir = Path(trainer.args.output_dir)
    previous = _previous_card_data(output_dir / CARD_NAME)
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = finetuned_from or previous.get("base_model") or _started_from(model)
    hub_id = trainer.hub_model_id or getattr(trainer.args, "hub_model_id", None)
    return write_model_card(
        output_dir,
        stage or _stage_of(model, base),
        model.config,
        metrics=last_evaluation(trainer.state.log_history),
        model_name=hub_id
        if hub_id and "/" in hub_id
        else (previous.get("model_name") or model_name or output_dir.name),
        repo_id=hub_id if hub_id and "/" in hub_id else None,
        base_model=base,
        datasets=_as_list(dataset) or _as_list(previous.get("datasets")),
        license=license or previous.get("license") or DEFAULT_LICENSE,
        language=language or previous.get("language"),
        tags=_as_list(tags) + [tag for tag in _as_list(previous.get("tags")) if tag not in _AUTOMATIC_TAGS],
        num_parameters=model.num_parameters(),
        training=training_summary(trainer.args, trainer.state),
    )


def last_evaluation(log_history: list[dict]) -> dict[str, float]:
    """The metrics of the last evaluation in a ``TrainerState.log_history``."""
    for entry in reversed(log_history):
        if "eval_loss" in entry:
            return {key: value for key, value in entry.items() if key.startswith("eval_")}
    return {}


def training_summary(args: Any, state: Any = None) -> dict[str, Any]:
    """The hyperparameters a card lists: rates, schedule, batch size, steps."""
    summary = {
        "learning rate (top layer group)": args.learning_rate,
        "discriminative rate factor": getattr(args, "discriminative_lr_factor", None),
        "schedule": "STLR"
        if getattr(args, "ulmfit_lr_scheduler", None) == "stlr"
        else args.lr_scheduler_type,
        "gradual unfreezing": getattr(args, "gradual_unfreezing", None),
        "encoder frozen (head only)": True if getattr(args, "freeze_encoder", False) else None,
        "batch size": args.per_device_train_batch_size,
        "optimizer steps": getattr(state, "global_step", None),
        "seed": args.seed,
    }
    return {name: _plain(value) for name, value in summary.items() if value is not None}


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _architecture(config: Any, num_parameters: int | None) -> dict[str, Any]:
    labels = (
        [config.id2label[i] for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
    )
    return {
        "vocab_size": config.vocab_size,
        "embedding_size": config.embedding_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "labels": labels,
        "num_parameters": f"{num_parameters:,}" if num_parameters else "not recorded",
    }


def _previous_card_data(path: Path) -> dict[str, Any]:
    """The metadata of a ULMFiT card at ``path`` (``model_name`` included), or ``{}``."""
    if not is_ulmfit_card(path):
        return {}
    data = ModelCard.load(path, ignore_metadata_errors=True).data
    return {**data.to_dict(), "model_name": data.model_name}


def _started_from(model: Any) -> str | None:
    """The directory or Hub id ``from_pretrained`` loaded the model from (None for a new model)."""
    return getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None) or None


def _stage_of(model: Any, base_model: str | None) -> str:
    if type(model).__name__.endswith("ForSequenceClassification"):
        return "train-classifier"
    return "finetune-lm" if base_model else "pretrain"


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _plain(value: Any) -> Any:
    """Enums (``lr_scheduler_type``) as their value, so the card shows ``linear`` rather than the enum."""
    return getattr(value, "value", value)


__all__ = [
    "CAMPAIGN_PLOTS",
    "METRICS",
    "STAGES",
    "build_model_card",
    "copy_campaign_plots",
    "dataset_names",
    "evaluation_results",
    "hub_base_model",
    "is_ulmfit_card",
    "last_evaluation",
    "template_path",
    "training_summary",
    "write_model_card",
    "write_trainer_model_card",
]
