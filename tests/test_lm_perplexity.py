"""scripts/lm_perplexity.py measures an LM as the LM stages do at the end of training: its number is the perplexity
of the whole token stream, read window by window with the recurrent state carried across windows."""

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REVIEWS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lm_perplexity.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lm_perplexity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perplexity_is_that_of_the_whole_stream_read_at_once(tiny_config, tmp_path):
    from hf_ulmfit import AWDLSTMForCausalLM, train_tokenizer

    tokenizer = train_tokenizer(REVIEWS * 4, vocab_size=300)
    texts = REVIEWS * 2
    stream = torch.tensor([i for text in texts for i in tokenizer(text)["input_ids"]])
    positions = len(stream) - 1
    bptt = next(d for d in range(5, positions) if positions % d == 0 and positions // d >= 2)  # whole windows
    torch.manual_seed(0)
    model = AWDLSTMForCausalLM(tiny_config(vocab_size=len(tokenizer), bptt=bptt)).eval()
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "valid.parquet")

    measured = load_script().perplexity(str(tmp_path / "lm"), str(tmp_path / "valid.parquet"), "text", 1)

    with torch.no_grad():  # the whole stream in one forward pass, from a fresh state
        logits = model(input_ids=stream[None, :-1]).logits[0]
    expected = math.exp(torch.nn.functional.cross_entropy(logits, stream[1:]).item())
    assert measured == pytest.approx(expected, rel=1e-5)
