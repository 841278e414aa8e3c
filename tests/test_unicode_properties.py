"""Arbitrary Unicode through the tokenizer and the text-classification pipeline, with hypothesis: nothing crashes,
and decoding what was encoded gives back the text exactly as the tokenizer's normalisation defines it."""

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import pipeline

from conftest import REVIEWS
from hf_ulmfit import AWDLSTMConfig, AWDLSTMForSequenceClassification
from hf_ulmfit.stages import check_texts
from hf_ulmfit.tokenization_awd_lstm import (
    BOS_TOKEN_ID,
    HTML_LINE_BREAK_PATTERN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    UNK_TOKEN_ID,
    WORD_BOUNDARY,
    train_tokenizer,
)

# Every code point but surrogates, which UTF-8 cannot encode.
ENCODABLE = st.characters(exclude_categories=["Cs"])
# Pieces the tokenizer treats specially, and a few scripts and characters that often break text handling.
PIECES = st.sampled_from(
    [
        *SPECIAL_TOKENS,
        "<br />",
        "<BR>",
        "<br/>",
        "<",
        ">",
        "<0x41>",  # the name of a byte token, as plain text
        WORD_BOUNDARY,
        " ",
        "  ",
        "\n",
        "\r\n",
        "\t",
        "\x00",
        "\x1b[0m",
        "😀",
        "👍🏽",
        "🇫🇷",
        "\u200d",
        "e\u0301",
        "\ufeff",
        "\u202eRTL override\u202c",
        "עברית",
        "العربية",
        "日本語",
    ]
)
# HTML line breaks with whitespace inside, some of which Python's \s and the tokenizer's regex disagree on.
LINE_BREAKS = st.builds(
    "<{}r{}{}>".format,
    st.sampled_from("bB"),
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000"), max_size=3),
    st.sampled_from(["/", ""]),
)
TEXTS = st.one_of(
    st.text(ENCODABLE, max_size=40),
    st.lists(st.one_of(st.text(ENCODABLE, max_size=4), PIECES, LINE_BREAKS), max_size=10).map("".join),
)
# Any code point, lone surrogates included (they are rare among all code points, so some are added on purpose).
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=[]), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    ),
    max_size=30,
)
SPECIAL_TEXT = re.compile("|".join(map(re.escape, SPECIAL_TOKENS)))
# The tokenizer's pattern in Python: its \s (Rust regex) does not match \x1c-\x1f, Python's does.
HTML_BREAK = re.compile(HTML_LINE_BREAK_PATTERN.replace(r"\s", r"[^\S\x1c-\x1f]"))


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(REVIEWS * 20, vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def classify(tok):
    torch.manual_seed(0)
    config = AWDLSTMConfig(
        vocab_size=len(tok), embedding_size=8, hidden_size=12, bptt=8, max_len=20, num_labels=2
    )
    return pipeline(
        "text-classification", model=AWDLSTMForSequenceClassification(config).eval(), tokenizer=tok
    )


def normalised(text: str) -> str:
    """What ``decode(encode(text), skip_special_tokens=True)`` must give: the tokenizer splits the text around
    special-token strings (which become special tokens and are dropped), turns HTML line breaks into newlines and
    ``▁`` into a space in each piece, and joins the pieces (nothing is added where a special token was)."""
    pieces = SPECIAL_TEXT.split(text)
    return "".join(HTML_BREAK.sub("\n", piece).replace(WORD_BOUNDARY, " ") for piece in pieces)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_decode_of_encode_is_the_normalised_text(tok, text):
    ids = tok(text)["input_ids"]
    assert ids[0] == BOS_TOKEN_ID
    assert (UNK_TOKEN_ID in ids) == (UNK_TOKEN in text)  # byte fallback: no <unk> unless the text writes one
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == normalised(text)
    assert tok.decode(tok(decoded)["input_ids"], skip_special_tokens=True) == decoded  # a fixed point
    if not SPECIAL_TEXT.search(text) and not HTML_BREAK.search(text) and WORD_BOUNDARY not in text:
        assert decoded == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXTS, min_size=1, max_size=4))
def test_batched_encoding_is_each_text_alone_padded(tok, texts):
    batch = tok(texts, padding=True)
    for text, ids, mask in zip(texts, batch["input_ids"], batch["attention_mask"], strict=True):
        alone = tok(text)["input_ids"]
        assert ids[: len(alone)] == alone and sum(mask) == len(alone)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TEXTS, ANY_TEXT))
def test_any_text_is_classified_or_named_as_invalid(classify, text):
    if re.search("[\ud800-\udfff]", text):  # not valid Unicode: a clear error before the tokenizer's own
        with pytest.raises(ValueError, match="lone surrogate"):
            check_texts([text])
        with pytest.raises(TypeError):
            classify.tokenizer(text)
        return
    check_texts([text])
    result = classify(text, top_k=None)
    assert sorted(s["label"] for s in result) == ["LABEL_0", "LABEL_1"]
    assert all(math.isfinite(s["score"]) and 0.0 <= s["score"] <= 1.0 for s in result)
    assert sum(s["score"] for s in result) == pytest.approx(1.0)
