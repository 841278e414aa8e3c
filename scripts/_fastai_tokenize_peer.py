"""fastai side of ``scripts/bench_tokenizer.py``; runs inside a separate venv that has fastai installed.

Times ``fastai.text.core.tokenize_texts`` (spaCy word tokenizer + fastai's default text rules) on the texts
of a JSON file, once per requested ``n_workers``, and prints one JSON line with the results on stdout.
``n_workers=0`` tokenizes in the calling process; ``n_workers >= 1`` starts a process pool per call, as
fastai does, so pool start-up is part of the measured time (it is part of what a user pays).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", required=True, help="JSON file holding a list of strings")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="n_workers values to time")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting; the best is kept")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    import fastai
    import spacy
    from fastai.text.core import tokenize_texts

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)

    results = []
    for n_workers in args.workers:
        tokenize_texts(texts[:200], n_workers=n_workers)  # warm-up: spaCy set-up, imports in workers
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tokens = tokenize_texts(texts, n_workers=n_workers)
            seconds.append(time.perf_counter() - start)
        results.append(
            {"n_workers": n_workers, "seconds": seconds, "num_tokens": sum(len(t) for t in tokens)}
        )
    versions = {"fastai": fastai.__version__, "spacy": spacy.__version__}
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
