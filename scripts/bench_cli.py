"""How fast the command line answers what needs no training: help, a mistyped command or flag, and the imports
that bound them.

`hf-ulmfit --help`, `--version` and an unknown command are answered by the launcher (`hf_ulmfit_cli`) without
importing the package. A command's own help and its flag errors need its argument dataclasses, so they cost at
least the import of transformers' `TrainingArguments` (which imports torch), plus the package's. Each command runs
`--repeats` times in a fresh process (wall time, median and best); each row also gives its length in lines.
Example::

    python scripts/bench_cli.py --repeats 5
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_info

CLI = str(Path(sys.executable).parent / "hf-ulmfit")
COMMANDS = {
    "hf-ulmfit --help": [CLI, "--help"],
    "hf-ulmfit --version": [CLI, "--version"],
    "hf-ulmfit pretrian (unknown command)": [CLI, "pretrian"],
    "hf-ulmfit train-classifier --help": [CLI, "train-classifier", "--help"],
    "hf-ulmfit train-classifier --help-all": [CLI, "train-classifier", "--help-all"],
    "hf-ulmfit pretrain --learnng_rate 1 (mistyped)": [
        CLI,
        "pretrain",
        "--train_file",
        "x",
        "--learnng_rate",
        "1",
    ],
    "python -c 'import hf_ulmfit'": [sys.executable, "-c", "import hf_ulmfit"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'from transformers import TrainingArguments'": [
        sys.executable,
        "-c",
        "from transformers import TrainingArguments",
    ],
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    info = machine_info("torch", "transformers")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| command | exit status | lines of output | seconds, median | best |")
    print("|---|---|---|---|---|")
    for name, command in COMMANDS.items():
        times, result = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
        lines = len((result.stdout + result.stderr).splitlines())
        print(
            f"| `{name}` | {result.returncode} | {lines} | {statistics.median(times):.2f} | {min(times):.2f} |"
        )


if __name__ == "__main__":
    main()
