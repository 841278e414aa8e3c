import pytest

from hf_ulmfit import AWDLSTMConfig
from hf_ulmfit.configuration_awd_lstm import CLASSIFIER_DROPOUTS, LANGUAGE_MODEL_DROPOUTS


def test_defaults_are_the_papers_sizes():
    config = AWDLSTMConfig()
    assert (config.embedding_size, config.hidden_size, config.num_hidden_layers) == (400, 1152, 3)
    assert (config.bptt, config.max_len, config.classifier_hidden_sizes) == (72, 1440, [50])
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (1, 2, 3)
    assert config.tie_word_embeddings


def test_dropout_presets_are_one_call_away():
    lm = AWDLSTMConfig.for_language_model()
    clas = AWDLSTMConfig.for_classifier(dropout_multiplier=0.5, vocab_size=100)
    for name, p in LANGUAGE_MODEL_DROPOUTS.items():
        assert getattr(lm, name) == p
    for name, p in CLASSIFIER_DROPOUTS.items():
        assert getattr(clas, name) == pytest.approx(p * 0.5)
    assert clas.classifier_dropouts == [pytest.approx(0.2), 0.1]
    assert clas.vocab_size == 100
    # The paper's classifier values (ULMFiT section 4).
    assert CLASSIFIER_DROPOUTS == {
        "embedding_dropout": 0.05,
        "input_dropout": 0.4,
        "weight_dropout": 0.5,
        "hidden_dropout": 0.3,
        "output_dropout": 0.4,
    }


def test_round_trip_through_save_pretrained(tmp_path):
    config = AWDLSTMConfig(
        vocab_size=77,
        hidden_size=33,
        classifier_hidden_sizes=[20, 10],
        classifier_dropouts=[0.3, 0.2, 0.1],
        num_labels=4,
    )
    config.save_pretrained(tmp_path)
    loaded = AWDLSTMConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.num_labels == 4


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(input_dropout=1.0), "input_dropout"),
        (dict(weight_dropout=-0.1), "weight_dropout"),
        (dict(classifier_dropouts=[0.4, 1.5]), r"classifier_dropouts\[1\]"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(vocab_size=0, pad_token_id=None, bos_token_id=None, eos_token_id=None), "vocab_size"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(bptt=0), "bptt"),
        (dict(vocab_size=10, pad_token_id=10), "pad_token_id"),
        (dict(bos_token_id=-1), "bos_token_id"),
        (dict(classifier_dropouts=[0.1]), "one probability per linear layer"),
        (dict(classifier_hidden_sizes=[0]), "classifier_hidden_sizes"),
        (dict(classifier_hidden_sizes=None), "classifier_hidden_sizes must be a list"),
        (dict(activation_regularization=float("nan")), "activation_regularization must be a finite number"),
        (dict(temporal_activation_regularization="1.0"), "temporal_activation_regularization"),
        (dict(num_labels=0), "num_labels must be >= 1"),
    ],
)
def test_impossible_values_raise_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        AWDLSTMConfig(**bad)


def test_integer_dropout_is_accepted():
    assert AWDLSTMConfig(weight_dropout=0).weight_dropout == 0
