"""fastai side of ``scripts/reproduce_accuracy.py``: fastai's own ULMFiT recipe, from an LM it pretrains itself.

Runs inside the venv with fastai (``../shared/tools/setup-fastai-peer.sh``), one torch thread, and prints one line
``@@{json}`` with the result. Every stage saves its output under ``WORK_DIR/fastai`` and is skipped when that output
exists, so an interrupted campaign continues where it stopped.

    python _fastai_ulmfit_peer.py classify --work_dir RUN_DIR --lm_corpus trec --seed 0 [--pretrain_steps 2000]

The stages, each as fastai's documentation and ULMFiT tutorial do them:

1. ``pretrain``: ``LMLearner`` with ``get_language_model(AWD_LSTM, ...)`` on the shared Wikipedia corpus, tokenized
   by fastai (spaCy + fastai's rules), vocabulary capped at the size of ours. The budget equals that of our
   stage-1 LM: the same model size, the same number of optimizer steps, the same batch shape (64 x 72 tokens):
   documents are drawn (seed 0) until one epoch holds exactly ``pretrain_steps`` batches, trained with
   ``fit_one_cycle(1, 5e-3)``.
2. ``finetune``: ``language_model_learner`` on the task's texts (the same files as ours, 5% held out) with a
   vocabulary built from them (fastai's defaults), the Wikipedia weights mapped onto it by ``load_pretrained``,
   ``drop_mult=0.3``; one frozen epoch at 2e-2 when the budget has several epochs, the rest unfrozen at ``lr``.
   The epochs, batch size and rate of our stage 2 are passed in by the parent.
3. ``classify``: ``text_classifier_learner`` (``drop_mult=0.5``) on the task's labelled texts with the fine-tuned
   encoder, then fastai's gradual unfreezing with discriminative rates (``slice(lr / 2.6**4, lr)``) and one-cycle
   schedules: ``fit_one_cycle(1, 2e-2)``; ``freeze_to(-2)``, one epoch at 1e-2; ``freeze_to(-3)``, one epoch at
   5e-3; ``unfreeze()``, the remaining epochs at 1e-3. The test set is the validation set, as on our side.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
import warnings
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BATCH_SIZE, SEQ_LEN = 64, 72


def model_config(kind: str, args: argparse.Namespace) -> dict:
    from fastai.text.all import awd_lstm_clas_config, awd_lstm_lm_config

    base = awd_lstm_lm_config if kind == "lm" else awd_lstm_clas_config
    return {**base, "emb_sz": args.emb_sz, "n_hid": args.n_hid, "n_layers": args.n_layers}


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} fastai peer: {message}", flush=True)


def progress_callback(every: int = 100):
    """A fastai callback that logs the smoothed training loss every ``every`` steps (the bars are turned off)."""
    from fastai.callback.core import Callback

    class LogProgress(Callback):
        order = 90  # after the Recorder has smoothed the loss

        def after_batch(self):
            if self.training and self.iter % every == 0:
                log(f"epoch {self.epoch} step {self.iter}/{self.n_iter}: loss {float(self.smooth_loss):.3f}")

    return LogProgress()


# ----------------------------------------------------------------------------------------------------------
# Stage 1


def tokenize_until(needed: int, max_docs: int | None) -> tuple[list[list[str]], Counter]:
    """fastai's tokens of Wikipedia articles in a seed-0 random order, the last one cut so that exactly ``needed``
    tokens are kept (the budget), and the token counts of all of them (for the vocabulary)."""
    import numpy as np
    import pandas as pd
    from fastai.text.all import tokenize_df

    documents = pd.read_parquet(DATA / "wikipedia-en" / "train.parquet")[["text"]].head(max_docs)
    order = np.random.default_rng(0).permutation(len(documents))
    kept, counts, total = [], Counter(), 0
    for start in range(0, len(order), 1000):
        frame, chunk_counts = tokenize_df(documents.iloc[order[start : start + 1000]], "text", n_workers=1)
        counts += chunk_counts
        for tokens in frame["text"]:
            kept.append(list(tokens[: needed - total]))
            total += len(kept[-1])
            if total == needed:
                return kept, counts
        log(f"tokenized {start + len(frame):,} articles: {total:,} of {needed:,} tokens")
    raise SystemExit(f"The corpus has {total:,} fastai tokens, fewer than the budget's {needed:,}.")


def pretrain(args: argparse.Namespace) -> Path:
    import numpy as np
    import pandas as pd
    import torch
    from fastai.text.all import (
        AWD_LSTM,
        CrossEntropyLossFlat,
        DataLoaders,
        LMDataLoader,
        LMLearner,
        Numericalize,
        Perplexity,
        accuracy,
        awd_lstm_lm_split,
        get_language_model,
        make_vocab,
        set_seed,
        tokenize_df,
    )

    folder = Path(args.work_dir) / "fastai" / "lm-wiki"
    if (folder / "lm.pth").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    needed = BATCH_SIZE * SEQ_LEN * args.pretrain_steps + 1
    tokens_file = folder / "tokens.pkl"
    if tokens_file.exists():
        train_tokens, valid_tokens, counts = pickle.loads(tokens_file.read_bytes())
    else:
        train_tokens, counts = tokenize_until(needed, args.wiki_docs)
        valid_frame, _ = tokenize_df(
            pd.read_parquet(DATA / "wikipedia-en" / "valid.parquet")[["text"]], "text", n_workers=1
        )
        valid_tokens = list(valid_frame["text"])
        tokens_file.write_bytes(pickle.dumps((train_tokens, valid_tokens, counts)))
    tokenize_seconds = time.time() - started

    vocab = make_vocab(counts, max_vocab=args.vocab_size)
    numericalize = Numericalize(vocab=vocab)
    chosen = [numericalize(tokens) for tokens in train_tokens]
    valid = [numericalize(tokens) for tokens in valid_tokens]

    set_seed(0)
    train_loader = LMDataLoader(chosen, bs=BATCH_SIZE, seq_len=SEQ_LEN, shuffle=True)
    valid_loader = LMDataLoader(valid, bs=BATCH_SIZE, seq_len=SEQ_LEN)
    log(f"pretraining: {len(train_loader)} steps of {BATCH_SIZE}x{SEQ_LEN}, vocabulary {len(vocab)}")
    model = get_language_model(AWD_LSTM, len(vocab), config=model_config("lm", args))
    learn = LMLearner(
        DataLoaders(train_loader, valid_loader, device=torch.device("cpu")),
        model,
        loss_func=CrossEntropyLossFlat(),
        splitter=awd_lstm_lm_split,
        metrics=[accuracy, Perplexity()],
        cbs=progress_callback(),
    )
    with learn.no_bar():
        learn.fit_one_cycle(1, 5e-3)
        valid_loss = float(learn.validate()[0])
    torch.save(learn.model.state_dict(), folder / "lm.tmp")
    (folder / "vocab.pkl").write_bytes(pickle.dumps(vocab))
    summary = {
        "steps": len(train_loader),
        "tokens_seen": len(train_loader) * BATCH_SIZE * SEQ_LEN,
        "vocab_size": len(vocab),
        "valid_perplexity": float(np.exp(valid_loss)),
        "tokenize_seconds": tokenize_seconds,
        "wall_seconds": time.time() - started,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "lm.tmp").replace(folder / "lm.pth")
    log(f"pretrained: {summary}")
    return folder


# ----------------------------------------------------------------------------------------------------------
# Stage 2


def finetune(args: argparse.Namespace) -> Path:
    import numpy as np
    import pandas as pd
    import torch
    from fastai.text.all import (
        AWD_LSTM,
        ColReader,
        DataBlock,
        Perplexity,
        RandomSplitter,
        TextBlock,
        accuracy,
        language_model_learner,
        set_seed,
    )

    wiki = pretrain(args)
    corpus = args.lm_corpus
    folder = Path(args.work_dir) / "fastai" / f"lm-{corpus}"
    if (folder / "encoder.pth").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    set_seed(0)
    texts = pd.read_parquet(Path(args.work_dir) / "data" / f"{corpus}-lm.parquet")
    block = DataBlock(
        blocks=TextBlock.from_df("text", is_lm=True, seq_len=SEQ_LEN, n_workers=1),
        get_x=ColReader("text"),
        splitter=RandomSplitter(0.05, seed=0),
    )
    dls = block.dataloaders(texts, bs=args.lm_batch_size, num_workers=0, device=torch.device("cpu"))
    learn = language_model_learner(
        dls,
        AWD_LSTM,
        config=model_config("lm", args),
        drop_mult=0.3,
        pretrained=False,
        metrics=[accuracy, Perplexity()],
        cbs=progress_callback(),
    )
    learn.load_pretrained(wiki / "lm.pth", wiki / "vocab.pkl")
    log(f"fine-tuning the LM on {corpus}: {args.lm_epochs} epochs of {len(dls.train)} steps")
    with learn.no_bar():
        unfrozen_epochs = args.lm_epochs
        if args.lm_epochs > 1:
            learn.fit_one_cycle(1, 2e-2)
            unfrozen_epochs -= 1
        learn.unfreeze()
        learn.fit_one_cycle(unfrozen_epochs, args.lm_lr)
        valid_loss = float(learn.validate()[0])
    learn.path = folder
    learn.model_dir = "."
    learn.save_encoder("encoder.tmp")
    (folder / "vocab.pkl").write_bytes(pickle.dumps(list(dls.vocab)))
    summary = {
        "valid_perplexity": float(np.exp(valid_loss)),
        "vocab_size": len(dls.vocab),
        "wall_seconds": time.time() - started,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "encoder.tmp.pth").replace(folder / "encoder.pth")
    log(f"fine-tuned on {corpus}: {summary}")
    return folder


# ----------------------------------------------------------------------------------------------------------
# Stage 3


def classify(args: argparse.Namespace) -> dict:
    import pandas as pd
    import torch
    from fastai.text.all import (
        AWD_LSTM,
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        TextBlock,
        accuracy,
        set_seed,
        text_classifier_learner,
    )
    from sklearn.metrics import f1_score

    lm = finetune(args)
    started = time.time()
    train, test = (pd.read_parquet(path) for path in (args.train_file, args.test_file))
    frame = pd.concat([train.assign(is_valid=False), test.assign(is_valid=True)], ignore_index=True)
    vocab = pickle.loads((lm / "vocab.pkl").read_bytes())
    set_seed(args.seed)
    block = DataBlock(
        blocks=(TextBlock.from_df("text", vocab=vocab, seq_len=SEQ_LEN, n_workers=1), CategoryBlock),
        get_x=ColReader("text"),
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
    )
    dls = block.dataloaders(frame, bs=args.batch_size, num_workers=0, device=torch.device("cpu"))
    learn = text_classifier_learner(
        dls,
        AWD_LSTM,
        config=model_config("classifier", args),
        drop_mult=0.5,
        pretrained=False,
        metrics=accuracy,
    )
    learn.path, learn.model_dir = lm, "."
    learn.load_encoder("encoder")
    if args.epochs < 4:
        raise SystemExit("fastai's gradual unfreezing needs at least 4 epochs.")
    with learn.no_bar():
        learn.fit_one_cycle(1, 2e-2)
        learn.freeze_to(-2)
        learn.fit_one_cycle(1, slice(1e-2 / 2.6**4, 1e-2))
        learn.freeze_to(-3)
        learn.fit_one_cycle(1, slice(5e-3 / 2.6**4, 5e-3))
        learn.unfreeze()
        learn.fit_one_cycle(args.epochs - 3, slice(1e-3 / 2.6**4, 1e-3))
        probabilities, targets = learn.get_preds(dl=dls.valid)
    predictions = probabilities.argmax(-1)
    return {
        "accuracy": float((predictions == targets).float().mean()),
        "macro_f1": float(f1_score(targets.numpy(), predictions.numpy(), average="macro")),
        "stage3_seconds": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("pretrain", "finetune", "classify"))
    parser.add_argument("--work_dir", required=True)
    parser.add_argument(
        "--lm_corpus", default="trec", help="Stage 2 reads WORK_DIR/data/{lm_corpus}-lm.parquet."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_file")
    parser.add_argument("--test_file")
    parser.add_argument("--epochs", type=int, default=6, help="Stage 3 epochs in all.")
    parser.add_argument("--batch_size", type=int, default=64, help="Stage 3 batch size.")
    parser.add_argument("--lm_epochs", type=int, default=1)
    parser.add_argument("--lm_batch_size", type=int, default=64)
    parser.add_argument("--lm_lr", type=float, default=4e-3)
    parser.add_argument("--pretrain_steps", type=int, default=2000)
    parser.add_argument(
        "--wiki_docs", type=int, help="Tokenize only this many Wikipedia articles (smoke tests)."
    )
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--emb_sz", type=int, default=200)
    parser.add_argument("--n_hid", type=int, default=400)
    parser.add_argument("--n_layers", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    stage = {"pretrain": pretrain, "finetune": finetune, "classify": classify}[args.stage]
    result = stage(args)
    print("@@" + json.dumps(result if isinstance(result, dict) else {"folder": str(result)}), flush=True)


if __name__ == "__main__":
    main()
