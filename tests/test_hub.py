"""Hub round trip against a local Hub server (``hub_server.py``) speaking the Hub's HTTP protocol.

One process pushes, as a user would: a classifier and its tokenizer with ``model.push_to_hub`` /
``tokenizer.push_to_hub``, a language model with ``ULMFiTTrainer.push_to_hub``, and a stage run with
``push_to_hub=True``. Fresh processes, each with an empty cache, then pull by repo id: one with the package
installed, one where ``hf_ulmfit`` cannot be imported (remote code, ``trust_remote_code=True``). Both must
reproduce the pushed models' logits and pipeline scores. ``huggingface_hub`` reads ``HF_ENDPOINT`` and friends
at import time, hence the subprocesses.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from conftest import REVIEWS
from hub_server import HubServer

CORPUS = REVIEWS * 12
TEXTS = ["great film", "bad", "It was a long, boring and terrible movie with bad acting " * 4, "ok"]
TINY = dict(embedding_size=8, hidden_size=12, num_hidden_layers=2, bptt=8, max_len=16)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

PUSH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from datasets import Dataset
    from transformers import default_data_collator, pipeline
    from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM, AWDLSTMForSequenceClassification, train_tokenizer
    from hf_ulmfit.data import language_model_stream
    from hf_ulmfit.stages import DataArguments, ModelArguments, pretrain
    from hf_ulmfit.trainer import ULMFiTTrainer
    from hf_ulmfit.training_args import ULMFiTTrainingArguments

    work, corpus, texts, tiny = Path(sys.argv[1]), *(json.loads(a) for a in sys.argv[2:5])
    torch.manual_seed(0)
    tokenizer = train_tokenizer(corpus, vocab_size=300, show_progress=False)
    size = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **tiny)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    out = {}

    # A classifier with trained-looking BatchNorm statistics: model.push_to_hub + tokenizer.push_to_hub.
    classifier = AWDLSTMForSequenceClassification(
        AWDLSTMConfig(**size, num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    )
    for module in classifier.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    classifier.eval()
    out["classifier_commit"] = classifier.push_to_hub("user/tiny-classifier").oid
    out["tokenizer_commit"] = tokenizer.push_to_hub("user/tiny-classifier").oid
    with torch.no_grad():
        out["classifier"] = classifier(**batch).logits.tolist()
    classify = pipeline("text-classification", model=classifier, tokenizer=tokenizer)
    out["pipeline"] = classify(texts, top_k=None)

    # A language model trained for a few steps: ULMFiTTrainer.push_to_hub (repo name without a namespace).
    def stream(rows):
        return language_model_stream(Dataset.from_dict({"text": corpus}), tokenizer, batch_size=rows, bptt=8)

    args = ULMFiTTrainingArguments(
        output_dir=str(work / "lm"), hub_model_id="tiny-lm", max_steps=3, learning_rate=1e-2,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, train_sampling_strategy="sequential",
        dataloader_drop_last=True, save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )
    trainer = ULMFiTTrainer(
        model=AWDLSTMForCausalLM(AWDLSTMConfig(**size)), args=args, train_dataset=stream(4),
        eval_dataset=stream(4), data_collator=default_data_collator, processing_class=tokenizer,
    )
    trainer.train()
    out["lm_perplexity"] = trainer.evaluate()["eval_perplexity"]
    out["lm_commit"] = trainer.push_to_hub(dataset="tiny-corpus").oid
    lm = trainer.model.eval()
    with torch.no_grad():
        out["lm"] = lm(**batch).logits.tolist()
    out["generated"] = lm.generate(batch["input_ids"][:1], max_new_tokens=5, do_sample=False).tolist()

    # Stage 1 run with push_to_hub=True: the stage's card goes up with the model.
    (work / "general.txt").write_text("\\n".join(corpus) + "\\n")
    out["stage"] = pretrain(
        ModelArguments(vocab_size=300, config_overrides=",".join(f"{k}={v}" for k, v in tiny.items())),
        DataArguments(train_file=str(work / "general.txt"), dataset_name="tiny-corpus"),
        ULMFiTTrainingArguments(
            output_dir=str(work / "stage"), push_to_hub=True, hub_model_id="user/stage-lm", max_steps=2,
            per_device_train_batch_size=2, per_device_eval_batch_size=2, save_strategy="no", report_to="none",
            disable_tqdm=True, seed=0,
        ),
    )
    (work / "pushed.json").write_text(json.dumps(out))
    """
)

PULL = textwrap.dedent(
    """
    import json, sys
    if sys.argv[1] == "remote-code":
        sys.modules["hf_ulmfit"] = None  # this interpreter cannot import hf_ulmfit
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    remote = sys.argv[1] == "remote-code"
    if not remote:
        import hf_ulmfit  # noqa: F401  registers awd_lstm with the Auto classes
    texts, pinned = json.loads(sys.argv[2]), sys.argv[3]
    code = {"trust_remote_code": True} if remote else {}
    tokenizer = AutoTokenizer.from_pretrained("user/tiny-classifier", **code)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    classifier = AutoModelForSequenceClassification.from_pretrained("user/tiny-classifier", **code).eval()
    lm = AutoModelForCausalLM.from_pretrained("user/tiny-lm", **code).eval()
    first = AutoModelForSequenceClassification.from_pretrained("user/tiny-classifier", revision=pinned,
                                                               **code)
    with torch.no_grad():
        out = {
            "classes": [type(m).__module__.split(".")[0] + ":" + type(m).__name__ for m in (classifier, lm)],
            "classifier": classifier(**batch).logits.tolist(),
            "pinned": first.eval()(**batch).logits.tolist(),
            "lm": lm(**batch).logits.tolist(),
        }
    out["generated"] = lm.generate(batch["input_ids"][:1], max_new_tokens=5, do_sample=False).tolist()
    classify = pipeline("text-classification", model="user/tiny-classifier", **code)
    out["pipeline"] = classify(texts, top_k=None)
    print("RESULT" + json.dumps(out))
    """
)


def run_python(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs ``script`` in a fresh interpreter with only ``env`` (plus PATH) as its environment."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TOKENIZERS_PARALLELISM": "false", **env}
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, env=full_env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def hub():
    """A local Hub on a free port for this module's processes."""
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """Pushes the models in a separate process; returns what that process computed with them."""
    work = tmp_path_factory.mktemp("push")
    env = hub.client_env(str(work / "hf-home"))
    run_python(PUSH, str(work), json.dumps(CORPUS), json.dumps(TEXTS), json.dumps(TINY), env=env)
    return json.loads((work / "pushed.json").read_text())


def pull(hub, tmp_path, mode: str, pinned: str) -> dict:
    env = hub.client_env(str(tmp_path / f"hf-home-{mode}"))  # an empty cache: everything is downloaded
    result = run_python(PULL, mode, json.dumps(TEXTS), pinned, env=env)
    return json.loads(result.stdout.split("RESULT", 1)[1])


def repo_files(hub, repo_id: str) -> dict[str, bytes]:
    repo = hub.store.repos[repo_id]
    return repo.commits[repo.branches["main"]].files


def test_pushes_hold_safetensors_code_and_cards_and_no_pickles(hub, pushed):
    assert set(hub.store.repos) == {"user/tiny-classifier", "user/tiny-lm", "user/stage-lm"}
    for repo_id in hub.store.repos:
        files = repo_files(hub, repo_id)
        assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(files), repo_id
        assert {"configuration_awd_lstm.py", "modeling_awd_lstm.py"} <= set(files), repo_id
        assert not [name for name in files if name.endswith(PICKLE_SUFFIXES)], repo_id
    assert "training_args.json" in repo_files(hub, "user/tiny-lm")
    # Every push went through preupload + commit with inline files (the server refuses LFS operations).
    assert "POST /api/models/user/tiny-classifier/preupload/main" in hub.requests
    assert "POST /api/models/user/tiny-lm/commit/main" in hub.requests
    assert pushed["classifier_commit"] != pushed["tokenizer_commit"]


def test_trainer_push_keeps_the_ulmfit_card(hub, pushed):
    for repo_id, stage_tag in [("user/tiny-lm", "text-generation"), ("user/stage-lm", "text-generation")]:
        card = ModelCard(repo_files(hub, repo_id)["README.md"].decode())
        assert card.data.pipeline_tag == stage_tag and "ulmfit" in card.data.tags
        assert card.data.library_name == "transformers"
        assert card.data.datasets == ["tiny-corpus"]
        assert card.data.model_name == repo_id  # the model-index name is the Hub id
        assert f'from_pretrained("{repo_id}")' in card.text
        assert "automatically generated" not in card.text
    lm_card = ModelCard(repo_files(hub, "user/tiny-lm")["README.md"].decode())
    (result,) = lm_card.data.eval_results
    assert result.metric_type == "perplexity"
    assert result.metric_value == pytest.approx(pushed["lm_perplexity"])
    stage_card = ModelCard(repo_files(hub, "user/stage-lm")["README.md"].decode())
    assert stage_card.data.eval_results[0].metric_value == pytest.approx(pushed["stage"]["eval_perplexity"])


@pytest.mark.parametrize("mode", ["package", "remote-code"])
def test_pull_by_repo_id_reproduces_the_pushed_models(hub, pushed, tmp_path, mode):
    out = pull(hub, tmp_path, mode, pinned=pushed["classifier_commit"])
    module = "transformers_modules" if mode == "remote-code" else "hf_ulmfit"
    assert [name.split(":")[0] for name in out["classes"]] == [module, module]
    torch.testing.assert_close(torch.tensor(out["classifier"]), torch.tensor(pushed["classifier"]))
    torch.testing.assert_close(torch.tensor(out["pinned"]), torch.tensor(pushed["classifier"]))
    torch.testing.assert_close(torch.tensor(out["lm"]), torch.tensor(pushed["lm"]))
    assert out["generated"] == pushed["generated"]
    assert_same_scores(out["pipeline"], pushed["pipeline"])


def test_a_missing_repo_or_file_raises_the_hub_errors(hub, pushed, tmp_path):
    script = textwrap.dedent(
        """
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
        for args, error in [(("user/nothing", "config.json"), RepositoryNotFoundError),
                            (("user/tiny-lm", "nothing.json"), EntryNotFoundError)]:
            try:
                hf_hub_download(*args)
                raise SystemExit(f"{args} downloaded")
            except error:
                pass
        try:
            hf_hub_download("user/tiny-lm", "config.json", revision="no-such-branch")
            raise SystemExit("bad revision downloaded")
        except RevisionNotFoundError:
            pass
        """
    )
    run_python(script, env=hub.client_env(str(tmp_path / "hf-home")))


def assert_same_scores(left, right, atol=1e-5):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        a, b = sorted(a, key=lambda s: s["label"]), sorted(b, key=lambda s: s["label"])
        assert [s["label"] for s in a] == [s["label"] for s in b]
        assert [s["score"] for s in a] == pytest.approx([s["score"] for s in b], abs=atol)


def test_the_local_hub_refuses_invalid_card_metadata(hub, tmp_path):
    """The checks that make a stage's local base model stay out of ``base_model``."""
    from hub_server import metadata_errors

    assert metadata_errors({"base_model": "user/lm", "pipeline_tag": "text-classification"}) == []
    assert metadata_errors({"base_model": str(Path("/tmp/out/1-pretrain"))})
    assert metadata_errors({"pipeline_tag": "not-a-task"})
