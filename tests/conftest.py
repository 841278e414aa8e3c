import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)

# A few short movie reviews: a tokenizer-training corpus for tests (repeat it as needed).
REVIEWS = [
    "A wonderful film with great acting.<br /><br />I loved it.",
    "Terrible plot, bad acting, a waste of time.",
    "The movie was fine, nothing special.",
    "One of the best films I have seen this year!",
    "Boring and far too long. I fell asleep.",
]

TINY = dict(vocab_size=60, embedding_size=8, hidden_size=12, num_hidden_layers=3)


@pytest.fixture
def tiny_config():
    """A tiny AWD-LSTM config; tests pass overrides as keyword arguments."""
    from hf_ulmfit import AWDLSTMConfig

    def make(**overrides):
        return AWDLSTMConfig(**{**TINY, **overrides})

    return make


def pad_batch(
    docs: list[torch.Tensor], side: str = "right", pad_id: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks 1-D id tensors into (batch, max_len) ids and attention mask, padded on ``side``."""
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), pad_id)
    mask = torch.zeros(len(docs), width, dtype=torch.long)
    for row, doc in enumerate(docs):
        span = slice(0, len(doc)) if side == "right" else slice(width - len(doc), width)
        ids[row, span], mask[row, span] = doc, 1
    return ids, mask


# Labelled reviews and a tiny model size for end-to-end runs of the CLI stages (test_cli, test_distributed).
STAGE_REVIEWS = [
    f"This movie was {a}. The acting was {b} and I {c} it."
    for a, b, c in [
        ("great", "superb", "loved"),
        ("wonderful", "fine", "enjoyed"),
        ("terrible", "awful", "hated"),
        ("boring", "weak", "disliked"),
    ]
    for _ in range(6)
]
STAGE_LABELS = ["pos", "pos", "neg", "neg"] * 6
STAGE_TINY_MODEL = "embedding_size=8,hidden_size=12,num_hidden_layers=2,bptt=8,max_len=16"
