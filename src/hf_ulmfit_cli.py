"""The ``hf-ulmfit`` command. It answers ``--help``, ``--version`` and an unknown command at once, and hands every
command to ``hf_ulmfit.cli``.

It lives beside the package, not in it, on purpose: importing ``hf_ulmfit`` registers the model with the
transformers Auto classes, which imports torch and the transformers modeling code, and that takes seconds. This
module imports neither.
"""

import argparse
import sys

# Every command and its one-line description, in the order `hf-ulmfit --help` lists them.
COMMANDS = {
    "pretrain": "Stage 1: train a tokenizer and an AWD-LSTM LM from scratch on general text.",
    "finetune-lm": "Stage 2: fine-tune the LM on the target task's texts.",
    "train-classifier": "Stage 3: train the classifier with gradual unfreezing.",
    "predict": "Classify texts with a trained classifier.",
    "demo": "Stages 2 and 3 from the shipped LM on the small samples shipped with the package, then predict.",
    "convert-fastai": "Convert a fastai AWD-LSTM checkpoint (LM or classifier).",
    "combine-bidirectional": "One model from a forward and a backward classifier: the paper's ensemble (section 3.4).",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        from hf_ulmfit.cli import run_command

        return run_command(argv[0], argv[1:])
    if argv and argv[0] == "--version":
        from importlib.metadata import version

        print(f"hf-ulmfit {version('hf-ulmfit')}")
        return 0
    asked = bool(argv) and argv[0] in ("-h", "--help")
    if argv and not asked:
        print(f"hf-ulmfit: unknown command {argv[0]!r}\n", file=sys.stderr)
    usage().print_help(sys.stdout if asked else sys.stderr)
    return 0 if asked else 2


def usage() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-ulmfit",
        description="ULMFiT with an AWD-LSTM as a Hugging Face transformers model.",
        epilog="`hf-ulmfit <command> --help` lists a command's flags.",
    )
    parser.add_argument("--version", action="store_true", help="Print the version and exit.")
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    for name, description in COMMANDS.items():
        commands.add_parser(name, help=description)
    return parser


if __name__ == "__main__":
    sys.exit(main())
