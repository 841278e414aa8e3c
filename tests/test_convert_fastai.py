"""fastai checkpoint conversion (``hf_ulmfit.convert_fastai``) and the fastai-compatible tokenizer.

Tests marked ``needs_fastai`` compare with fastai itself: a script run once per module in a separate venv
(``/tmp/fastai-peer``, built by ``shared/tools/setup-fastai-peer.sh``, or ``$HF_ULMFIT_FASTAI_PYTHON``) builds
random small fastai models, saves them as fastai does and records their eval-mode outputs; our converted models
must reproduce those outputs to 1e-5. The other tests build fastai-style state dicts by hand.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from hf_ulmfit import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
from hf_ulmfit.cli import main as cli_main
from hf_ulmfit.convert_fastai import (
    RestrictedUnpickler,
    convert_fastai_checkpoint,
    detect_generation,
    detect_kind,
    load_fastai_state_dict,
    load_fastai_vocab,
    read_fastai_weights,
)
from hf_ulmfit.tokenization_fastai import FASTAI_SPECIAL_TOKENS, build_fastai_tokenizer

FASTAI_PYTHON = os.environ.get("HF_ULMFIT_FASTAI_PYTHON", "/tmp/fastai-peer/bin/python")
VOCAB = [*FASTAI_SPECIAL_TOKENS, "the", "a", "movie", ".", ",", "i", "do", "n't", "like", "it", "!", "good"]
VOCAB += ["bad", "\n\n", "xxfake", "xxfake"] + [f"w{i}" for i in range(50 - len(VOCAB) - 4)]
BPTT, MAX_LEN = 8, 24
# Lengths below bptt, between bptt and max_len, and above max_len (fastai pools over whole bptt chunks of the
# last max_len tokens, we over exactly the last max_len: the same positions when (length - max_len) % bptt == 0).
DOC_LENGTHS = [5, 17, 24, 40]
ATOL = 1e-5

# Texts and fastai's tokens for them (fastai 2.8, spaCy 3.8), checked against the live fastai when it is here.
HANDCRAFTED = [
    (
        "<br /><br />This movie is GREAT!!!! I don't like it... really",
        "xxbos xxmaj this movie is xxup great xxrep 4 ! i do n't like it … really",
    ),
    ("Very very very good. Soooo good", "xxbos xxmaj very very very good . s xxrep 4 o good"),
    (
        "I can't believe it's not BUTTER, e.g. 10pm (see www.imdb.com)",
        "xxbos i ca n't believe it 's not xxup butter , e.g. 10 pm ( see xxrep 3 w .imdb.com )",
    ),
    (
        "Mr. Smith's well-known movie/show #1 :)",
        "xxbos xxmaj mr . xxmaj smith 's well - known movie / show # 1 :)",
    ),
    ("&lt;b&gt; &amp; &quot;quoted&quot; x\\ny", "xxbos < b > & & & ' quoted & ' x \n y"),
    ("HELLO World. A b C", "xxbos xxup hello xxmaj world . a b c"),
    ("  leading and trailing  \n\n  spaces  ", "xxbos leading and trailing \n\n▁ spaces"),
    ("ha ha ha ha! Wow!!!!!!!!!!!!", "xxbos xxwrep 4 ha ! xxmaj wow xxrep 12 !"),
    ("She'll say youre gonna win, y'all", "xxbos xxmaj she 'll say you re gon na win , y' all"),
    ("", "xxbos"),
    (
        "The 1950's-era film (1/10) cost $5.5M; 99.9% sure. U.S.A. rocks!",
        "xxbos xxmaj the 1950's - era film ( 1 / 10 ) cost $ 5.5 m ; 99.9 % sure . xxup u.s.a . rocks !",
    ),
]

PEER_SCRIPT = r'''
"""Runs in the fastai venv: builds random small fastai models, saves their weights and eval-mode outputs."""
import json, pickle, sys, warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch
from fastai.text.all import AWD_LSTM, awd_lstm_clas_config, awd_lstm_lm_config, get_language_model, get_text_classifier
from fastai.text.core import SpacyTokenizer, TokenizeWithRules

out, spec = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
torch.manual_seed(0)
torch.set_num_threads(1)
vocab_size = len(spec["vocab"])


def randomize(model):
    """fastai zeroes some biases and starts batch norms as identities: make every tensor count."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5), m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
    return model.eval()


def language_model(n_hid, n_layers):
    config = {**awd_lstm_lm_config, "emb_sz": 16, "n_hid": n_hid, "n_layers": n_layers}
    return randomize(get_language_model(AWD_LSTM, vocab_size, config=config))


ids = torch.randint(0, vocab_size, (2, 20))
lm = language_model(24, 3)
lm.reset()
logits, encoded, _ = lm(ids)
torch.save({"ids": ids, "logits": logits, "encoded": encoded}, out / "lm_out.pt")
torch.save(lm.state_dict(), out / "lm.pth")  # learn.save(..., with_opt=False)
torch.save({"model": lm.state_dict(), "opt": {"state": {}, "hypers": [{"lr": 0.01}]}}, out / "lm_opt.pth")
torch.save(lm[0].state_dict(), out / "encoder.pth")  # learn.save_encoder

for n_hid in (1150, 1152):  # fastai v1's WikiText-103 release: lstm_fwd.pth + itos_wt103.pkl, v1 names
    model = language_model(n_hid, 2)
    model.reset()
    torch.save(model(ids)[0], out / f"wt103_{n_hid}_logits.pt")
    state = model.state_dict()
    for i in range(2):  # v1 also stored the last dropped-out copy of each hidden-to-hidden matrix
        state[f"0.rnns.{i}.module.weight_hh_l0"] = torch.nn.functional.dropout(state[f"0.rnns.{i}.weight_hh_l0_raw"])
    (out / f"wt103_{n_hid}").mkdir()
    torch.save({"model": state, "opt": {}}, out / f"wt103_{n_hid}" / "lstm_fwd.pth")
    with open(out / f"wt103_{n_hid}" / "itos_wt103.pkl", "wb") as f:
        pickle.dump(spec["vocab"], f)

docs = [torch.randint(2, vocab_size, (n,)) for n in spec["doc_lengths"]]
for name, ps in (("clas", None), ("clas_p0", [0.0])):  # p=0: fastai's LinBnDrop has no Dropout module
    config = {**awd_lstm_clas_config, "emb_sz": 16, "n_hid": 24, "n_layers": 3}
    clas = get_text_classifier(AWD_LSTM, vocab_size, 3, seq_len=spec["bptt"], config=config,
                               max_len=spec["max_len"], lin_ftrs=[10], ps=ps)
    clas = randomize(clas)
    logits = [clas(doc[None])[0][0] for doc in docs]  # one document at a time
    torch.save({"docs": docs, "logits": logits}, out / f"{name}_out.pt")
    torch.save(clas.state_dict(), out / f"{name}.pth")

tokens = TokenizeWithRules(SpacyTokenizer())(spec["texts"])
(out / "tokens.json").write_text(json.dumps([list(t) for t in tokens]))
'''


# ----------------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread avoids the synchronisation cost of two (tens of ms per LSTM call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fastai_dir(tmp_path_factory) -> Path:
    """Runs the fastai script once for the module; the directory holds its checkpoints and outputs."""
    if not Path(FASTAI_PYTHON).exists():
        pytest.skip(
            f"fastai peer venv not found at {FASTAI_PYTHON} (build it with shared/tools/setup-fastai-peer.sh "
            "or set HF_ULMFIT_FASTAI_PYTHON)"
        )
    root = tmp_path_factory.mktemp("fastai")
    spec = {
        "vocab": VOCAB,
        "doc_lengths": DOC_LENGTHS,
        "bptt": BPTT,
        "max_len": MAX_LEN,
        "texts": [text for text, _ in HANDCRAFTED],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    (root / "peer.py").write_text(PEER_SCRIPT)
    (root / "vocab.json").write_text(json.dumps(VOCAB))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [FASTAI_PYTHON, str(root / "peer.py"), str(root), str(root / "spec.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return root


def lstm_tensors(n_in: int, n_out: int) -> dict[str, torch.Tensor]:
    return {
        "weight_ih_l0": torch.randn(4 * n_out, n_in),
        "weight_hh_l0_raw": torch.randn(4 * n_out, n_out),
        "bias_ih_l0": torch.randn(4 * n_out),
        "bias_hh_l0": torch.randn(4 * n_out),
    }


def fastai_state_dict(
    kind: str = "lm",
    generation: str = "v2",
    vocab: int = len(VOCAB),
    emb: int = 4,
    hidden: int = 6,
    layers: int = 2,
) -> dict[str, torch.Tensor]:
    """A random state dict with fastai's names: kind lm / classifier / encoder, generation v2 / v1 / 0.7."""
    prefix = {"lm": "0.", "classifier": "0.module.", "encoder": ""}[kind]
    embedding = torch.randn(vocab, emb)
    state = {f"{prefix}encoder.weight": embedding, f"{prefix}encoder_dp.emb.weight": embedding}
    for i in range(layers):
        n_in, n_out = (emb if i == 0 else hidden), (hidden if i < layers - 1 else emb)
        tensors = lstm_tensors(n_in, n_out)
        raw = tensors.pop("weight_hh_l0_raw")
        if generation == "0.7":
            state[f"{prefix}rnns.{i}.module.weight_hh_l0_raw"] = raw
        else:
            state[f"{prefix}rnns.{i}.weight_hh_l0_raw"] = raw
        if generation == "v1":
            state[f"{prefix}rnns.{i}.module.weight_hh_l0"] = torch.zeros_like(raw)  # a dropped-out copy
        state.update({f"{prefix}rnns.{i}.module.{name}": t for name, t in tensors.items()})
    if kind == "lm":
        state["1.decoder.weight"] = embedding
        state["1.decoder.bias"] = torch.randn(vocab)
    if kind == "classifier":
        for block, (n_in, n_out) in enumerate([(3 * emb, 5), (5, 2)]):
            state.update(
                {
                    f"1.layers.{block}.0.weight": torch.rand(n_in) + 0.5,
                    f"1.layers.{block}.0.bias": torch.randn(n_in),
                    f"1.layers.{block}.0.running_mean": torch.randn(n_in),
                    f"1.layers.{block}.0.running_var": torch.rand(n_in) + 0.5,
                    f"1.layers.{block}.0.num_batches_tracked": torch.tensor(7),
                    f"1.layers.{block}.2.weight": torch.randn(n_out, n_in),
                }
            )
    return state


@pytest.fixture
def vocab_file(tmp_path) -> Path:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(VOCAB))
    return path


def save(state, path: Path) -> Path:
    torch.save(state, path)
    return path


# ----------------------------------------------------------------------------------------------------------
# Reading checkpoints and vocabularies


def test_detect_kind_and_generation():
    for kind in ("lm", "classifier", "encoder"):
        for generation in ("v2", "v1", "0.7"):
            state = fastai_state_dict(kind, generation)
            assert detect_kind(state) == kind
            assert detect_generation(state) == generation
    with pytest.raises(ValueError, match="QRNN"):
        detect_kind({"0.rnns.0.layers.0.linear.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not a fastai AWD-LSTM checkpoint"):
        detect_kind({"weight": torch.zeros(1)})


@pytest.mark.parametrize("generation", ["v2", "v1", "0.7"])
def test_keeps_the_raw_hidden_to_hidden_matrix_and_both_biases(generation):
    state = fastai_state_dict("lm", generation, layers=3)
    weights = read_fastai_weights(state)
    raw_name = "0.rnns.1.module.weight_hh_l0_raw" if generation == "0.7" else "0.rnns.1.weight_hh_l0_raw"
    assert torch.equal(weights.lstm_layers[1]["weight_hh_l0"], state[raw_name])
    assert torch.equal(weights.lstm_layers[1]["bias_ih_l0"], state["0.rnns.1.module.bias_ih_l0"])
    assert torch.equal(weights.lstm_layers[1]["bias_hh_l0"], state["0.rnns.1.module.bias_hh_l0"])


@pytest.mark.parametrize("hidden", [1150, 1152])
def test_wt103_hidden_sizes_are_read_from_the_shapes(tmp_path, vocab_file, hidden):
    state = fastai_state_dict("lm", "v1", emb=8, hidden=hidden, layers=3)
    weights = save({"model": state, "opt": {"lr": 0.1}}, tmp_path / "lstm_fwd.pth")
    model, _ = convert_fastai_checkpoint(weights, vocab_file)
    config = model.config
    assert (config.vocab_size, config.embedding_size, config.hidden_size, config.num_hidden_layers) == (
        len(VOCAB),
        8,
        hidden,
        3,
    )
    assert torch.equal(model.awd_lstm.layers[2].weight_hh_l0, state["0.rnns.2.weight_hh_l0_raw"])


def test_model_opt_wrapper_equals_bare_state_dict(tmp_path, vocab_file):
    state = fastai_state_dict("lm")
    bare, _ = convert_fastai_checkpoint(save(state, tmp_path / "bare.pth"), vocab_file)
    wrapped_file = save({"model": state, "opt": {"state": {}, "hypers": [{"lr": 1e-3}]}}, tmp_path / "w.pth")
    wrapped, _ = convert_fastai_checkpoint(wrapped_file, vocab_file)
    for (name, a), (_, b) in zip(bare.state_dict().items(), wrapped.state_dict().items()):
        assert torch.equal(a, b), name


def test_special_token_ids_come_from_the_vocabulary(tmp_path):
    vocab = ["xxpad", "xxunk", "xxeos", "xxbos", *VOCAB[4:]]  # a reordered vocabulary
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    model, tokenizer = convert_fastai_checkpoint(
        save(fastai_state_dict(), tmp_path / "m.pth"), tmp_path / "vocab.json"
    )
    assert (model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id) == (0, 3, 2)
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id) == (0, 3, 1)
    assert tokenizer("movie")["input_ids"] == [3, vocab.index("movie")]


def test_encoder_converts_to_a_language_model_and_loads_into_a_classifier(tmp_path, vocab_file):
    state = fastai_state_dict("encoder")
    out = tmp_path / "out"
    model, _ = convert_fastai_checkpoint(save(state, tmp_path / "enc.pth"), vocab_file, out)
    assert isinstance(model, AWDLSTMForCausalLM)
    assert torch.equal(model.decoder.bias, torch.zeros(len(VOCAB)))
    classifier = AWDLSTMForSequenceClassification.from_pretrained(out, num_labels=4)
    assert torch.equal(classifier.awd_lstm.embed_tokens.weight, state["encoder.weight"])
    with pytest.raises(ValueError, match="no classifier head"):
        convert_fastai_checkpoint(tmp_path / "enc.pth", vocab_file, kind="classifier")


def test_untied_decoder_is_kept(tmp_path, vocab_file):
    state = fastai_state_dict("lm")
    state["1.decoder.weight"] = torch.randn_like(state["1.decoder.weight"])
    model, _ = convert_fastai_checkpoint(save(state, tmp_path / "m.pth"), vocab_file, tmp_path / "out")
    assert not model.config.tie_word_embeddings
    reloaded = AWDLSTMForCausalLM.from_pretrained(tmp_path / "out")
    assert torch.equal(reloaded.decoder.weight, state["1.decoder.weight"])
    assert torch.equal(reloaded.awd_lstm.embed_tokens.weight, state["0.encoder.weight"])


def test_classifier_head_layout_and_labels(tmp_path):
    state = fastai_state_dict("classifier")
    (tmp_path / "vocab.json").write_text(
        json.dumps([VOCAB, ["neg", "pos"]])
    )  # learn.dls.vocab of a classifier
    model, _ = convert_fastai_checkpoint(save(state, tmp_path / "c.pth"), tmp_path / "vocab.json")
    assert model.config.classifier_hidden_sizes == [5] and model.config.num_labels == 2
    assert model.config.id2label == {0: "neg", 1: "pos"}
    layers = model.head.layers
    assert torch.equal(layers[0].running_var, state["1.layers.0.0.running_var"])
    assert torch.equal(layers[2].weight, state["1.layers.0.2.weight"])
    assert torch.equal(layers[2].bias, torch.zeros(5))  # fastai's Linear after a batch norm has no bias
    assert torch.equal(layers[6].weight, state["1.layers.1.2.weight"])


def test_vocabulary_must_match_the_embedding(tmp_path, vocab_file):
    weights = save(fastai_state_dict("lm", vocab=len(VOCAB) + 8), tmp_path / "m.pth")
    with pytest.raises(ValueError, match="embedding has 58 rows"):
        convert_fastai_checkpoint(weights, vocab_file)


def test_vocabulary_formats(tmp_path):
    (tmp_path / "v.pkl").write_bytes(pickle.dumps(VOCAB))
    (tmp_path / "v.json").write_text(json.dumps(VOCAB))
    words = [token for token in VOCAB if "\n" not in token]
    (tmp_path / "v.txt").write_text("\n".join(words) + "\n")
    assert load_fastai_vocab(tmp_path / "v.pkl") == (VOCAB, None)
    assert load_fastai_vocab(tmp_path / "v.json") == (VOCAB, None)
    assert load_fastai_vocab(tmp_path / "v.txt") == (words, None)
    (tmp_path / "bad.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="list of strings"):
        load_fastai_vocab(tmp_path / "bad.json")


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([*VOCAB[:4], _Exploit(marker)])
    (tmp_path / "evil.pkl").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_fastai_vocab(tmp_path / "evil.pkl")
    import io

    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(_Exploit(marker)))).load()
    assert not marker.exists()


def test_weights_with_objects_are_refused(tmp_path):
    path = save({"model": fastai_state_dict(), "opt": _Exploit(tmp_path / "pwned")}, tmp_path / "m.pth")
    with pytest.raises(ValueError, match="weights_only"):
        load_fastai_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_cli_convert_fastai(tmp_path, vocab_file):
    weights = save(fastai_state_dict("classifier"), tmp_path / "c.pth")
    out = tmp_path / "out"
    args = ["convert-fastai", "--weights", str(weights), "--vocab", str(vocab_file), "--output_dir", str(out)]
    assert cli_main(args) == 0
    model = AWDLSTMForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2
    tokenizer = AutoTokenizer.from_pretrained(out)
    expected_ids = [VOCAB.index(t) for t in ["xxbos", "i", "like", "the", "movie"]]
    assert tokenizer("I like the movie")["input_ids"] == expected_ids
    texts = ["I like it", "a bad movie!"]
    with torch.no_grad():
        best = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).tolist()
    predictions = pipeline("text-classification", model=str(out))(texts)
    assert [p["label"] for p in predictions] == [model.config.id2label[i] for i in best]
    assert cli_main([*args[:-1], str(tmp_path / "lm"), "--kind", "lm"]) == 0
    assert isinstance(AWDLSTMForCausalLM.from_pretrained(tmp_path / "lm"), AWDLSTMForCausalLM)


def test_backward_checkpoints_read_backwards_from_the_flag_or_a_bwd_file_name(tmp_path, vocab_file):
    """fastai keeps the direction in its data, so the weights cannot tell: ``backwards`` (or a ``bwd`` name)
    sets it, and the converted model then equals the forward conversion on the document reversed by hand."""
    state = fastai_state_dict("classifier")
    plain, named = save(state, tmp_path / "clas.pth"), save(state, tmp_path / "clas_bwd.pth")
    forward, _ = convert_fastai_checkpoint(plain, vocab_file)
    by_name, _ = convert_fastai_checkpoint(named, vocab_file)
    by_flag, _ = convert_fastai_checkpoint(plain, vocab_file, backwards=True)
    overridden, _ = convert_fastai_checkpoint(named, vocab_file, backwards=False)
    assert [m.config.backwards for m in (forward, by_name, by_flag, overridden)] == [False, True, True, False]
    generator = torch.Generator().manual_seed(0)
    docs = [torch.randint(4, len(VOCAB), (n,), generator=generator) for n in DOC_LENGTHS]
    ids = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True, padding_value=1)
    mask = (torch.arange(ids.size(1)) < torch.tensor(DOC_LENGTHS)[:, None]).long()
    with torch.no_grad():
        expected = torch.cat([forward(torch.tensor(doc.tolist()[::-1])[None]).logits for doc in docs])
        torch.testing.assert_close(by_flag(ids, attention_mask=mask).logits, expected, atol=ATOL, rtol=0)
    lm_file = save(fastai_state_dict("lm"), tmp_path / "lstm_bwd.pth")
    assert convert_fastai_checkpoint(lm_file, vocab_file)[0].config.backwards is True
    out = tmp_path / "cli"
    args = ["convert-fastai", "--weights", str(plain), "--vocab", str(vocab_file), "--output_dir", str(out)]
    assert cli_main([*args, "--backwards"]) == 0
    assert AWDLSTMForSequenceClassification.from_pretrained(out).config.backwards is True


# ----------------------------------------------------------------------------------------------------------
# The tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_fastai_tokenizer(VOCAB)


def tokens_of(tokenizer, text: str) -> list[str]:
    """Token strings before the vocabulary lookup (so words outside VOCAB show)."""
    backend = tokenizer.backend_tokenizer
    words = backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))
    return ["xxbos"] + [word for word, _ in words]


@pytest.mark.parametrize("text, expected", HANDCRAFTED)
def test_tokenizer_reproduces_fastai_rules(tokenizer, text, expected):
    assert tokens_of(tokenizer, text) == expected.split(" ")


@pytest.mark.parametrize("count", [3, 9, 10, 11, 99, 100, 101, 110, 1000, 1001, 1010, 9999])
def test_repetition_counts(tokenizer, count):
    assert tokens_of(tokenizer, "x" + "!" * count)[-3:] == ["xxrep", str(count), "!"]
    assert tokens_of(tokenizer, " ".join(["ha"] * count) + " end")[1:5] == ["xxwrep", str(count), "ha", "end"]


def test_tokenizer_ids_padding_and_round_trip(tokenizer, tmp_path):
    batch = tokenizer(["I don't like it!", "the movie"], padding=True)
    ids = [VOCAB.index(t) for t in ["xxbos", "i", "do", "n't", "like", "it", "!"]]
    assert batch["input_ids"] == [ids, [VOCAB.index(t) for t in ["xxbos", "the", "movie"]] + [1] * 4]
    assert batch["attention_mask"][1] == [1, 1, 1, 0, 0, 0, 0]
    assert tokenizer("zebra")["input_ids"] == [2, 0]  # unknown word -> xxunk
    fake = VOCAB.index("xxfake")  # repeated vocabulary entries stay distinct
    assert tokenizer.convert_ids_to_tokens([fake, fake + 1]) == ["xxfake", f"xxdup{fake + 1}"]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(["I don't like it!"])["input_ids"] == [ids]


def test_tokenizer_takes_linear_time_on_punctuation(tokenizer):
    start = time.perf_counter()
    for text in (".'" * 20000, ":)" * 20000, "..'s" * 10000, "ha " * 20000):
        tokenizer(text)
    assert time.perf_counter() - start < 20


# ----------------------------------------------------------------------------------------------------------
# Parity with fastai


def test_fastai_tokens_match_handcrafted_expectations(fastai_dir):
    fastai_tokens = json.loads((fastai_dir / "tokens.json").read_text())
    assert fastai_tokens == [expected.split(" ") for _, expected in HANDCRAFTED]


@pytest.mark.parametrize("file", ["lm.pth", "lm_opt.pth"])
def test_language_model_parity(fastai_dir, tmp_path, file):
    convert_fastai_checkpoint(fastai_dir / file, fastai_dir / "vocab.json", tmp_path)
    model = AWDLSTMForCausalLM.from_pretrained(tmp_path).eval()
    reference = torch.load(fastai_dir / "lm_out.pt")
    with torch.no_grad():
        logits = model(reference["ids"]).logits
    torch.testing.assert_close(logits, reference["logits"], atol=ATOL, rtol=0)


def test_encoder_parity(fastai_dir, tmp_path):
    convert_fastai_checkpoint(fastai_dir / "encoder.pth", fastai_dir / "vocab.json", tmp_path)
    model = AWDLSTMForCausalLM.from_pretrained(tmp_path).eval()
    reference = torch.load(fastai_dir / "lm_out.pt")
    with torch.no_grad():
        encoded = model.awd_lstm(reference["ids"]).last_hidden_state
    torch.testing.assert_close(encoded, reference["encoded"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("hidden", [1150, 1152])
def test_wt103_release_format_parity(fastai_dir, tmp_path, hidden):
    release = fastai_dir / f"wt103_{hidden}"
    convert_fastai_checkpoint(release / "lstm_fwd.pth", release / "itos_wt103.pkl", tmp_path)
    model = AWDLSTMForCausalLM.from_pretrained(tmp_path).eval()
    assert model.config.hidden_size == hidden
    with torch.no_grad():
        logits = model(torch.load(fastai_dir / "lm_out.pt")["ids"]).logits
    torch.testing.assert_close(
        logits, torch.load(fastai_dir / f"wt103_{hidden}_logits.pt"), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("name", ["clas", "clas_p0"])
def test_classifier_parity(fastai_dir, tmp_path, name):
    convert_fastai_checkpoint(
        fastai_dir / f"{name}.pth", fastai_dir / "vocab.json", tmp_path, bptt=BPTT, max_len=MAX_LEN
    )
    model = AWDLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    reference = torch.load(fastai_dir / f"{name}_out.pt")
    with torch.no_grad():
        for doc, expected in zip(reference["docs"], reference["logits"]):
            torch.testing.assert_close(model(doc[None]).logits[0], expected, atol=ATOL, rtol=0)
        # batched with padding: our BPT3C gives every document the vector it gets alone
        ids = torch.nn.utils.rnn.pad_sequence(reference["docs"], batch_first=True, padding_value=1)
        mask = (torch.arange(ids.size(1)) < torch.tensor(DOC_LENGTHS)[:, None]).long()
        logits = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(logits, torch.stack(reference["logits"]), atol=ATOL, rtol=0)


def test_backward_classifier_parity(fastai_dir, tmp_path):
    """A fastai classifier trained with backwards=True data is fastai's model applied to each document flipped:
    converted with backwards=True, ours takes the document as written (fastai's input flipped back)."""
    convert_fastai_checkpoint(
        fastai_dir / "clas.pth",
        fastai_dir / "vocab.json",
        tmp_path,
        bptt=BPTT,
        max_len=MAX_LEN,
        backwards=True,
    )
    model = AWDLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    assert model.config.backwards is True
    reference = torch.load(fastai_dir / "clas_out.pt")
    with torch.no_grad():
        for doc, expected in zip(reference["docs"], reference["logits"]):
            torch.testing.assert_close(model(doc.flip(0)[None]).logits[0], expected, atol=ATOL, rtol=0)


def test_classifier_encoder_as_language_model(fastai_dir, tmp_path):
    model, _ = convert_fastai_checkpoint(fastai_dir / "clas.pth", fastai_dir / "vocab.json", kind="lm")
    state = torch.load(fastai_dir / "clas.pth")
    assert torch.equal(model.awd_lstm.layers[1].weight_hh_l0, state["0.module.rnns.1.weight_hh_l0_raw"])
    assert isinstance(model, AWDLSTMForCausalLM)
