"""fastai side of ``scripts/bench_inference.py``; runs inside a separate venv that has fastai installed.

Two modes, each printing one JSON line on stdout:

* ``--prepare OUT_DIR``: tokenizes ``--vocab_texts`` IMDb train reviews with fastai's default tokenizer (spaCy +
  rules), builds fastai's vocabulary from them (``make_vocab``, ``--max_vocab``, min_freq 2), builds a text
  classifier as ``text_classifier_learner`` does (``get_text_classifier(AWD_LSTM, len(vocab), 2, seq_len=72,
  max_len=1440, drop_mult=0.5)``, random weights) and saves ``vocab.json`` and ``classifier.pth`` (the state dict)
  into OUT_DIR, for ``hf_ulmfit.convert_fastai`` to turn into our model with the very same weights.
* ``--texts FILE --prepared DIR``: a benchmark worker. After the imports it resets the kernel's peak-RSS mark, then
  builds ``TextDataLoaders.from_df`` on a few reviews with ``text_vocab`` = the prepared vocabulary, a
  ``text_classifier_learner`` (pretrained=False) holding the prepared weights, warms up on one batch and runs
  ``--repeats`` timed passes of ``learn.get_preds(dl=learn.dls.test_dl(texts, bs=...))``: raw text -> class
  probabilities, fastai's own batched prediction (its test DataLoader tokenizes the texts, sorts them by
  length, pads them in chunks and batches them; in this process, ``num_workers=0``, fastai's default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

# standard library only, so it imports in fastai's venv too
from _machine import reset_peak_rss, rss_mb, timed_passes


def prepare(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq
    import torch
    from fastai.text.all import AWD_LSTM, get_text_classifier, make_vocab, tokenize_texts

    torch.manual_seed(args.seed)
    out = Path(args.prepare)
    out.mkdir(parents=True, exist_ok=True)
    texts = (
        pq.read_table(Path(args.data_dir) / "imdb" / "train.parquet", columns=["text"])
        .column("text")
        .to_pylist()
    )
    start = time.perf_counter()
    tokens = tokenize_texts(texts[: args.vocab_texts], n_workers=args.workers)
    from collections import Counter

    counts = Counter(token for doc in tokens for token in doc)
    vocab = make_vocab(counts, min_freq=2, max_vocab=args.max_vocab)
    model = get_text_classifier(AWD_LSTM, len(vocab), 2, seq_len=72, max_len=72 * 20, drop_mult=0.5)
    torch.save(model.state_dict(), out / "classifier.pth")
    (out / "vocab.json").write_text(json.dumps(list(vocab)))
    print(json.dumps({"vocab_size": len(vocab), "vocab_texts": args.vocab_texts,
                      "seconds": time.perf_counter() - start}))  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    import torch
    from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner

    torch.set_num_threads(args.threads)
    data = json.loads(Path(args.texts).read_text())
    texts = data["texts"]
    prepared = Path(args.prepared)
    vocab = json.loads((prepared / "vocab.json").read_text())
    table = pq.read_table(Path(args.data_dir) / "imdb" / "train.parquet", columns=["text", "label"])
    rows = np.random.default_rng(0).choice(table.num_rows, size=64, replace=False)
    df = pd.DataFrame({"text": table.column("text").take(rows).to_pylist(),
                       "label": table.column("label").take(rows).to_pylist()})  # fmt: skip

    peak_was_reset = reset_peak_rss()
    baseline = rss_mb()
    start = time.perf_counter()
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_pct=0.5, seed=0, bs=args.batch_size,
                                  text_vocab=vocab, seq_len=72)  # fmt: skip
    learn = text_classifier_learner(
        dls, AWD_LSTM, pretrained=False, drop_mult=0.5, seq_len=72, max_len=72 * 20
    )
    learn.model.load_state_dict(torch.load(prepared / "classifier.pth", weights_only=True))
    learn.model.eval()
    load_seconds = time.perf_counter() - start
    after_load = rss_mb()
    assert len(learn.dls.vocab[0]) == len(vocab), (len(learn.dls.vocab[0]), len(vocab))

    def predict(batch_texts):
        with learn.no_bar():
            dl = learn.dls.test_dl(batch_texts, bs=args.batch_size)
            probabilities, _ = learn.get_preds(dl=dl)
        return probabilities.numpy()

    seconds, cpu_seconds, probabilities = timed_passes(predict, texts, args.batch_size, args.repeats)
    import fastai
    import spacy

    print(json.dumps({
        "variant": "fastai", "seconds": seconds, "cpu_seconds": cpu_seconds, "load_seconds": load_seconds,
        "probabilities": probabilities.tolist(),
        "model_bytes": sum(p.numel() * p.element_size() for p in learn.model.state_dict().values()),
        "rss_mb": {"baseline": baseline["current"], "after_load": after_load["current"], "peak": rss_mb()["peak"]},
        "peak_reset_after_imports": peak_was_reset,
        "versions": {"fastai": fastai.__version__, "torch": torch.__version__, "spacy": spacy.__version__},
        "threads": torch.get_num_threads(),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepare", default=None, help="output dir: build the vocabulary and random weights")
    parser.add_argument("--vocab_texts", type=int, default=5000)
    parser.add_argument("--max_vocab", type=int, default=30000)
    parser.add_argument("--workers", type=int, default=2, help="tokenization processes for --prepare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--texts", default=None, help="JSON file {'texts': [...]} to classify")
    parser.add_argument("--prepared", default=None, help="dir written by --prepare")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.prepare:
        prepare(args)
    elif args.texts:
        worker(args)
    else:
        sys.exit("give --prepare DIR or --texts FILE --prepared DIR")


if __name__ == "__main__":
    main()
