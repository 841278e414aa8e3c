"""How often ``hf_ulmfit.tokenization_fastai`` gives the tokens fastai gives, on IMDb reviews.

fastai (its default rules + spaCy's English tokenizer, ``fastai.text.core.tokenize_texts``) runs in its own venv
(``/tmp/fastai-peer``, see ``shared/tools/setup-fastai-peer.sh``) on a seeded sample of reviews of
``imdb/test.parquet`` (the rules were developed on reviews of train/unsup.parquet, so this sample is held out).
fastai then builds its vocabulary from those tokens (``make_vocab``: min_freq 3, max_vocab 60000) and
numericalizes them; our tokenizer is built from that same vocabulary.

Metrics, each over all reviews of the sample:

* identical reviews: the fraction of reviews whose whole token sequence equals fastai's;
* token agreement: ``1 - sum(edit distance) / sum(len(fastai tokens))``, the token-level Levenshtein distance
  (insertions, deletions, substitutions of whole tokens) between our sequence and fastai's;

both for the token strings (before the vocabulary lookup) and for the ids that ``tokenizer(texts)`` returns.
Example (one command, about a minute)::

    .venv/bin/python scripts/bench_fastai_tokenizer_agreement.py --num_reviews 1000
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PEER_SCRIPT = r"""
import json, sys, time, warnings
from collections import Counter
warnings.filterwarnings("ignore")
from fastai.text.core import tokenize_texts
from fastai.text.data import Numericalize, make_vocab
import fastai, spacy

texts = json.load(open(sys.argv[1]))
start = time.perf_counter()
tokens = [list(t) for t in tokenize_texts(texts, n_workers=0)]
seconds = time.perf_counter() - start
vocab = make_vocab(Counter(t for doc in tokens for t in doc), min_freq=3, max_vocab=60000)
numericalize = Numericalize(vocab=vocab)
ids = [numericalize(doc).tolist() for doc in tokens]
json.dump({"tokens": tokens, "vocab": vocab, "ids": ids, "seconds": seconds,
           "versions": {"fastai": fastai.__version__, "spacy": spacy.__version__}}, open(sys.argv[2], "w"))
"""


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences of tokens (common prefix and suffix skipped first)."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start : len(a) - end], b[start : len(b) - end]
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def agreement(ours: list[list], theirs: list[list]) -> dict[str, float]:
    """Fraction of identical sequences, and token agreement ``1 - total edit distance / total fastai tokens``."""
    identical = sum(a == b for a, b in zip(ours, theirs))
    distance = sum(edit_distance(a, b) for a, b in zip(ours, theirs))
    total = sum(len(b) for b in theirs)
    return {"identical_reviews": identical / len(theirs), "token_agreement": 1 - distance / total}


def differences(ours: list[list[str]], theirs: list[list[str]], top: int) -> list[tuple[str, str, int]]:
    """The most frequent differing spans (fastai's, ours), one token of context on each side."""
    import difflib

    counts: collections.Counter = collections.Counter()
    for a, b in zip(ours, theirs):
        if a == b:
            continue
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=b, b=a, autojunk=False).get_opcodes():
            if tag != "equal":
                counts[(" ".join(b[max(0, i1 - 1) : i2 + 1]), " ".join(a[max(0, j1 - 1) : j2 + 1]))] += 1
    return [(fastai_span, our_span, n) for (fastai_span, our_span), n in counts.most_common(top)]


def run_fastai(python: str, texts: list[str]) -> dict:
    """Tokenizes and numericalizes ``texts`` with fastai in its venv."""
    with tempfile.TemporaryDirectory() as tmp:
        script, inputs, outputs = Path(tmp, "peer.py"), Path(tmp, "texts.json"), Path(tmp, "out.json")
        script.write_text(PEER_SCRIPT)
        inputs.write_text(json.dumps(texts))
        result = subprocess.run(
            [python, str(script), str(inputs), str(outputs)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"fastai failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return json.loads(outputs.read_text())


def our_tokens(tokenizer, texts: list[str]) -> list[list[str]]:
    """Our token strings before the vocabulary lookup (``xxbos`` added as the post-processor does)."""
    backend = tokenizer.backend_tokenizer
    split = backend.pre_tokenizer.pre_tokenize_str
    return [["xxbos"] + [word for word, _ in split(backend.normalizer.normalize_str(text))] for text in texts]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_reviews", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data_file", type=Path, default=REPO_ROOT / ".." / "shared" / "data" / "imdb" / "test.parquet"
    )
    parser.add_argument("--fastai_python", default="/tmp/fastai-peer/bin/python")
    parser.add_argument("--show", type=int, default=15, help="print the most frequent differences")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from hf_ulmfit.tokenization_fastai import build_fastai_tokenizer

    all_texts = pq.read_table(args.data_file, columns=["text"]).column("text").to_pylist()
    texts = random.Random(args.seed).sample(all_texts, args.num_reviews)
    print(
        f"{len(texts)} reviews sampled from {args.data_file.name} (seed {args.seed}); running fastai ...",
        flush=True,
    )
    fastai = run_fastai(args.fastai_python, texts)

    tokenizer = build_fastai_tokenizer(fastai["vocab"])
    start = time.perf_counter()
    ids = tokenizer(texts)["input_ids"]
    our_seconds = time.perf_counter() - start
    tokens = our_tokens(tokenizer, texts)
    results = {
        "tokens": agreement(tokens, fastai["tokens"]),
        "ids": agreement(ids, fastai["ids"]),
        "num_reviews": len(texts),
        "fastai_tokens": sum(map(len, fastai["tokens"])),
        "vocab_size": len(fastai["vocab"]),
        "reviews_per_second": {"ours": len(texts) / our_seconds, "fastai": len(texts) / fastai["seconds"]},
        "versions": fastai["versions"],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }

    print(
        f"fastai {fastai['versions']['fastai']}, spaCy {fastai['versions']['spacy']}; vocab {len(fastai['vocab'])}"
    )
    print(f"{'':8s} {'identical reviews':>18s} {'token agreement':>16s}")
    for level in ("tokens", "ids"):
        r = results[level]
        print(f"{level:8s} {r['identical_reviews']:18.2%} {r['token_agreement']:16.4%}")
    speed = results["reviews_per_second"]
    print(
        f"speed: ours {speed['ours']:.0f} reviews/s (tokenizer(texts)), fastai {speed['fastai']:.0f} (1 process)"
    )
    if args.show:
        print("\nmost frequent differences (fastai => ours):")
        for theirs, ours, n in differences(tokens, fastai["tokens"], args.show):
            print(f"  {n:4d}  {theirs!r} => {ours!r}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
