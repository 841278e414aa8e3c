"""Perplexity of language models on one text file, measured as stages 1 and 2 measure it at the end of training
(the file's texts as one token stream, batches of 64 rows read in full BPTT windows, the recurrent state carried
from window to window), so that a checkpoint taken midway through a run can be set beside a finished model:

    python scripts/lm_perplexity.py --validation_file wikipedia-en/valid.parquet \
        ../runs/wiki-lm/checkpoint-1500 ../runs/wiki-lm-1500 awd-lstm-wiki-en
"""

import argparse
import math

from transformers import AutoTokenizer, default_data_collator

from hf_ulmfit import AWDLSTMForCausalLM
from hf_ulmfit.data import language_model_stream
from hf_ulmfit.data_files import read_data_file
from hf_ulmfit.pretrained import resolve_model_name
from hf_ulmfit.trainer import ULMFiTTrainer
from hf_ulmfit.training_args import ULMFiTTrainingArguments


def perplexity(model_name_or_path: str, validation_file: str, text_column: str, batch_size: int) -> float:
    folder = resolve_model_name(model_name_or_path)
    model = AWDLSTMForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = read_data_file(validation_file, "validation", [text_column])
    stream = language_model_stream(
        texts, tokenizer, batch_size=batch_size, bptt=model.config.bptt, text_column=text_column,
        backwards=model.config.backwards,
    )  # fmt: skip
    args = ULMFiTTrainingArguments(
        output_dir="/tmp/lm_perplexity", per_device_eval_batch_size=batch_size, report_to="none", use_cpu=True
    )
    trainer = ULMFiTTrainer(model=model, args=args, eval_dataset=stream, data_collator=default_data_collator)
    return math.exp(trainer.evaluate()["eval_loss"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="model folders, checkpoints or shipped model names")
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--text_column_name", default="text")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    args = parser.parse_args(argv)
    for model in args.models:
        value = perplexity(
            model, args.validation_file, args.text_column_name, args.per_device_eval_batch_size
        )
        print(f"{model}: perplexity {value:.1f}")


if __name__ == "__main__":
    main()
