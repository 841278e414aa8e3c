"""The language models that ship with the package: stage 1 of ULMFiT, done once, so a user's stage 2 starts from
a general-domain LM as fastai users' does with ``pretrained=True``.

Each is a normal Hugging Face model directory inside the package (safetensors, config, tokenizer, model card and
the two model code files), so it loads offline after a plain install, and can be pushed to the Hub as it is. A
stage's ``--model_name_or_path`` is resolved by ``resolve_model_name``: a local directory of that name wins, then
a shipped model's name, and anything else (``owner/name``) is a Hub id for ``from_pretrained``.
"""

import os
from pathlib import Path

from .errors import UsageError

PRETRAINED_ROOT = Path(__file__).parent / "pretrained"
# The shipped models, by name. Their cards (README.md in each directory) say how each was trained.
SHIPPED_MODELS = ("awd-lstm-wiki-en", "awd-lstm-wiki-en-backward")
DEFAULT_LANGUAGE_MODEL = "awd-lstm-wiki-en"


class ShippedModelMissingError(UsageError, FileNotFoundError):
    """A shipped model's name whose directory is not in this installation."""


def pretrained_path(name: str = DEFAULT_LANGUAGE_MODEL) -> str:
    """The directory of the shipped model ``name`` (e.g. ``"awd-lstm-wiki-en"``), for ``from_pretrained``."""
    if name not in SHIPPED_MODELS:
        raise UsageError(f"No shipped model is called {name!r}; the package ships {list(SHIPPED_MODELS)}.")
    path = PRETRAINED_ROOT / name
    if not (path / "config.json").is_file():
        raise ShippedModelMissingError(
            f"The shipped model {name!r} is not in this installation ({path} holds no config.json): reinstall "
            "hf-ulmfit, or pass --model_name_or_path another language model (a directory or a Hub id)."
        )
    return str(path)


def resolve_model_name(name_or_path: str | None) -> str | None:
    """What ``from_pretrained`` should load for a stage's ``--model_name_or_path``: a local directory as given,
    a shipped model's name as its directory, anything else (a Hub id) as given."""
    if name_or_path is None or os.path.isdir(name_or_path) or name_or_path not in SHIPPED_MODELS:
        return name_or_path
    return pretrained_path(name_or_path)


__all__ = ["DEFAULT_LANGUAGE_MODEL", "SHIPPED_MODELS", "pretrained_path", "resolve_model_name"]
