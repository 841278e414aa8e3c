"""Tests for hf_ulmfit.tokenization_awd_lstm: a tiny corpus and a small vocabulary keep them fast."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_ulmfit.tokenization_awd_lstm import (
    BOS_TOKEN,
    BOS_TOKEN_ID,
    BYTE_TOKENS,
    EOS_TOKEN,
    EOS_TOKEN_ID,
    MIN_VOCAB_SIZE,
    PAD_TOKEN,
    PAD_TOKEN_ID,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    UNK_TOKEN_ID,
    train_tokenizer,
)

CORPUS = [
    "This movie was great.<br /><br />I loved every minute of it!",
    "A terrible film. The acting was bad and the story was worse.",
    "Great acting, a great story and a great cast: the best film of the year.",
    "I did not like this movie at all; it was boring and far too long.",
    "The director's previous film was better, but this one is still worth seeing.",
] * 10

VOCAB_SIZE = 400

UNICODE_TEXTS = [
    "Emoji 😀👍🏽 and flags 🇫🇷 in a review",
    "日本語のレビュー、とても良い映画でした。",
    "control \x00\x01\x07\x1b chars \t tab \r\n crlf \x7f",
    "Ünïcödé àccents, ß, Ελληνικά, кириллица, עברית, العربية",
    "  leading and trailing spaces  ",
    "zero\u200bwidth\u200djoiner and combining e\u0301",
    "",
]


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return train_tokenizer(CORPUS, vocab_size=VOCAB_SIZE, show_progress=False)


def ids_of(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tok(text)["input_ids"]


def test_special_token_ids(tok):
    assert (
        SPECIAL_TOKENS == (UNK_TOKEN, PAD_TOKEN, BOS_TOKEN, EOS_TOKEN) == ("<unk>", "<pad>", "<bos>", "<eos>")
    )
    assert (UNK_TOKEN_ID, PAD_TOKEN_ID, BOS_TOKEN_ID, EOS_TOKEN_ID) == (0, 1, 2, 3)
    assert (tok.unk_token_id, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert tok.convert_ids_to_tokens(list(range(4, 4 + 256))) == list(BYTE_TOKENS)
    assert set(tok.all_special_ids) == {0, 1, 2, 3}  # byte tokens are ordinary vocabulary entries


def test_vocab_size_is_respected(tok):
    assert len(tok) == VOCAB_SIZE
    assert len(tok.get_vocab()) == VOCAB_SIZE


def test_bos_prepended_to_every_text(tok):
    batch = tok(["I loved it", "bad film", ""])["input_ids"]
    assert [ids[0] for ids in batch] == [BOS_TOKEN_ID] * 3
    assert all(BOS_TOKEN_ID not in ids[1:] and EOS_TOKEN_ID not in ids for ids in batch)
    assert batch[2] == [BOS_TOKEN_ID]
    assert ids_of(tok, "I loved it") == batch[0]
    assert tok("I loved it", add_special_tokens=False)["input_ids"] == batch[0][1:]


def test_pair_is_bos_a_eos_b(tok):
    a = tok("great film", add_special_tokens=False)["input_ids"]
    b = tok("bad story", add_special_tokens=False)["input_ids"]
    assert tok("great film", "bad story")["input_ids"] == [BOS_TOKEN_ID, *a, EOS_TOKEN_ID, *b]


@pytest.mark.parametrize("br", ["<br />", "<br/>", "<br>", "<BR />", "<br  />"])
def test_html_line_breaks_become_newlines(tok, br):
    ids = ids_of(tok, f"great film.{br}{br}I loved it")
    assert ids == ids_of(tok, "great film.\n\nI loved it")
    assert tok.decode(ids, skip_special_tokens=True) == "great film.\n\nI loved it"
    assert not any("<" in t or "br" in t for t in tok.convert_ids_to_tokens(ids[1:]))


def test_training_corpus_line_breaks_are_normalized(tok):
    vocab = tok.get_vocab()
    assert not any("<br" in token for token in vocab)
    assert "\n" in vocab


def test_save_and_auto_tokenizer_load_gives_identical_encodings(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # transformers 5 spells its PreTrainedTokenizerFast class "TokenizersBackend"; nothing custom is saved.
    assert config["tokenizer_class"] in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert "auto_map" not in config

    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is PreTrainedTokenizerFast
    texts = [*CORPUS[:5], *UNICODE_TEXTS, "<br />x"]
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert loaded(texts, padding=True) == tok(texts, padding=True)
    assert loaded("great film", "bad story") == tok("great film", "bad story")
    ids = tok(texts[0])["input_ids"]
    assert loaded.decode(ids) == tok.decode(ids)
    assert loaded.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    for attr in (
        "unk_token_id",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "padding_side",
        "model_max_length",
    ):
        assert getattr(loaded, attr) == getattr(tok, attr)
    assert loaded.model_input_names == ["input_ids", "attention_mask"]

    # The class name that transformers 4 writes loads the same tokenizer.
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(tmp_path)(texts)["input_ids"] == tok(texts)["input_ids"]


def test_right_padding_with_pad_id_and_attention_mask(tok):
    texts = ["great", "I loved every minute of this great movie", ""]
    lengths = [len(ids_of(tok, t)) for t in texts]
    batch = tok(texts, padding=True)
    width = max(lengths)
    assert tok.padding_side == "right"
    for text, ids, mask, n in zip(texts, batch["input_ids"], batch["attention_mask"], lengths, strict=True):
        assert len(ids) == len(mask) == width
        assert ids[:n] == ids_of(tok, text)
        assert ids[n:] == [PAD_TOKEN_ID] * (width - n)
        assert mask == [1] * n + [0] * (width - n)

    tensors = tok(texts, padding="max_length", max_length=width + 3, return_tensors="pt")
    assert tensors["input_ids"].shape == (3, width + 3)
    assert tensors["attention_mask"].sum(dim=1).tolist() == lengths
    assert (tensors["input_ids"][:, -3:] == PAD_TOKEN_ID).all()


def test_truncation_keeps_bos(tok):
    ids = tok(CORPUS[0], truncation=True, max_length=5)["input_ids"]
    assert ids == ids_of(tok, CORPUS[0])[:5]
    assert ids[0] == BOS_TOKEN_ID


def test_no_token_type_ids(tok):
    assert set(tok("great film").keys()) == {"input_ids", "attention_mask"}
    assert set(tok(["great", "film"], padding=True, return_tensors="pt").keys()) == {
        "input_ids",
        "attention_mask",
    }
    assert set(tok("great film", "bad story").keys()) == {"input_ids", "attention_mask"}
    assert tok.model_input_names == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_arbitrary_unicode_round_trips_without_unknowns(tok, text):
    ids = ids_of(tok, text)
    assert UNK_TOKEN_ID not in ids
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == text  # exact: byte fallback covers characters never seen in training
    assert tok.decode(ids_of(tok, decoded), skip_special_tokens=True) == decoded


def test_unseen_characters_use_byte_tokens(tok):
    tokens = tok.convert_ids_to_tokens(ids_of(tok, "😀")[1:])
    assert [t for t in tokens if t != "▁"] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert tok.decode(tok.convert_tokens_to_ids(tokens)) == "😀"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_decode_encode_is_stable_for_any_text(tok, text):
    ids = ids_of(tok, text)
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert tok.decode(ids_of(tok, decoded), skip_special_tokens=True) == decoded
    if "<" not in text and "▁" not in text:  # no markup, special-token text or boundary markers to normalize
        assert UNK_TOKEN_ID not in ids
        assert decoded == text


def test_batch_equals_single_calls(tok):
    texts = [*CORPUS[:5], *UNICODE_TEXTS]
    assert tok(texts)["input_ids"] == [ids_of(tok, t) for t in texts]


def test_model_max_length_is_set():
    tok = train_tokenizer(CORPUS, vocab_size=300, model_max_length=128, show_progress=False)
    assert tok.model_max_length == 128
    assert len(tok(CORPUS[0] * 40, truncation=True)["input_ids"]) == 128


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 4}, "vocab_size"),
        ({"vocab_size": MIN_VOCAB_SIZE - 1}, "vocab_size"),
        ({"vocab_size": 1000.5}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
        ({"model_max_length": 0}, "model_max_length"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_tokenizer(CORPUS, show_progress=False, **kwargs)


@pytest.mark.parametrize("corpus", [[], [""], ["", ""], iter([])])
def test_empty_corpus_raises_value_error(corpus):
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(corpus, vocab_size=300, show_progress=False)


def test_non_string_texts_raise_type_error():
    with pytest.raises(TypeError, match="single string"):
        train_tokenizer("a whole corpus in one string", vocab_size=300, show_progress=False)
    with pytest.raises(TypeError, match="Text 1 is int .*not a string"):
        train_tokenizer(["fine", 3], vocab_size=300, show_progress=False)


def test_smallest_vocab_still_encodes_everything():
    tok = train_tokenizer(CORPUS, vocab_size=MIN_VOCAB_SIZE, show_progress=False)
    assert len(tok) == MIN_VOCAB_SIZE
    ids = ids_of(tok, "Great film 😀")
    assert UNK_TOKEN_ID not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "Great film 😀"


def test_accepts_a_generator():
    tok = train_tokenizer((t.upper() for t in CORPUS), vocab_size=300, show_progress=False)
    assert tok.decode(ids_of(tok, "GREAT FILM"), skip_special_tokens=True) == "GREAT FILM"
