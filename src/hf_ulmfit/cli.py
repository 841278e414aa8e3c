"""The commands of ``hf-ulmfit``: the three stages of ULMFiT, prediction, a demo, conversion and the ensemble.

Arguments follow the transformers example scripts (``HfArgumentParser``): every ``TrainingArguments`` flag works,
plus those of ``ModelArguments``, ``DataArguments`` and ``ULMFiTTrainingArguments``. ``hf-ulmfit <command> --help``
shows the command's own flags with the defaults it uses; ``--help-all`` adds every ``TrainingArguments`` flag.

``hf-ulmfit`` itself is ``hf_ulmfit_cli``, beside the package: it answers ``--help`` and an unknown command
without importing the package, and hands each command to ``run_command``. The training stack (the stages, the
Trainer, ``datasets``) is imported only when a command needs it.
"""

import argparse
import difflib
import json
import logging
import sys
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hf_ulmfit_cli import COMMANDS

from .errors import UsageError

if TYPE_CHECKING:
    from transformers import HfArgumentParser

# The flags `hf-ulmfit STAGE --help` shows, by group (`--help-all` shows every flag). Each stage's defaults are
# the recipe's (hf_ulmfit.recipe).
_MODEL = ["model_name_or_path", "tokenizer_name", "config_overrides", "dropout_multiplier", "license",
          "backwards"]  # fmt: skip
_DATA = ["train_file", "validation_file", "text_column_name", "validation_split_percentage",
         "max_train_samples", "max_eval_samples", "preprocessing_num_workers", "dataset_name"]  # fmt: skip
_TRAINING = ["output_dir", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
             "per_device_eval_batch_size", "weight_decay", "seed", "bf16", "eval_strategy", "save_strategy",
             "save_steps", "logging_steps", "resume_from_checkpoint", "push_to_hub", "hub_model_id"]  # fmt: skip
_ULMFIT = [
    "discriminative_lr_factor",
    "ulmfit_lr_scheduler",
    "stlr_cut_frac",
    "stlr_ratio",
    "paper_adam_betas",
]
_LM = ["variable_bptt", "scale_lr_with_window", "shuffle_documents"]
STAGE_HELP = {
    "pretrain": {
        "model": ["config_name", "vocab_size", *_MODEL[1:]],
        "data": _DATA,
        "training": _TRAINING,
        "ULMFiT": [*_ULMFIT, *_LM],
    },
    "finetune-lm": {"model": _MODEL, "data": _DATA, "training": _TRAINING, "ULMFiT": [*_ULMFIT, *_LM]},
    "train-classifier": {
        "model": _MODEL,
        "data": [*_DATA[:2], "label_column_name", *_DATA[2:]],
        "training": _TRAINING,
        "ULMFiT": [
            *_ULMFIT,
            "gradual_unfreezing",
            "unfreeze_every_n_epochs",
            "few_label_schedule",
            "freeze_encoder",
        ],
    },
}

# The function of hf_ulmfit.stages that runs each training command.
STAGE_FUNCTIONS = {
    "pretrain": "pretrain",
    "finetune-lm": "finetune_language_model",
    "train-classifier": "train_classifier",
}


@dataclass
class PredictArguments:
    model_name_or_path: str = field(metadata={"help": "A trained classifier: directory or Hub id."})
    input_file: str | None = field(
        default=None, metadata={"help": "Texts to classify (csv, json/jsonl, parquet, txt)."}
    )
    text: list[str] | None = field(default=None, metadata={"help": "Texts given on the command line."})
    text_column_name: str = field(
        default="text", metadata={"help": "Column of --input_file holding the texts."}
    )
    output_file: str | None = field(default=None, metadata={"help": "Write predictions here as JSON lines."})
    batch_size: int = field(default=32, metadata={"help": "Texts per forward pass."})


@dataclass
class DemoArguments:
    output_dir: str = field(
        default="ulmfit-demo", metadata={"help": "Where stages 2 and 3 save their models."}
    )
    seed: int = field(default=42, metadata={"help": "Random seed of every stage."})


@dataclass
class ConvertFastaiArguments:
    weights: str = field(metadata={"help": "fastai .pth: learn.save, learn.save_encoder or lstm_fwd.pth."})
    vocab: str = field(metadata={"help": "fastai vocabulary: pickle (itos_wt103.pkl) or JSON string list."})
    output_dir: str = field(metadata={"help": "Where to save the converted model, config and tokenizer."})
    kind: str | None = field(
        default=None,
        metadata={"help": "lm or classifier (default: as detected).", "choices": ["lm", "classifier"]},
    )
    backwards: bool | None = field(
        default=None,
        metadata={
            "nargs": "?",  # `--backwards` alone means true
            "const": True,
            "help": "The model was trained on reversed texts (fastai backwards=True); the weights cannot tell. "
            "Default: true when the file name contains 'bwd' (lstm_bwd.pth), else false.",
        },
    )


@dataclass
class CombineBidirectionalArguments:
    forward_model_name_or_path: str = field(metadata={"help": "The forward classifier: directory or Hub id."})
    backward_model_name_or_path: str = field(
        metadata={"help": "The backward classifier (trained with --backwards), same labels and tokenizer."}
    )
    output_dir: str = field(metadata={"help": "Where to save the ensemble and its tokenizer."})


def main(argv: list[str] | None = None) -> int:
    """``hf-ulmfit`` itself (``python -m hf_ulmfit.cli`` is the same command, as under ``torchrun``)."""
    from hf_ulmfit_cli import main as command_line

    return command_line(argv)


def run_command(command: str, rest: list[str]) -> int:
    """Runs one command on its arguments; a user's mistake prints its message without a traceback and gives 2."""
    try:
        _run(command, rest)
    except UsageError as error:
        print(f"hf-ulmfit {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _run(command: str, rest: list[str]) -> None:
    if command in STAGE_FUNCTIONS:
        from . import stages

        arguments = parse_stage_arguments(command, rest)
        _set_up_logging()
        getattr(stages, STAGE_FUNCTIONS[command])(*arguments)
    elif command == "predict":
        (args,) = _parse(_parser(PredictArguments, command), rest)
        _set_up_logging()
        _predict(args)
    elif command == "convert-fastai":
        from .convert_fastai import convert_fastai_checkpoint

        (args,) = _parse(_parser(ConvertFastaiArguments, command), rest)
        _set_up_logging()
        convert_fastai_checkpoint(
            args.weights, args.vocab, args.output_dir, kind=args.kind, backwards=args.backwards
        )
    elif command == "combine-bidirectional":
        from .bidirectional import combine_bidirectional

        (args,) = _parse(_parser(CombineBidirectionalArguments, command), rest)
        _set_up_logging()
        combine_bidirectional(
            args.forward_model_name_or_path, args.backward_model_name_or_path, args.output_dir
        )
    else:
        from .demo import run_demo

        (args,) = _parse(_parser(DemoArguments, command), rest)
        _set_up_logging()
        run_demo(args.output_dir, seed=args.seed)


def parse_stage_arguments(command: str, argv: list[str]) -> tuple:
    """The three argument dataclasses of a training command, from the recipe's defaults (``hf_ulmfit.recipe``,
    the same as ``stages.stage_arguments``) and ``argv``. An unknown or abbreviated flag, or a value the
    dataclasses reject, raises ``UsageError``."""
    from . import stages
    from .recipe import stage_defaults
    from .training_args import ULMFiTTrainingArguments

    parser = _parser((stages.ModelArguments, stages.DataArguments, ULMFiTTrainingArguments), command)
    parser.set_defaults(**stage_defaults(command))
    if "--help-all" in argv:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        print(stage_help(parser, command))
        raise SystemExit(0)
    parser.set_defaults(**stage_defaults(command, given=given_fields(parser, argv)))
    return _parse(parser, argv)


def given_fields(parser: "HfArgumentParser", argv: list[str]) -> set[str]:
    """The fields whose flags ``argv`` holds (``--flag value``, ``--flag=value`` or ``--no_flag``)."""
    fields = {option: action.dest for action in parser._actions for option in action.option_strings}
    return {fields[item.split("=", 1)[0]] for item in argv if item.split("=", 1)[0] in fields}


def stage_help(parser: "HfArgumentParser", command: str) -> str:
    """The command's own flags, grouped, each with the default this stage uses."""
    actions = {action.dest: action for action in parser._actions}
    start = "--model_name_or_path LM " if command == "train-classifier" else ""
    lines = [f"usage: {parser.prog} {start}--train_file FILE [FILE ...] --output_dir DIR [flags]", ""]
    lines.append(COMMANDS[command])
    for group, names in STAGE_HELP[command].items():
        lines += ["", f"{group} flags:"]
        for name in names:
            action = actions[name]
            default = "" if action.default in (None, argparse.SUPPRESS) else f" (default: {action.default})"
            lines.append(f"  --{name}{default}")
            lines += [f"      {line}" for line in textwrap.wrap((action.help or "").replace("%%", "%"), 96)]
    lines += [
        "",
        f"Every transformers TrainingArguments flag works too: `{parser.prog} --help-all` lists them.",
    ]
    return "\n".join(lines)


def _parser(dataclass_type, command: str) -> "HfArgumentParser":
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        dataclass_type, allow_abbrev=False
    )  # --num_train_epoch is a mistake, not a flag
    parser.prog = f"hf-ulmfit {command}"
    return parser


def _parse(parser: "HfArgumentParser", argv: list[str]) -> tuple:
    """The dataclasses of ``argv``; unknown flags (with the closest known one) and rejected values are
    ``UsageError``s."""
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    except ValueError as error:  # a dataclass's own check (__post_init__) of the values given
        raise UsageError(str(error)) from error
    if remaining:
        known = [option for action in parser._actions for option in action.option_strings]
        unknown = [item for item in remaining if item.startswith("-")] or remaining
        hints = []
        for item in unknown:
            close = difflib.get_close_matches(item.split("=", 1)[0], known, n=1, cutoff=0.6)
            hints.append(f"{item}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise UsageError(
            f"unrecognized argument(s): {', '.join(hints)}. `{parser.prog} --help` lists the flags."
        )
    return tuple(parsed)


def _predict(args: PredictArguments) -> None:
    """One JSON line per text, in order: the text, its label and score. Texts from --input_file are checked by
    ``data_files.read_data_file`` (readable, UTF-8, every row a string), those from --text by ``stages.predict``."""
    from . import stages
    from .data_files import read_data_file

    if (args.input_file is None) == (args.text is None):
        raise UsageError("give either --input_file or --text.")
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {args.batch_size}.")
    texts = args.text
    if args.input_file is not None:
        texts = read_data_file(args.input_file, "input", [args.text_column_name])[args.text_column_name]
    predictions = stages.predict(args.model_name_or_path, texts, batch_size=args.batch_size)
    lines = [json.dumps({"text": text, **prediction}) + "\n" for text, prediction in zip(texts, predictions)]
    if args.output_file:
        with open(args.output_file, "w", encoding="utf-8") as f:
            f.writelines(lines)
        print(f"Wrote {len(lines)} predictions to {args.output_file}")
    else:
        sys.stdout.writelines(lines)


def _set_up_logging() -> None:
    import datasets
    import transformers

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()


if __name__ == "__main__":
    sys.exit(main())
