"""The shipped LMs: each loads by name, in float32, within its size, in its direction; its perplexity on a
held-out slice is its card's. The backward LM shares the forward one's tokenizer, so their classifiers combine.

A shipped model whose weights are not committed yet is skipped."""

import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_ulmfit
from hf_ulmfit import AWDLSTMConfig
from hf_ulmfit.cards import CAMPAIGN_PLOTS, PLOT_FOLDER
from hf_ulmfit.pretrained import PRETRAINED_ROOT, SHIPPED_MODELS

FORWARD, BACKWARD = "awd-lstm-wiki-en", "awd-lstm-wiki-en-backward"
SLICE = Path(__file__).parent / "data" / "wikipedia_valid_slice.parquet"


def shipped(name: str):
    return pytest.param(
        name,
        marks=pytest.mark.skipif(
            not (PRETRAINED_ROOT / name / "config.json").is_file(),
            reason=f"{name}'s weights are not committed",
        ),
    )


EVERY_MODEL = [shipped(name) for name in SHIPPED_MODELS]


def test_both_directions_ship():
    assert set(SHIPPED_MODELS) == {FORWARD, BACKWARD}


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_the_shipped_lm_loads_by_name_in_float32_within_its_size(name):
    path = Path(hf_ulmfit.pretrained_path(name))
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32
    assert model.config.backwards == (name == BACKWARD)
    assert (path / "model.safetensors").stat().st_size <= 25_000_000
    assert len(AutoTokenizer.from_pretrained(path)) == model.config.vocab_size


@pytest.mark.parametrize("name", [shipped(BACKWARD)])
def test_the_backward_lm_has_the_forward_lms_tokenizer(name):
    paths = [Path(hf_ulmfit.pretrained_path(n)) for n in (FORWARD, name)]
    assert (paths[0] / "tokenizer.json").read_bytes() == (paths[1] / "tokenizer.json").read_bytes()


def _card_figure(name: str) -> float:
    """The per-token perplexity the card states for the held-out slice."""
    card = (Path(hf_ulmfit.pretrained_path(name)) / "README.md").read_text()
    row = next(line for line in card.splitlines() if "wikipedia_valid_slice.parquet" in line)
    return float(row.strip(" |").split("|")[-2])


def _as_forward_model(model):
    """The same weights read left to right: a backward LM is this forward LM run on the reversed stream."""
    config = AWDLSTMConfig.from_dict({**model.config.to_dict(), "backwards": False})
    forward = AutoModelForCausalLM.from_config(config)
    forward.load_state_dict(model.state_dict())
    return forward.eval()


def _perplexity_by_hand(model, tokenizer, texts: list[str], rows: int = 16) -> float:
    """Per-token perplexity of the concatenated documents, cut into ``rows`` contiguous rows read in windows of
    ``bptt`` with the state carried: the card's protocol, computed here from log-probabilities token by token.
    A backward LM is scored as its forward twin (``_as_forward_model``) on the reversed token stream, which
    checks its direction independently of the model's own reversal."""
    ids = torch.tensor([i for doc in tokenizer(texts)["input_ids"] for i in doc])
    if model.config.backwards:
        model, ids = _as_forward_model(model), ids.flip(0)
    length = (len(ids) - 1) // rows
    inputs, targets = ids[: rows * length].view(rows, length), ids[1 : rows * length + 1].view(rows, length)
    total, cache = 0.0, None
    with torch.no_grad():
        for start in range(0, length, model.config.bptt):
            out = model(input_ids=inputs[:, start : start + model.config.bptt], cache=cache)
            cache = out.cache
            log_probs = torch.log_softmax(out.logits.double(), dim=-1)
            chosen = log_probs.gather(-1, targets[:, start : start + model.config.bptt].unsqueeze(-1))
            total -= chosen.sum().item()
    return math.exp(total / (rows * length))


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_the_shipped_perplexity_on_the_held_out_slice_is_the_cards(name):
    path = hf_ulmfit.pretrained_path(name)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = pq.read_table(SLICE, columns=["text"]).column("text").to_pylist()
    assert _perplexity_by_hand(model, tokenizer, texts) == pytest.approx(_card_figure(name), rel=1e-3)


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_the_card_shows_the_campaign_s_plots_which_the_model_directory_carries(name):
    """Every image the card links is in the model directory (so the Hub shows it) and is the repository's plot of
    the same path (so the repository's model_card.md shows it too, and the two cannot drift apart)."""
    directory = Path(hf_ulmfit.pretrained_path(name))
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (directory / "README.md").read_text())
    assert links == [f"{PLOT_FOLDER}/{plot}" for plot in CAMPAIGN_PLOTS]
    repository = Path(__file__).parents[1]
    for link in links:
        assert (directory / link).read_bytes() == (repository / link).read_bytes(), link


@pytest.mark.parametrize("name", [shipped(FORWARD)])
def test_the_card_is_the_repository_model_card(name):
    card = (Path(hf_ulmfit.pretrained_path(name)) / "README.md").read_text()
    assert (Path(__file__).parents[1] / "model_card.md").read_text() == card
    assert re.search(r"^library_name: transformers$", card, re.M)
