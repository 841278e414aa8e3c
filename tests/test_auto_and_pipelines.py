"""The model as a transformers user meets it: Auto classes, saved directories, remote code and pipelines."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

from conftest import REVIEWS
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, AWDLSTMModel
from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

CORPUS = REVIEWS * 20
TEXTS = [
    "great film",
    "bad",
    "It was a long, boring and terrible movie with bad acting " * 8,
    "loved it!",
    "ok",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tokenizer, an LM and a classifier saved the way the training stages save them."""
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, show_progress=False)
    size = dict(vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, bptt=8, max_len=20)
    torch.manual_seed(0)
    lm = AWDLSTMForCausalLM(AWDLSTMConfig(**size))
    classifier = AWDLSTMForSequenceClassification(
        AWDLSTMConfig(**size, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    ).eval()
    dirs = {"lm": tmp_path_factory.mktemp("lm"), "classifier": tmp_path_factory.mktemp("classifier")}
    for name, model in [("lm", lm), ("classifier", classifier)]:
        model.save_pretrained(dirs[name])
        tokenizer.save_pretrained(dirs[name])
    return dirs, tokenizer, lm.eval(), classifier


def test_saved_directory_has_safetensors_code_and_an_auto_map_for_all_four_classes(saved):
    dirs, *_ = saved
    for directory in dirs.values():
        files = {path.name for path in directory.iterdir()}
        assert {
            "model.safetensors",
            "configuration_awd_lstm.py",
            "modeling_awd_lstm.py",
            "tokenizer.json",
        } <= files
        assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
        auto_map = json.loads((directory / "config.json").read_text())["auto_map"]
        assert auto_map == {
            "AutoConfig": "configuration_awd_lstm.AWDLSTMConfig",
            "AutoModel": "modeling_awd_lstm.AWDLSTMModel",
            "AutoModelForCausalLM": "modeling_awd_lstm.AWDLSTMForCausalLM",
            "AutoModelForSequenceClassification": "modeling_awd_lstm.AWDLSTMForSequenceClassification",
        }


def test_auto_classes_load_the_package_classes(saved):
    dirs, tokenizer, lm, classifier = saved
    assert isinstance(AutoConfig.from_pretrained(dirs["lm"]), AWDLSTMConfig)
    assert isinstance(AutoConfig.for_model("awd_lstm"), AWDLSTMConfig)
    assert type(AutoModel.from_pretrained(dirs["lm"])) is AWDLSTMModel
    loaded_lm = AutoModelForCausalLM.from_pretrained(dirs["lm"])
    loaded_classifier = AutoModelForSequenceClassification.from_pretrained(dirs["classifier"])
    assert (
        type(loaded_lm) is AWDLSTMForCausalLM and type(loaded_classifier) is AWDLSTMForSequenceClassification
    )
    loaded_tokenizer = AutoTokenizer.from_pretrained(dirs["classifier"])
    batch = loaded_tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == tokenizer(TEXTS, padding=True)["input_ids"]
    torch.testing.assert_close(
        loaded_classifier.eval()(**batch).logits, classifier(**batch).logits, atol=0, rtol=0
    )
    torch.testing.assert_close(loaded_lm.eval()(**batch).logits, lm(**batch).logits, atol=0, rtol=0)


def test_from_config_builds_each_head():
    config = AWDLSTMConfig(vocab_size=30, embedding_size=4, hidden_size=6)
    assert type(AutoModelForCausalLM.from_config(config)) is AWDLSTMForCausalLM
    assert type(AutoModelForSequenceClassification.from_config(config)) is AWDLSTMForSequenceClassification


FRESH_INTERPRETER = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_ulmfit"] = None  # this interpreter cannot import hf_ulmfit
    import torch
    from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer, pipeline)
    lm_dir, classifier_dir, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        import hf_ulmfit
        raise SystemExit("hf_ulmfit must not be importable here")
    except ImportError:
        pass
    out = {"config": type(AutoConfig.from_pretrained(lm_dir, trust_remote_code=True)).__name__}
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir, trust_remote_code=True)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    base = AutoModel.from_pretrained(lm_dir, trust_remote_code=True).eval()
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, trust_remote_code=True).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(classifier_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        out["classes"] = [type(m).__module__.split(".")[0] + ":" + type(m).__name__ for m in (base, lm, classifier)]
        out["encoder"] = base(**batch).last_hidden_state.tolist()
        out["lm"] = lm(**batch).logits.tolist()
        out["classifier"] = classifier(**batch).logits.tolist()
    out["generated"] = lm.generate(batch["input_ids"][:1], max_new_tokens=5, do_sample=False).tolist()
    classify = pipeline("text-classification", model=classifier_dir, trust_remote_code=True)
    out["pipeline"] = classify(texts, top_k=None)
    print("RESULT" + json.dumps(out))
    """
)


def test_remote_code_works_where_hf_ulmfit_is_not_installed(saved, tmp_path):
    dirs, tokenizer, lm, classifier = saved
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_INTERPRETER,
            str(dirs["lm"]),
            str(dirs["classifier"]),
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert out["config"] == "AWDLSTMConfig"
    assert all(name.startswith("transformers_modules:") for name in out["classes"])  # served as remote code
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(out["encoder"]), lm.awd_lstm(**batch).last_hidden_state)
        torch.testing.assert_close(torch.tensor(out["lm"]), lm(**batch).logits)
        torch.testing.assert_close(torch.tensor(out["classifier"]), classifier(**batch).logits)
    expected = lm.generate(batch["input_ids"][:1], max_new_tokens=5, do_sample=False)
    assert out["generated"] == expected.tolist()
    local = pipeline("text-classification", model=classifier, tokenizer=tokenizer)(TEXTS, top_k=None)
    assert_same_scores(out["pipeline"], local)


def assert_same_scores(left, right, atol=1e-5):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        a, b = sorted(a, key=lambda s: s["label"]), sorted(b, key=lambda s: s["label"])
        assert [s["label"] for s in a] == [s["label"] for s in b]
        assert [s["score"] for s in a] == pytest.approx([s["score"] for s in b], abs=atol)


def test_text_classification_pipeline_batched_equals_unbatched(saved):
    dirs, *_ = saved
    classify = pipeline("text-classification", model=str(dirs["classifier"]))
    unbatched = [classify(text, top_k=None) for text in TEXTS]
    batched = classify(TEXTS, batch_size=4, top_k=None)
    assert_same_scores(batched, unbatched)
    assert {s["label"] for s in unbatched[0]} == {"neg", "pos"}
    assert sum(s["score"] for s in unbatched[0]) == pytest.approx(1.0)


def test_text_classification_pipeline_scores_are_the_models_softmax(saved):
    dirs, tokenizer, _, classifier = saved
    scores = pipeline("text-classification", model=str(dirs["classifier"]))(TEXTS[2], top_k=None)
    with torch.no_grad():
        probs = classifier(**tokenizer(TEXTS[2], return_tensors="pt")).logits.softmax(-1)[0]
    assert {s["label"]: s["score"] for s in scores} == pytest.approx(
        {"neg": probs[0].item(), "pos": probs[1].item()}
    )


GENERATION = {
    "greedy": dict(do_sample=False),
    "sampling": dict(do_sample=True, top_k=0),
    "beam search": dict(do_sample=False, num_beams=3),
}


@pytest.mark.parametrize("search", GENERATION)
def test_text_generation_pipeline_text_is_the_decoded_full_sequence(saved, search):
    """The pipeline decodes only the new tokens and appends them to the prompt: that text must equal the decoded
    whole sequence, spaces between prompt and continuation included."""
    dirs, tokenizer, lm, _ = saved
    generate = pipeline("text-generation", model=str(dirs["lm"]))
    prompt, settings = "A wonderful film", dict(max_new_tokens=12, **GENERATION[search])
    torch.manual_seed(0)
    text = generate(prompt, **settings)[0]["generated_text"]
    # The prompt without <bos>, as the pipeline tokenizes it.
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    sequence = lm.generate(ids, attention_mask=torch.ones_like(ids), **settings)[0]
    assert text == tokenizer.decode(sequence, skip_special_tokens=True)
    assert text.startswith(prompt) and len(text) > len(prompt)


def test_every_split_of_the_ids_decodes_to_the_two_halves_of_the_text(saved):
    """What makes the pipeline's text right: decoding the ids after any split point gives exactly the text after
    it, the space before a word included (the decoder adds and drops nothing)."""
    _, tokenizer, _, _ = saved
    text = "A wonderful film, truly. Not  a dull\nmoment: 10/10 <3"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for split in range(len(ids) + 1):
        head, tail = tokenizer.decode(ids[:split]), tokenizer.decode(ids[split:])
        assert head + tail == text
    assert tokenizer.decode(ids[1:]).startswith(" ")  # "A" is the first token: the rest starts with a space


SILENT_TOKENIZER_LOAD = textwrap.dedent(
    """
    import sys
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    directory = sys.argv[1]
    for tokenizer in (
        PreTrainedTokenizerFast.from_pretrained(directory),
        AutoTokenizer.from_pretrained(directory, trust_remote_code=True),
    ):
        print("IDS", tokenizer("A wonderful film")["input_ids"])
    assert "hf_ulmfit" not in sys.modules
    """
)


def test_tokenizer_loads_silently_in_a_process_without_the_package(saved, tmp_path):
    """The two ways the README gives load the tokenizer with no prompt, warning or package import. (A plain
    ``AutoTokenizer.from_pretrained(dir)`` asks about custom code: transformers 5 reads the model's config first.)"""
    dirs, tokenizer, _, _ = saved
    result = subprocess.run(
        [sys.executable, "-c", SILENT_TOKENIZER_LOAD, str(dirs["lm"])],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""
    expected = tokenizer("A wonderful film")["input_ids"]
    assert result.stdout.splitlines() == [f"IDS {expected}"] * 2
