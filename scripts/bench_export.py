"""CPU inference of a trained ULMFiT classifier: fp32 PyTorch vs int8 (``quantize_for_cpu``) vs ONNX Runtime.

On the same ``--num_texts`` IMDb test reviews (a fixed random sample of ``imdb/test.parquet``) each variant is
measured from raw text to class probabilities, in batches of ``--batch_size`` (tokenization included), with
the same loop for all three: ``tokenizer(batch, padding=True)`` -> model -> softmax.

* accuracy against the reviews' labels, and agreement of the predicted labels with fp32;
* texts/s: each worker warms up on one batch, then runs ``--repeats`` timed passes over all texts; workers are
  launched in ``--rounds`` interleaved rounds (fp32, int8, onnx, fp32, ...) so that background load hits all
  variants alike; the best pass per variant is reported (the median too);
* memory: each run is a fresh subprocess whose peak resident set size is what the OS had to give it, PyTorch's
  and onnxruntime's native buffers included (``tracemalloc`` sees Python allocations only, and
  ``torch.profiler`` only PyTorch's). Every worker imports the same modules (torch, transformers, hf_ulmfit,
  onnxruntime) and then resets the kernel's peak mark (Linux ``/proc/self/clear_refs``; elsewhere the
  ``ru_maxrss`` of the whole process is used), so ``peak - baseline`` is the memory the variant itself needs:
  the model load (int8: the fp32 checkpoint is loaded, then quantized in place) and the inference. The RSS
  right after loading, before inference, is reported as well. Caveat for int8: transformers memory-maps
  ``model.safetensors`` and the mapping outlives the fp32 tensors (it stays even after ``del model``), so the
  checkpoint pages that quantization reads stay in int8's RSS; they are clean file pages the kernel can drop
  under pressure, but they are counted. "weights MiB" gives the size of the weights themselves.

Example::

    .venv/bin/python scripts/bench_export.py --model /tmp/demo1/3-classifier --output bench_export.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _machine import machine_info, reset_peak_rss, rss_mb

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "int8", "onnx")


# ----------------------------------------------------------------------------------------------------------
# Measuring (in the worker subprocess)


def torch_classifier(model_dir: str, quantize: bool, threads: int) -> tuple[Callable, float]:
    """Raw texts -> probabilities with the PyTorch model (int8 if ``quantize``); and its size in bytes."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_ulmfit.export import quantize_for_cpu

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    if quantize:
        model = quantize_for_cpu(model, inplace=True)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        size = buffer.getbuffer().nbytes

    def classify(texts: list[str]):
        with torch.inference_mode():
            encoded = tokenizer(texts, padding=True, return_tensors="pt")
            return model(**encoded).logits.softmax(-1).numpy()

    return classify, size


def onnx_classifier(onnx_dir: str, threads: int) -> tuple[Callable, float]:
    """Raw texts -> probabilities with onnxruntime (the exported tokenizer); and the graphs' size in bytes."""
    from hf_ulmfit.export import OnnxClassifier

    model = OnnxClassifier(onnx_dir, num_threads=threads)
    size = sum(path.stat().st_size for path in Path(onnx_dir).glob("*.onnx"))
    return (lambda texts: model.predict_proba(texts, batch_size=len(texts))), size


def run_worker(args: argparse.Namespace) -> None:
    """One variant in a fresh process: load, warm up, time ``--repeats`` passes; prints one JSON line."""
    import numpy as np
    import onnxruntime  # noqa: F401  (imported by every variant, so that baselines are comparable)
    import torch  # noqa: F401

    import hf_ulmfit.export  # noqa: F401

    data = json.loads(Path(args.texts_file).read_text())
    texts, labels = data["texts"], np.array(data["labels"])
    peak_was_reset = reset_peak_rss()
    baseline = rss_mb()
    start = time.perf_counter()
    if args.worker == "onnx":
        classify, size = onnx_classifier(args.onnx_dir, args.threads)
    else:
        classify, size = torch_classifier(args.model, args.worker == "int8", args.threads)
    load_seconds = time.perf_counter() - start
    after_load = rss_mb()
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    classify(batches[0])  # warm-up: lazy initialisation, first-call allocations
    seconds, probabilities = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        probabilities = np.concatenate([classify(batch) for batch in batches])
        seconds.append(time.perf_counter() - start)
    predictions = probabilities.argmax(-1)
    result = {
        "variant": args.worker,
        "seconds": seconds,
        "load_seconds": load_seconds,
        "accuracy": float((predictions == labels).mean()),
        "predictions": predictions.tolist(),
        "model_bytes": size,
        "rss_mb": {
            "baseline": baseline["current"],
            "after_load": after_load["current"],
            "peak": rss_mb()["peak"],
        },
        "peak_reset_after_imports": peak_was_reset,
    }
    print(json.dumps(result))


# ----------------------------------------------------------------------------------------------------------
# Orchestrating (in the parent process)


def load_test_sample(data_dir: Path, num_texts: int, seed: int, label2id: dict[str, int]) -> dict[str, list]:
    """A fixed random sample of IMDb test reviews (the file is sorted by label), labels mapped to model ids."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(data_dir / "imdb" / "test.parquet", columns=["text", "label"])
    rows = np.random.default_rng(seed).choice(
        table.num_rows, size=min(num_texts, table.num_rows), replace=False
    )
    texts = table.column("text").take(rows).to_pylist()
    labels = [label2id.get(str(label), label) for label in table.column("label").take(rows).to_pylist()]
    return {"texts": texts, "labels": labels}


def export_onnx(model_dir: str, onnx_dir: Path) -> float:
    """Exports the classifier (and its tokenizer) to ``onnx_dir``; returns the seconds it took."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_ulmfit.export import export_onnx_classifier

    start = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    export_onnx_classifier(model, onnx_dir, tokenizer=AutoTokenizer.from_pretrained(model_dir))
    return time.perf_counter() - start


def launch(variant: str, args: argparse.Namespace, texts_file: Path, onnx_dir: Path) -> dict[str, Any]:
    """Runs one worker subprocess and returns its JSON result."""
    command = [
        sys.executable, __file__, "--worker", variant, "--model", str(args.model), "--onnx_dir", str(onnx_dir),
        "--texts_file", str(texts_file), "--batch_size", str(args.batch_size), "--repeats", str(args.repeats),
        "--threads", str(args.threads),
    ]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"{variant} worker failed ({process.returncode}):\n{process.stderr[-4000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def summarize(runs: dict[str, list[dict[str, Any]]], num_texts: int) -> dict[str, dict[str, Any]]:
    """Per variant: accuracy, texts/s (best and median pass), memory, size, and ratios to fp32."""
    summary = {}
    for variant, results in runs.items():
        passes = [seconds for result in results for seconds in result["seconds"]]
        summary[variant] = {
            "accuracy": results[0]["accuracy"],
            "agreement_with_fp32": sum(
                a == b for a, b in zip(results[0]["predictions"], runs["fp32"][0]["predictions"])
            )
            / num_texts,
            "texts_per_s": num_texts / min(passes),
            "texts_per_s_median": num_texts / statistics.median(passes),
            "peak_rss_mb": max(r["rss_mb"]["peak"] for r in results),
            "peak_minus_baseline_mb": max(r["rss_mb"]["peak"] - r["rss_mb"]["baseline"] for r in results),
            "after_load_minus_baseline_mb": max(
                r["rss_mb"]["after_load"] - r["rss_mb"]["baseline"] for r in results
            ),
            "load_seconds": min(r["load_seconds"] for r in results),
            "model_mb": results[0]["model_bytes"] / 2**20,
        }
    for numbers in summary.values():
        numbers["speedup_vs_fp32"] = numbers["texts_per_s"] / summary["fp32"]["texts_per_s"]
        numbers["memory_vs_fp32"] = (
            numbers["peak_minus_baseline_mb"] / summary["fp32"]["peak_minus_baseline_mb"]
        )
    return summary


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    columns = [
        ("accuracy", "accuracy", "{:.3f}"),
        ("agree", "agreement_with_fp32", "{:.3f}"),
        ("texts/s", "texts_per_s", "{:.0f}"),
        ("(median)", "texts_per_s_median", "{:.0f}"),
        ("x fp32", "speedup_vs_fp32", "{:.2f}"),
        ("peak MiB", "peak_rss_mb", "{:.0f}"),
        ("+model MiB", "peak_minus_baseline_mb", "{:.0f}"),
        ("x fp32", "memory_vs_fp32", "{:.2f}"),
        ("loaded MiB", "after_load_minus_baseline_mb", "{:.0f}"),
        ("weights MiB", "model_mb", "{:.1f}"),
        ("load s", "load_seconds", "{:.2f}"),
    ]
    print(f"\n{'':6s}" + "".join(f"{title:>12s}" for title, _, _ in columns))
    for variant, numbers in summary.items():
        print(f"{variant:6s}" + "".join(f"{fmt.format(numbers[key]):>12s}" for _, key, fmt in columns))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=Path("/tmp/demo1/3-classifier"), help="trained classifier dir"
    )
    parser.add_argument("--data_dir", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument("--num_texts", type=int, default=500, help="IMDb test reviews to classify")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over all texts per worker")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of one worker per variant")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and onnxruntime intra-op threads; on a machine shared with other jobs more threads than idle "
        "cores makes OpenMP spin at every barrier (a 2-thread PyTorch forward measured 10x slower than 1 thread)",
    )
    parser.add_argument("--seed", type=int, default=0, help="which reviews are sampled")
    parser.add_argument(
        "--onnx_dir", type=Path, default=None, help="where to export (default: a temporary dir)"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--texts_file", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    # The tokenizer's Rust threads get the same budget as the model's, in every worker.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if args.threads > 1 else "false")
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    import torch

    info = machine_info(
        "torch",
        "onnxruntime",
        "transformers",
        threads=args.threads,
        quantized_engine=torch.backends.quantized.engine,
    )
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    config = json.loads((args.model / "config.json").read_text())
    sample = load_test_sample(args.data_dir, args.num_texts, args.seed, config.get("label2id") or {})
    num_texts = len(sample["texts"])
    print(
        f"data: {num_texts} IMDb test reviews, {sum(map(len, sample['texts'])) / num_texts:.0f} chars on average"
    )
    with tempfile.TemporaryDirectory() as scratch:
        onnx_dir = args.onnx_dir or Path(scratch) / "onnx"
        export_seconds = export_onnx(str(args.model), onnx_dir)
        print(f"exported ONNX to {onnx_dir} in {export_seconds:.1f}s", flush=True)
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(sample))
        runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for round_index in range(args.rounds):
            for variant in VARIANTS:
                runs[variant].append(launch(variant, args, texts_file, onnx_dir))
                print(f"round {round_index + 1}/{args.rounds}: {variant} done", flush=True)
    summary = summarize(runs, num_texts)
    print(f"\nmodel: {args.model}; {num_texts} texts, batch {args.batch_size}, {args.threads} threads")
    print_table(summary)
    if args.output:
        payload = {
            "machine": info,
            "model": str(args.model),
            "model_config": {k: config.get(k) for k in ("embedding_size", "hidden_size", "num_hidden_layers",
                                                         "vocab_size", "bptt", "max_len")},
            "num_texts": num_texts,
            "batch_size": args.batch_size,
            "onnx_export_seconds": export_seconds,
            "summary": summary,
            "runs": {v: [{k: r[k] for k in r if k != "predictions"} for r in rs] for v, rs in runs.items()},
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }  # fmt: skip
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
