"""The data every run reads, written once under WORK_DIR/data: balanced label draws per task and seed, the fixed
test samples, the stage-2 corpora and ulmfit_tuned's held-out split."""

from pathlib import Path

import pandas as pd

from .protocol import (
    ALL_LABELS,
    DATA,
    IMDB_LM_TEXTS,
    corpus_of,
    imdb_stage2_budget,
    labels_of,
    validation_share,
)


def prepare_data(
    work_dir: Path, tasks: list[str], seeds: list[int], imdb_test_size: int, imdb_lm_docs: int
) -> Path:
    """Writes the train/test files of every task and seed, and the stage-2 corpora; returns the data folder."""
    data = work_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    trec_train = pd.read_parquet(DATA / "trec" / "train.parquet")[["text", "label"]]
    imdb_train = pd.read_parquet(DATA / "imdb" / "train.parquet")[["text", "label"]]
    train = {"trec": trec_train, "imdb": imdb_train}
    _write(pd.read_parquet(DATA / "trec" / "test.parquet")[["text", "label"]], data / "trec-test.parquet")
    imdb_test = pd.read_parquet(DATA / "imdb" / "test.parquet")[["text", "label"]]
    _write(imdb_test.sample(n=imdb_test_size, random_state=0), data / "imdb-test.parquet")
    for task in tasks:
        for seed in seeds:
            _write(balanced_draw(train[corpus_of(task)], labels_of(task), seed), train_file(data, task, seed))
    _write(trec_train[["text"]], data / "trec-lm.parquet")
    unlabelled = pd.read_parquet(DATA / "imdb" / "unsup.parquet")[["text"]]
    corpus = pd.concat([unlabelled, imdb_train[["text"]]])
    if len(corpus) != IMDB_LM_TEXTS:
        raise SystemExit(
            f"Expected {IMDB_LM_TEXTS} IMDb reviews for stage 2 in {DATA / 'imdb'}, found {len(corpus)}."
        )
    reviews, _ = imdb_stage2_budget(imdb_lm_docs)
    _write(corpus.sample(n=reviews, random_state=0), data / lm_corpus_file("imdb", imdb_lm_docs))
    return data


def label_quota(available: pd.Series, size: int) -> dict:
    """How many texts of each label (``available``: label -> count) a draw of ``size`` takes: as equal a share
    of each as the counts allow (TREC's smallest class has 86 questions); every text when ``size`` is all."""
    quota, left = {}, min(size, int(available.sum()))
    for index, (label, count) in enumerate(available.sort_values().items()):
        quota[label] = min(int(count), left // (len(available) - index))
        left -= quota[label]
    return quota


def balanced_draw(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``size`` rows of ``frame`` drawn by ``label_quota``, shuffled; all of ``frame`` shuffled when ``size`` is
    its length."""
    if size >= len(frame):
        return frame.sample(frac=1, random_state=seed)
    quota = label_quota(frame["label"].value_counts(), size)
    drawn = [frame[frame["label"] == label].sample(n=n, random_state=seed) for label, n in quota.items()]
    return pd.concat(drawn).sample(frac=1, random_state=seed)


def _write(frame: pd.DataFrame, path: Path) -> None:
    if not path.exists():
        frame.reset_index(drop=True).to_parquet(path)


def train_file(data: Path, task: str, seed: int) -> Path:
    if labels_of(task) == ALL_LABELS[corpus_of(task)]:
        seed = 0  # every label: one file, each seed only shuffles the training
    return data / f"{task}-train-s{seed}.parquet"


def task_files(data: Path, task: str, seed: int) -> tuple[Path, Path]:
    return train_file(data, task, seed), data / f"{corpus_of(task)}-test.parquet"


def lm_corpus_file(corpus: str, imdb_lm_docs: int) -> str:
    return "trec-lm.parquet" if corpus == "trec" else f"imdb-lm-{imdb_stage2_budget(imdb_lm_docs)[0]}.parquet"


def validation_split(data: Path, task: str) -> tuple[Path, Path]:
    """Seed 0's training labels split in two, stratified by label: the part fitted and the held-out part."""
    fit_file, validation_file = data / f"{task}-select-fit.parquet", data / f"{task}-select-valid.parquet"
    train = pd.read_parquet(train_file(data, task, 0))
    validation = train.groupby("label").sample(frac=validation_share(task), random_state=0)
    _write(train.drop(validation.index), fit_file)
    _write(validation.sample(frac=1, random_state=0), validation_file)
    return fit_file, validation_file
