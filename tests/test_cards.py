"""Model cards: the template, each stage's Hub metadata, and the cards the stages and the trainer write."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import ModelCard
from transformers import default_data_collator

from hf_ulmfit import AWDLSTMConfig, AWDLSTMForSequenceClassification, train_tokenizer
from hf_ulmfit.cards import (
    CAMPAIGN_PLOTS,
    PLOT_FOLDER,
    STAGES,
    build_model_card,
    copy_campaign_plots,
    dataset_names,
    hub_base_model,
    is_ulmfit_card,
    template_path,
    write_model_card,
)
from hf_ulmfit.stages import (
    DataArguments,
    ModelArguments,
    finetune_language_model,
    pretrain,
    train_classifier,
)
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments
from hub_server import metadata_errors

REPOSITORY = Path(__file__).resolve().parents[1]
LABELS = {0: "neg", 1: "pos"}
METRICS = {
    "pretrain": {"eval_loss": 4.0, "eval_perplexity": math.exp(4.0)},
    "finetune-lm": {"eval_loss": 3.5, "eval_perplexity": math.exp(3.5)},
    "train-classifier": {"eval_loss": 0.4, "eval_accuracy": 0.875, "eval_macro_f1": 0.8612},
}
EXPECTED_RESULTS = {
    "pretrain": {"perplexity": math.exp(4.0)},
    "finetune-lm": {"perplexity": math.exp(3.5)},
    "train-classifier": {"accuracy": 0.875, "f1": 0.8612},
}


def config(stage: str) -> AWDLSTMConfig:
    labels = dict(num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    return AWDLSTMConfig(
        vocab_size=300, embedding_size=8, hidden_size=12, **(labels if "class" in stage else {})
    )


def saved_card(tmp_path, stage: str, **kwargs) -> ModelCard:
    """Builds, saves and loads back a card: what the Hub and a reader see."""
    path = write_model_card(tmp_path / stage, stage, config(stage), metrics=METRICS[stage], **kwargs)
    return ModelCard.load(path)


def test_the_repository_card_is_the_shipped_lm_card_rendered_with_valid_hub_metadata():
    text = (REPOSITORY / "model_card.md").read_text()
    assert "{{" not in text and "{%" not in text and text != template_path().read_text()
    card = ModelCard.load(REPOSITORY / "model_card.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert metadata_errors(card.data.to_dict()) == []


IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


def test_a_card_shows_the_campaign_s_plots_only_when_asked(tmp_path):
    """A user's card links no image it does not carry; the shipped LMs' cards link the plots in PLOT_FOLDER."""
    plain = str(build_model_card("pretrain", config("pretrain")))
    assert IMAGE_LINK.findall(plain) == []
    with_plots = str(build_model_card("pretrain", config("pretrain"), campaign_plots=True))
    links = IMAGE_LINK.findall(with_plots)
    assert links == [(alt, f"{PLOT_FOLDER}/{name}") for name, alt in CAMPAIGN_PLOTS.items()]
    # each plot on a line of its own, as a block after the paragraph, not inline in its text
    lines = with_plots.splitlines()
    image_lines = [number for number, line in enumerate(lines) if IMAGE_LINK.search(line)]
    assert all(IMAGE_LINK.fullmatch(lines[number]) for number in image_lines)
    assert lines[image_lines[0] - 1] == ""
    # beside the campaign's table, before the limitations (read across line breaks: prose is rewrapped)
    flat = " ".join(with_plots.split())
    assert flat.index("what is still to run.") < flat.index("![") < flat.index("## Limitations")


def test_copying_the_campaign_s_plots_copies_all_or_none(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    names = list(CAMPAIGN_PLOTS)
    for index, name in enumerate(names[:-1]):
        (plots / name).write_bytes(bytes([index]) * 10)
    with pytest.raises(FileNotFoundError, match=names[-1]):
        copy_campaign_plots(plots, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    (plots / names[-1]).write_bytes(b"last")
    copies = copy_campaign_plots(plots, tmp_path / "model")
    assert copies == [tmp_path / "model" / PLOT_FOLDER / name for name in names]
    assert [copy.read_bytes() for copy in copies] == [(plots / name).read_bytes() for name in names]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_card_metadata_round_trips_with_the_stage_task_and_results(tmp_path, stage):
    base = None if stage == "pretrain" else "someone/ulmfit-lm"
    card = saved_card(
        tmp_path, stage, model_name="user/model", base_model=base, datasets=["imdb"], language="en"
    )
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == STAGES[stage].pipeline_tag
    assert data.pipeline_tag == ("text-classification" if stage == "train-classifier" else "text-generation")
    assert {"ulmfit", "awd-lstm"} <= set(data.tags)
    assert data.datasets == ["imdb"] and data.license == "apache-2.0" and data.language == "en"
    assert data.base_model == base
    assert sorted(data.metrics) == sorted(EXPECTED_RESULTS[stage])
    assert data.model_name == "user/model"
    results = {result.metric_type: result.metric_value for result in data.eval_results}
    assert results == pytest.approx(EXPECTED_RESULTS[stage])
    assert {result.task_type for result in data.eval_results} == {data.pipeline_tag}
    assert {(result.dataset_name, result.dataset_split) for result in data.eval_results} == {
        ("imdb", "validation")
    }
    assert metadata_errors(data.to_dict()) == []


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_card_text_has_the_sections_and_usage_with_and_without_the_package(tmp_path, stage):
    text = saved_card(tmp_path, stage, model_name="user/model").text
    for section in ("## The ULMFiT recipe", "## How to use", "## Training data", "## Evaluation results"):
        assert section in text
    assert "## Limitations" in text and "## Citation" in text and "howard-ruder-2018-universal" in text
    auto_class = STAGES[stage].auto_class
    assert f'{auto_class}.from_pretrained("user/model")' in text
    assert f'{auto_class}.from_pretrained("user/model", trust_remote_code=True)' in text
    assert f'pipeline("{STAGES[stage].pipeline_tag}", model="user/model", trust_remote_code=True)' in text
    assert "{{" not in text and "{%" not in text  # fully rendered
    if stage == "train-classifier":
        assert "| labels | neg, pos |" in text and "| Accuracy | 0.8750 |" in text


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_backward_model_card_says_so_and_offers_no_generation(tmp_path, stage):
    backward = config(stage)
    backward.backwards = True
    path = write_model_card(tmp_path / stage, stage, backward, metrics=METRICS[stage], model_name="user/bwd")
    card = ModelCard.load(path)
    assert "backward" in card.data.tags and metadata_errors(card.data.to_dict()) == []
    if stage == "train-classifier":  # a backward classifier classifies like any other
        assert card.data.pipeline_tag == "text-classification"
        return
    assert card.data.pipeline_tag is None  # no Hub widget: a backward LM cannot continue a prompt
    code = [line for line in card.text.splitlines() if not line.lstrip().startswith("#")]
    assert not any(".generate(" in line or '"text-generation"' in line for line in code)
    assert "right to left" in card.text and 'labels=inputs["input_ids"]' in card.text
    assert {result.task_type for result in card.data.eval_results} == {"text-generation"}


def test_a_local_base_model_is_named_in_the_text_but_not_in_the_metadata(tmp_path):
    local = tmp_path / "1-pretrain"
    local.mkdir()
    card = saved_card(tmp_path, "finetune-lm", base_model=str(local))
    assert card.data.base_model is None and f"`{local}`" in card.text
    # The previous stage's own card knows its Hub id: that becomes the base model.
    write_model_card(local, "pretrain", config("pretrain"), model_name="user/general-lm")
    assert hub_base_model(str(local)) == "user/general-lm"
    assert saved_card(tmp_path, "finetune-lm", base_model=str(local)).data.base_model == "user/general-lm"
    assert hub_base_model("user/some-lm") == "user/some-lm" and hub_base_model(None) is None


def test_unknown_stage_and_non_finite_metrics():
    with pytest.raises(ValueError, match="stage must be one of"):
        build_model_card("classify", config("pretrain"))
    card = build_model_card("pretrain", config("pretrain"), metrics={"eval_perplexity": math.inf})
    assert card.data.eval_results is None and "No evaluation was recorded." in card.text


def test_dataset_names_come_from_a_given_name_or_the_file_names():
    assert dataset_names("data/train.csv", "data/valid.csv") == ["train", "valid"]
    assert dataset_names("a/reviews.jsonl", None, "b/reviews.jsonl") == ["reviews"]
    assert dataset_names("data/train.csv", name="stanfordnlp/imdb") == ["stanfordnlp/imdb"]


# ----------------------------------------------------------------------------------------------------------
# Cards written by the stages and by ULMFiTTrainer.create_model_card

GENERAL = [
    f"The {w} of the city is {n} years old." for w in ("river", "church", "bridge") for n in (12, 40, 300)
]
REVIEWS = [
    f"This movie was {a}. I {b} it." for a, b in [("great", "loved"), ("awful", "hated")] for _ in range(8)
]
COMMON = dict(
    report_to="none", save_strategy="no", max_steps=2, per_device_train_batch_size=2,
    per_device_eval_batch_size=2, disable_tqdm=True, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory):
    """The three stages on tiny data, the first two with a Hub id (but not pushed)."""
    root = tmp_path_factory.mktemp("stages")
    (root / "general.txt").write_text("\n".join(GENERAL * 4) + "\n")
    pd.DataFrame({"text": REVIEWS}).to_json(root / "reviews.jsonl", orient="records", lines=True)
    pd.DataFrame({"text": REVIEWS, "label": ["pos"] * 8 + ["neg"] * 8}).to_csv(
        root / "train.csv", index=False
    )
    pd.DataFrame({"text": REVIEWS[6:10], "label": ["pos", "pos", "neg", "neg"]}).to_csv(
        root / "valid.csv", index=False
    )
    dirs = {stage: root / stage for stage in STAGES}
    tiny = "embedding_size=8,hidden_size=12,num_hidden_layers=2,bptt=8,max_len=16"
    pretrain(
        ModelArguments(vocab_size=300, config_overrides=tiny),
        DataArguments(train_file=str(root / "general.txt")),
        ULMFiTTrainingArguments(output_dir=str(dirs["pretrain"]), hub_model_id="user/general-lm", **COMMON),
    )
    finetune_language_model(
        ModelArguments(model_name_or_path=str(dirs["pretrain"])),
        DataArguments(train_file=str(root / "reviews.jsonl"), dataset_name="user/reviews"),
        ULMFiTTrainingArguments(
            output_dir=str(dirs["finetune-lm"]), hub_model_id="user/reviews-lm", **COMMON
        ),
    )
    train_classifier(
        ModelArguments(model_name_or_path=str(dirs["finetune-lm"]), license="mit"),
        DataArguments(train_file=str(root / "train.csv"), validation_file=str(root / "valid.csv")),
        ULMFiTTrainingArguments(output_dir=str(dirs["train-classifier"]), **COMMON),
    )
    return dirs


@pytest.mark.parametrize(
    "stage, pipeline_tag, base_model, datasets, license",
    [
        ("pretrain", "text-generation", None, ["general"], "apache-2.0"),
        ("finetune-lm", "text-generation", "user/general-lm", ["user/reviews"], "apache-2.0"),
        ("train-classifier", "text-classification", "user/reviews-lm", ["train", "valid"], "mit"),
    ],
)
def test_each_stage_writes_its_card(stage_dirs, stage, pipeline_tag, base_model, datasets, license):
    directory = stage_dirs[stage]
    card = ModelCard.load(directory / "README.md")
    assert is_ulmfit_card(directory / "README.md")
    assert card.data.pipeline_tag == pipeline_tag and card.data.base_model == base_model
    assert card.data.datasets == datasets and card.data.license == license
    evaluated = json.loads((directory / "eval_results.json").read_text())
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    if stage == "train-classifier":
        assert results == pytest.approx(
            {"accuracy": evaluated["eval_accuracy"], "f1": evaluated["eval_macro_f1"]}
        )
    else:
        assert results == pytest.approx({"perplexity": evaluated["eval_perplexity"]})
    assert metadata_errors(card.data.to_dict()) == []
    files = {path.name for path in directory.iterdir()}
    assert "training_args.json" in files and "training_args.bin" not in files


def test_trainer_writes_the_ulmfit_card_and_keeps_what_a_stage_card_says(tmp_path):
    tokenizer = train_tokenizer(REVIEWS, vocab_size=300, show_progress=False)
    model = AWDLSTMForSequenceClassification(config("train-classifier"))
    args = ULMFiTTrainingArguments(output_dir=str(tmp_path), **COMMON)
    trainer = ULMFiTTrainer(
        model=model, args=args, data_collator=default_data_collator, processing_class=tokenizer
    )
    trainer.state.log_history = [{"eval_loss": 0.5, "eval_accuracy": 0.75, "epoch": 1.0}]
    trainer.create_model_card(dataset="user/reviews", finetuned_from="user/reviews-lm", tags=["sentiment"])
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.base_model == "user/reviews-lm"
    assert "automatically generated" not in card.text and "sentiment" in card.data.tags
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("accuracy", 0.75)]
    # Called again without arguments (as Trainer.push_to_hub does), the card keeps datasets and base model.
    trainer.create_model_card(model_name=tmp_path.name)
    again = ModelCard.load(tmp_path / "README.md").data
    assert again.datasets == ["user/reviews"] and again.base_model == "user/reviews-lm"
    assert "sentiment" in again.tags
