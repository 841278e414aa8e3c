"""What the memory allocator does to CPU training: glibc's malloc against tcmalloc and jemalloc, same steps.

An AWD-LSTM training step allocates and frees tens of large tensors (activations, gradients, the decoder's logits)
every step. glibc hands large blocks back to the kernel and faults them in again on the next step, which shows
as system time; tcmalloc and jemalloc keep them. The allocator is chosen when a process starts
(``LD_PRELOAD``), so each contender runs in its own subprocess: ``--steps`` training steps of an LM of the shipped
LM's size (forward, loss, backward, fused AdamW, under bf16 autocast where the CPU has native bf16, as the LM
stages train by default) on the same random batches. The contenders take turns, ``--rounds`` times; reported per
contender: the median step's wall time, user and system CPU seconds per step, the speed-up against glibc, and
whether its losses equal glibc's bit for bit (the allocator changes where memory lives, not the arithmetic).
Contenders not installed are skipped (Debian: ``apt install libtcmalloc-minimal4 libjemalloc2``). Example::

    python scripts/bench_allocator.py --output ../runs/bench/allocator.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _machine import machine_info, write_results
from hf_ulmfit.cpu import FAST_ALLOCATORS, allocator_library


def contender_steps(args: argparse.Namespace) -> None:
    """Inside a subprocess: ``--steps`` training steps; prints one JSON line per step."""
    import resource
    import time

    import torch

    from hf_ulmfit import AWDLSTMConfig, AWDLSTMForCausalLM
    from hf_ulmfit.recipe import bf16_by_default

    torch.manual_seed(0)
    config = AWDLSTMConfig.for_language_model(
        vocab_size=args.vocab_size,
        embedding_size=args.embedding_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
    )
    model = AWDLSTMForCausalLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    batches = torch.randint(0, args.vocab_size, (args.steps, args.batch_size, args.bptt + 1))
    for batch in batches:
        start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_by_default()):
            loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        end = resource.getrusage(resource.RUSAGE_SELF)
        step = {
            "wall": time.perf_counter() - start,
            "user": end.ru_utime - usage.ru_utime,
            "system": end.ru_stime - usage.ru_stime,
            "loss": loss.item(),
        }
        print("@@" + json.dumps(step), flush=True)


def run_contender(library: str | None, args: argparse.Namespace) -> list[dict]:
    env = {**os.environ, "LD_PRELOAD": library or ""}
    command = [sys.executable, __file__, "--_contender", *sys.argv[1:]]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return [json.loads(line[2:]) for line in output.splitlines() if line.startswith("@@")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=12, help="Steps per contender per round (2 are warm-up)."
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vocab_size", type=int, default=12000)
    parser.add_argument("--embedding_size", type=int, default=300)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_hidden_layers", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=72)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--_contender", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._contender:
        return contender_steps(args)

    contenders = {"glibc": None}
    contenders.update({name: path for name in FAST_ALLOCATORS if (path := allocator_library(name))})
    steps = {name: [] for name in contenders}
    losses = {}
    for _ in range(args.rounds):
        for name, library in contenders.items():
            measured = run_contender(library, args)
            steps[name] += measured[2:]
            losses.setdefault(name, [step["loss"] for step in measured])
    results = {}
    for name, measured in steps.items():
        results[name] = {
            "library": contenders[name],
            "median_step_seconds": statistics.median(step["wall"] for step in measured),
            "user_seconds_per_step": statistics.mean(step["user"] for step in measured),
            "system_seconds_per_step": statistics.mean(step["system"] for step in measured),
            "losses_equal_glibc": losses[name] == losses["glibc"],
        }
    lines = []
    for name, result in results.items():
        result["speedup_vs_glibc"] = results["glibc"]["median_step_seconds"] / result["median_step_seconds"]
        lines.append(
            f"{name:>9}: {result['median_step_seconds']:.3f} s/step (median), "
            f"user {result['user_seconds_per_step']:.2f} s + system {result['system_seconds_per_step']:.2f} s "
            f"per step, {result['speedup_vs_glibc']:.2f}x glibc, losses equal to glibc's: "
            f"{result['losses_equal_glibc']}"
        )
    print("\n".join(lines))
    info = machine_info("torch", "transformers")
    write_results(
        {"machine": info, "settings": {**vars(args), "output": str(args.output)}, "results": results},
        "\n".join(lines),
        args.output,
        None,
    )


if __name__ == "__main__":
    main()
