"""What the tokenizer's 2026-12-02 pre-tokenization costs: the earlier one against the current one, same BPE.

The earlier tokenizer prepended a `▁` to every text (and its decoder dropped it again), so decoding only the new
tokens of a generated continuation lost the space before them; the current one prepends nothing and splits `<`
into a piece of its own (``tokenization_awd_lstm._build_backend``). This script trains the current tokenizer on
the IMDb training reviews, rebuilds the earlier variant around the same vocabulary and merges, and times
``encode_batch`` on the first ``--texts`` reviews, the two taking turns, best of ``--repeats``. Example::

    python scripts/bench_pretokenization.py
"""

import argparse
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Tokenizer

from _machine import machine_info
from hf_ulmfit.tokenization_awd_lstm import WORD_BOUNDARY, train_tokenizer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imdb" / "train.parquet"


def earlier_variant(current: Tokenizer) -> Tokenizer:
    """The current tokenizer with the earlier pre-tokenization: `▁` prepended, no `<` split, first `▁` decoded away."""
    state = json.loads(current.to_str())
    prepend = {"type": "Prepend", "prepend": WORD_BOUNDARY}
    state["normalizer"] = {"type": "Sequence", "normalizers": [state["normalizer"], prepend]}
    state["pre_tokenizer"] = state["pre_tokenizer"]["pretokenizers"][0]  # the Metaspace split alone
    state["decoder"]["decoders"][1]["prepend_scheme"] = "always"
    return Tokenizer.from_str(json.dumps(state))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine_info("tokenizers").items()))
    texts = pq.read_table(args.data, columns=["text"]).column("text").to_pylist()
    current = train_tokenizer(texts, vocab_size=30000, show_progress=False).backend_tokenizer
    tokenizers = {"earlier": earlier_variant(current), "current": current}
    sample, best = texts[: args.texts], dict.fromkeys(tokenizers, float("inf"))
    for _ in range(args.repeats):
        for name, tokenizer in tokenizers.items():
            started = time.perf_counter()
            tokenizer.encode_batch(sample)
            best[name] = min(best[name], time.perf_counter() - started)
    for name, tokenizer in tokenizers.items():
        tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(sample)) / len(sample)
        print(f"{name}: {len(sample) / best[name]:,.0f} reviews/s, {tokens:.1f} tokens/review")
    print(f"current / earlier speed: {best['earlier'] / best['current']:.2f}x")


if __name__ == "__main__":
    main()
