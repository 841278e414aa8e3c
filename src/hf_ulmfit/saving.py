"""Atomic saving for the transformers ``Trainer``: a checkpoint is complete or absent, a saved model replaces the
previous one only once it is whole, and a saved directory holds no pickle. Nothing here is specific to ULMFiT.

``AtomicSavingMixin`` goes before ``Trainer`` in a subclass's bases. It overrides these Trainer methods, and only
these (the place to look when a transformers upgrade changes them):

* ``_save``: the model, tokenizer and training arguments go to ``output_dir/_saving/model`` first, then move into
  ``output_dir`` one file at a time with ``os.replace``; ``training_args.bin`` (a pickle) becomes
  ``training_args.json``.
* ``_save_checkpoint``: the Trainer writes ``checkpoint-N`` inside ``output_dir/_saving``, the subclass adds its
  own files (``save_extra_state``), and the directory is renamed into place; only then are old checkpoints
  rotated and the checkpoint pushed.
* ``_get_output_dir``: points the Trainer's checkpoint writer at the staging directory while it stages.
* ``_push_from_checkpoint``: waits until the checkpoint is in place.

``last_complete_checkpoint`` is what ``resume_from_checkpoint=True`` should resume from.
"""

import os
import shutil

from torch import nn
from transformers import Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints, sort_checkpoints
from transformers.utils import logging

logger = logging.get_logger(__name__)

# In an output directory: what is being saved, until it is complete (the Trainer's uploads skip "_*").
STAGING_DIR_NAME = "_saving"


class AtomicSavingMixin(Trainer):
    """Checkpoints and saved models that appear whole or not at all (see the module docstring)."""

    def save_extra_state(self, checkpoint: str) -> None:
        """Subclasses write files of their own into the staged ``checkpoint`` directory here."""

    # Set while ``_save_checkpoint`` has the Trainer write a checkpoint into the staging directory.
    _staging_root: str | None = None

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """As the Trainer's, but the files are written to ``output_dir/_saving/model`` and then moved into
        ``output_dir`` one by one with ``os.replace``: a save killed while writing leaves the model that was there
        loadable. The training arguments go to ``training_args.json`` instead of the pickle ``training_args.bin``: a
        saved directory, and so what ``push_to_hub`` uploads from ``output_dir``, holds safetensors and JSON only
        (loading a pickle can run arbitrary code)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            # A process that writes nothing (it may join the gathers of a sharded model).
            return super()._save(output_dir, state_dict)
        staging_root = os.path.join(output_dir, STAGING_DIR_NAME)
        staging = os.path.join(staging_root, "model")
        shutil.rmtree(staging, ignore_errors=True)  # what a save killed earlier left
        super()._save(staging, state_dict)
        pickled = os.path.join(staging, TRAINING_ARGS_NAME)
        if os.path.isfile(pickled):
            os.remove(pickled)
            with open(os.path.join(staging, "training_args.json"), "w", encoding="utf-8") as file:
                file.write(self.args.to_json_string())
        for name in sorted(os.listdir(staging)):
            _replace(os.path.join(staging, name), os.path.join(output_dir, name))
        os.rmdir(staging)
        if not os.listdir(staging_root):
            os.rmdir(staging_root)

    def _save_checkpoint(self, model: nn.Module, trial=None) -> None:
        """As the Trainer's, but atomic: ``checkpoint-{step}`` is either complete or absent.

        The Trainer writes the checkpoint in ``output_dir/_saving``, ``save_extra_state`` adds to it, and the whole
        directory is renamed into place. Only then are older checkpoints rotated (``save_total_limit``) and the
        checkpoint pushed (``push_to_hub``). A run killed while saving leaves the earlier checkpoints as they were.
        """
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_DIR_NAME)
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging_root, ignore_errors=True)  # what a save killed earlier left
        self.accelerator.wait_for_everyone()
        self._staging_root = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.save_extra_state(staged)
        if self.state.best_model_checkpoint == staged:  # the Trainer recorded where it wrote this checkpoint
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()  # every process has written its files (RNG and LM states)
        if self.args.should_save:
            _replace(staged, final)
            os.rmdir(staging_root)
            rotate_checkpoints(
                run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True
            )
        if self.args.push_to_hub:
            self._push_from_checkpoint(final)
        self.accelerator.wait_for_everyone()

    def _get_output_dir(self, trial) -> str:
        """The Trainer's run directory; while ``_save_checkpoint`` stages a checkpoint, the staging directory."""
        return self._staging_root if self._staging_root is not None else super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """As the Trainer's; ``_save_checkpoint`` calls it once the checkpoint is in place, not while staging it."""
        if self._staging_root is None:
            super()._push_from_checkpoint(checkpoint_folder)


def last_complete_checkpoint(output_dir: str) -> str:
    """The last checkpoint in ``output_dir`` with a readable ``trainer_state.json``, the file the Trainer writes
    last: what ``resume_from_checkpoint=True`` resumes from.

    Checkpoints saved by ``ULMFiTTrainer`` are complete or absent; an incomplete one (from a run of a plain
    ``Trainer`` killed while saving) is skipped with a warning, where ``Trainer.train`` would fail on it.
    """
    for checkpoint in reversed(sort_checkpoints(output_dir)):
        try:
            TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
            return checkpoint
        except (OSError, ValueError):
            logger.warning(f"Skipping {checkpoint}: it is incomplete (no readable {TRAINER_STATE_NAME}).")
    raise ValueError(f"No valid checkpoint found in output directory ({output_dir})")


def _replace(source: str, target: str) -> None:
    """Moves ``source`` (a file or directory) to ``target`` with ``os.replace``, which is atomic. A directory
    already at ``target`` (a checkpoint of the same step from an earlier run) is moved aside first, then removed."""
    if not os.path.isdir(target):
        os.replace(source, target)
        return
    aside = source + ".replaced"
    os.replace(target, aside)
    os.replace(source, target)
    shutil.rmtree(aside)


__all__ = ["STAGING_DIR_NAME", "AtomicSavingMixin", "last_complete_checkpoint"]
