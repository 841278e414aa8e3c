"""Runs ``hf-ulmfit`` stages in each process of a ``torchrun`` job and records what each process ended with.

Usage (from tests/test_distributed.py)::

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_stages.py RUN.json

``RUN.json`` lists ``[name, argv]`` pairs: each ``argv`` goes to ``hf_ulmfit.cli.main`` in turn, in the same
processes. A name ending in ``+refrozen`` trains the previous stage's model once more through ``ULMFiTTrainer``
with ``argv`` as the training arguments, its lower groups still frozen (as the previous run left them) when DDP
wraps it, and saves it. After each run, every process writes ``{output_dir}/process_{rank}.json``: checksums of
its weights and buffers and of its tokenizer, and the inputs of its first training batches.
"""

import hashlib
import json
import os
import sys

import torch
from transformers import HfArgumentParser

from hf_ulmfit import cli, stages
from hf_ulmfit.training_args import ULMFiTTrainingArguments

FIRST_BATCHES = 3


class RecordingTrainer(stages.ULMFiTTrainer):
    """``ULMFiTTrainer`` that remembers its last instance and the inputs of its first training batches."""

    last = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingTrainer.last = self
        self.first_inputs: list[list[list[int]]] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        if len(self.first_inputs) < FIRST_BATCHES:
            self.first_inputs.append(inputs["input_ids"].tolist())
        return super().training_step(model, inputs, num_items_in_batch)


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def record(trainer: RecordingTrainer) -> None:
    vocab = json.dumps(sorted(trainer.processing_class.get_vocab().items())).encode()
    summary = {
        "weights": checksum(trainer.model.state_dict()),
        "tokenizer": hashlib.sha256(vocab).hexdigest(),
        "first_inputs": trainer.first_inputs,
    }
    os.makedirs(trainer.args.output_dir, exist_ok=True)
    path = os.path.join(trainer.args.output_dir, f"process_{trainer.args.process_index}.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(summary, file)


def train_refrozen(previous: RecordingTrainer, argv: list[str]) -> RecordingTrainer:
    """Trains ``previous.model`` again, its lower groups frozen before the Trainer wraps it in DDP."""
    (args,) = HfArgumentParser(ULMFiTTrainingArguments).parse_args_into_dataclasses(argv)
    assert not all(p.requires_grad for p in previous.model.parameters()), "expected frozen groups"
    trainer = RecordingTrainer(
        model=previous.model,
        args=args,
        train_dataset=previous.train_dataset,
        data_collator=previous.data_collator,
        processing_class=previous.processing_class,
    )
    trainer.train()
    trainer.save_model()
    return trainer


def main(run_file: str) -> None:
    stages.ULMFiTTrainer = RecordingTrainer  # the stages build their trainers through this name
    with open(run_file, encoding="utf-8") as file:
        runs = json.load(file)
    for name, argv in runs:
        if name.endswith("+refrozen"):
            trainer = train_refrozen(RecordingTrainer.last, argv)
        else:
            cli.main(argv)
            trainer = RecordingTrainer.last
        record(trainer)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # a process group left to the interpreter's exit may abort it


if __name__ == "__main__":
    main(sys.argv[1])
