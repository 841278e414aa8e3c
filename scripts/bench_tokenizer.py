"""Tokenization throughput on IMDb reviews: our tokenizer vs fastai's best vs the raw Rust backend.

One run measures, on the same N reviews of ``imdb/train.parquet``:

  (a) ours: ``tokenizer(list_of_texts)`` with the tokenizer of ``hf_ulmfit.tokenization_awd_lstm`` (trained
      here on the IMDb train texts, or loaded from ``--tokenizer``), i.e. the public call a user makes;
  (b) fastai: ``fastai.text.core.tokenize_texts`` (spaCy + fastai rules), in-process and with 2 worker
      processes, run in a separate venv through ``scripts/_fastai_tokenize_peer.py``;
  (c) raw: the Rust backend's ``encode_batch`` on the same tokenizer (the floor for (a)).

Each measurement has a warm-up and keeps the best of several repeats. Example::

    .venv/bin/python scripts/bench_tokenizer.py --output bench_tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _machine import machine_info

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "_fastai_tokenize_peer.py"


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, best: dict[str, float]
) -> dict[str, Any]:
    """Warms up each function, then times them in turn ``repeats`` times, keeping each one's best time in
    ``best`` (interleaving gives them the same share of any background load). Returns the last results."""
    results = {name: fn() for name, fn in fns.items()}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    return results


def run_fastai(python: str, texts: list[str], repeats: int) -> dict[str, Any]:
    """Times fastai's tokenization in its own venv; returns the peer script's JSON."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(texts, f)
        path = f.name
    try:
        cmd = [python, str(PEER_SCRIPT), "--texts", path, "--workers", "0", "2", "--repeats", str(repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"fastai peer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--num_reviews", type=int, default=5000, help="reviews to tokenize (from train.parquet)"
    )
    parser.add_argument("--data_dir", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument(
        "--tokenizer", type=str, default=None, help="saved tokenizer dir (default: train one)"
    )
    parser.add_argument("--vocab_size", type=int, default=30000, help="vocab size when training")
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed repeats for ours and raw (half before, half after fastai)",
    )
    parser.add_argument("--fastai_python", type=str, default="/tmp/fastai-peer/bin/python")
    parser.add_argument("--fastai_repeats", type=int, default=3, help="timed repeats per fastai setting")
    parser.add_argument("--skip_fastai", action="store_true", help="only time ours and raw")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

    info = machine_info(
        "tokenizers",
        "transformers",
        TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "(unset: parallel)"),
        RAYON_NUM_THREADS=os.environ.get("RAYON_NUM_THREADS", "(unset)"),
    )
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)

    all_texts = (
        pq.read_table(args.data_dir / "imdb" / "train.parquet", columns=["text"]).column("text").to_pylist()
    )
    texts = all_texts[: args.num_reviews]
    print(f"data: {len(texts)} IMDb train reviews, {sum(map(len, texts)) / len(texts):.0f} chars on average")

    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        source = args.tokenizer
    else:
        start = time.perf_counter()
        tokenizer = train_tokenizer(all_texts, vocab_size=args.vocab_size, show_progress=False)
        source = f"trained on {len(all_texts)} IMDb train reviews, vocab {args.vocab_size}"
        print(f"trained tokenizer in {time.perf_counter() - start:.1f}s ({len(tokenizer)} tokens)")
    backend = tokenizer.backend_tokenizer

    results: dict[str, dict[str, Any]] = {}

    def record(name: str, seconds: float, num_tokens: int) -> None:
        results[name] = {
            "seconds": seconds,
            "reviews_per_s": len(texts) / seconds,
            "tokens_per_s": num_tokens / seconds,
            "tokens_per_review": num_tokens / len(texts),
        }

    # Ours and raw are timed in two halves, before and after fastai, so that all three see similar machine load.
    ours_name, raw_name = "ours: tokenizer(texts)", "raw Rust: backend.encode_batch(texts)"
    fns = {ours_name: lambda: tokenizer(texts), raw_name: lambda: backend.encode_batch(texts)}
    best: dict[str, float] = {}
    outputs = time_interleaved(fns, (args.repeats + 1) // 2, best)

    fastai_versions = None
    if not args.skip_fastai:
        print("timing fastai (takes a minute or two) ...", flush=True)
        peer = run_fastai(args.fastai_python, texts, args.fastai_repeats)
        fastai_versions = peer["versions"]
        for r in peer["results"]:
            label = "in-process" if r["n_workers"] == 0 else f"{r['n_workers']} workers"
            record(f"fastai tokenize_texts ({label})", min(r["seconds"]), r["num_tokens"])

    time_interleaved(fns, args.repeats // 2, best)
    record(ours_name, best[ours_name], sum(map(len, outputs[ours_name]["input_ids"])))
    record(raw_name, best[raw_name], sum(len(e.ids) for e in outputs[raw_name]))
    results = {
        name: results[name] for name in sorted(results, key=lambda n: not n.startswith(("ours", "raw")))
    }

    print(f"\ntokenizer: {source}")
    if fastai_versions:
        print("fastai peer: " + ", ".join(f"{k} {v}" for k, v in fastai_versions.items()))
    print(f"\n{'':42s} {'reviews/s':>10s} {'tokens/s':>12s} {'tokens/review':>14s}")
    for name, r in results.items():
        print(
            f"{name:42s} {r['reviews_per_s']:10.0f} {r['tokens_per_s']:12.0f} {r['tokens_per_review']:14.1f}"
        )

    ours, raw = results[ours_name]["reviews_per_s"], results[raw_name]["reviews_per_s"]
    summary: dict[str, float] = {"ours_over_raw": ours / raw}
    print(f"\nours / raw encode_batch: {ours / raw:.2f}")
    fastai_best = max(
        (r["reviews_per_s"] for n, r in results.items() if n.startswith("fastai")), default=None
    )
    if fastai_best:
        summary["ours_over_fastai_best"] = ours / fastai_best
        print(f"ours / fastai best: {ours / fastai_best:.1f}x (reviews/s)")

    if args.output:
        payload = {
            "machine": info,
            "num_reviews": len(texts),
            "tokenizer": source,
            "fastai_versions": fastai_versions,
            "results": results,
            "summary": summary,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        args.output.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
