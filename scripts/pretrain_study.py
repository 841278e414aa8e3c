"""Which stage-1 setting buys the most language model per CPU-hour: short `hf-ulmfit pretrain` runs side by side.

Each candidate is one `hf-ulmfit pretrain` run (a size and a precision) with the same tokenizer, data, batch shape,
schedule and seed; candidates run two at a time, one torch thread each, so that every pair shares the machine
under the same load and the ratios of one run hold. Two questions, one table:

* **Precision.** `--bf16` (autocast; oneDNN's LSTM and the GEMMs in bfloat16, fp32 weights) is kept only if its
  validation perplexity after the same number of tokens stays within 2% of fp32's.
* **Size.** At equal CPU time (each candidate's `max_steps` is scaled by its measured speed), which size reaches
  the lowest validation perplexity per *word* (total NLL over whitespace words, so that vocabularies compare).

A candidate is `name:embedding/hidden/layers:precision:steps`, e.g. `m-bf16:400/640/3:bf16:300`; for equal CPU time,
give each size the steps its measured speed buys. Finished runs are skipped, so the study resumes. Example (the study of the shipped LM)::

    python scripts/pretrain_study.py --work_dir ../runs/study --tokenizer ../runs/study/tok12000 \\
        --candidates m-bf16:400/640/3:bf16:300 m-fp32:400/640/3:fp32:300 s-bf16:300/512/3:bf16:460
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_info, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / ".." / "shared" / "data"
BATCH, BPTT = 64, 72


def parse_candidate(text: str) -> dict:
    name, sizes, precision, steps = text.split(":")
    embedding, hidden, layers = (int(v) for v in sizes.split("/"))
    if precision not in ("bf16", "fp32"):
        raise SystemExit(f"{text!r}: precision must be bf16 or fp32")
    return {
        "name": name,
        "embedding": embedding,
        "hidden": hidden,
        "layers": layers,
        "precision": precision,
        "steps": int(steps),
    }


def command(candidate: dict, args: argparse.Namespace) -> list[str]:
    overrides = (
        f"embedding_size={candidate['embedding']},hidden_size={candidate['hidden']},"
        f"num_hidden_layers={candidate['layers']}"
    )
    cmd = [
        str(Path(sys.executable).parent / "hf-ulmfit"),
        "pretrain",
        "--train_file",
        str(args.train_file),
        "--validation_file",
        str(args.validation_file),
        "--tokenizer_name",
        str(args.tokenizer),
        "--config_overrides",
        overrides,
        "--output_dir",
        str(args.work_dir / candidate["name"]),
        "--max_steps",
        str(candidate["steps"]),
        "--learning_rate",
        str(args.learning_rate),
        "--per_device_train_batch_size",
        str(BATCH),
        "--per_device_eval_batch_size",
        str(BATCH),
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "25",
        "--seed",
        "42",
        "--disable_tqdm",
        "true",
    ]
    return cmd + (["--bf16", "true", "--use_cpu", "true"] if candidate["precision"] == "bf16" else [])


def words_per_token(tokenizer_dir: Path, validation_file: Path) -> tuple[int, int]:
    """Tokens (with each document's <bos>) and whitespace words of the validation texts."""
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    texts = pq.read_table(validation_file, columns=["text"]).column("text").to_pylist()
    tokens = sum(len(ids) for ids in tokenizer(texts)["input_ids"])
    return tokens, sum(len(text.split()) for text in texts)


def result_of(run_dir: Path) -> dict | None:
    path = run_dir / "all_results.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--candidates", nargs="+", required=True)
    parser.add_argument("--train_file", type=Path, default=DATA / "wikipedia-en" / "train.parquet")
    parser.add_argument("--validation_file", type=Path, default=DATA / "wikipedia-en" / "valid.parquet")
    parser.add_argument("--learning_rate", type=float, default=5e-3)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    candidates = [parse_candidate(text) for text in args.candidates]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

    # A pool of `parallel` runs: the next candidate starts as soon as one finishes.
    waiting = [c for c in candidates if result_of(args.work_dir / c["name"]) is None]
    running = []
    while waiting or running:
        while waiting and len(running) < args.parallel:
            candidate = waiting.pop(0)
            log = open(args.work_dir / f"{candidate['name']}.log", "w")  # noqa: SIM115
            print(
                f"[{time.strftime('%H:%M:%S')}] {candidate['name']}: {candidate['steps']} steps", flush=True
            )
            running.append(
                (subprocess.Popen(command(candidate, args), stdout=log, stderr=log, env=env), log, candidate)
            )
        time.sleep(5)
        for entry in list(running):
            process, log, candidate = entry
            if process.poll() is None:
                continue
            log.close()
            running.remove(entry)
            if process.returncode != 0:
                raise SystemExit(f"{candidate['name']} failed: see {log.name}")
            print(f"[{time.strftime('%H:%M:%S')}] {candidate['name']}: done", flush=True)

    tokens, words = words_per_token(args.tokenizer, args.validation_file)
    rows = []
    for candidate in candidates:
        result = result_of(args.work_dir / candidate["name"])
        config = json.loads((args.work_dir / candidate["name"] / "config.json").read_text())
        parameters = sum(
            4 * (n_in + n_out + 2) * n_out
            for n_in, n_out in zip(
                [config["embedding_size"]] + [config["hidden_size"]] * (config["num_hidden_layers"] - 1),
                [config["hidden_size"]] * (config["num_hidden_layers"] - 1) + [config["embedding_size"]],
            )
        ) + config["vocab_size"] * (config["embedding_size"] + 1)
        steps = candidate["steps"]
        rows.append(
            {
                **candidate,
                "parameters": parameters,
                "tokens_seen": steps * BATCH * BPTT,
                "train_cpu_hours": result["train_runtime"] / 3600,  # one thread: wall time is its CPU time
                "tokens_per_second": steps * BATCH * BPTT / result["train_runtime"],
                "valid_ppl_token": result["eval_perplexity"],
                "valid_ppl_word": math.exp(result["eval_loss"] * tokens / words),
            }
        )
    lines = [
        f"validation: {tokens} tokens, {words} words ({tokens / words:.3f} tokens per word)",
        "| candidate | size | precision | params | steps | tokens | CPU h | tokens/s | ppl/token | ppl/word |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['embedding']}/{r['hidden']}/{r['layers']} | {r['precision']} | "
            f"{r['parameters'] / 1e6:.1f}M | {r['steps']} | {r['tokens_seen'] / 1e6:.2f}M | "
            f"{r['train_cpu_hours']:.3f} | {r['tokens_per_second']:.0f} | {r['valid_ppl_token']:.1f} | "
            f"{r['valid_ppl_word']:.1f} |"
        )
    print("\n" + "\n".join(lines))
    result = {
        "machine": machine_info("torch", "transformers"),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    write_results(result, "\n".join(lines), args.output, None)


if __name__ == "__main__":
    main()
