"""Long documents: BPT3C reads a document of any length in ``bptt`` chunks and keeps only the pooled ``max_len``
positions, so classifying 200,000 tokens needs about the memory of 2,000, and a 1-million-character text goes
through the pipeline in seconds.

Memory is measured in a fresh interpreter per case, as the peak of its anonymous resident memory (torch's CPU
tensors live there; ``tracemalloc`` does not see them) minus that after the imports: what the model and the
classification take. The kernel keeps no peak of anonymous memory alone, and the total peak (``ru_maxrss``) also
counts pages of shared libraries mapped in at any time (up to the whole 400 MiB of libtorch here), so a thread
samples it every millisecond: the activations that would pile up if a long document were kept whole stay for
seconds and cannot be missed. One torch thread, so neither the measure nor the time depends on the machine's
load."""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import REVIEWS

SHORT, LONG = 2_000, 200_000
# Small but not trivial: one layer's outputs at every position of the long document take LONG * 64 * 4 bytes.
MODEL = dict(vocab_size=30000, embedding_size=64, hidden_size=64, num_hidden_layers=3, num_labels=2)
ALL_POSITIONS_MIB = LONG * MODEL["embedding_size"] * 4 / 2**20  # 48.8 MiB

PREAMBLE = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    import torch
    torch.set_num_threads(1)
    from hf_ulmfit import AWDLSTMConfig, AWDLSTMForSequenceClassification


    def anonymous_mib():  # resident memory that is not a mapped file: statm's resident minus shared pages
        with open("/proc/self/statm") as f:
            resident, shared = map(int, f.read().split()[1:3])
        return (resident - shared) * resource.getpagesize() / 2**20


    highest = [anonymous_mib()]


    def sample():
        while True:
            highest[0] = max(highest[0], anonymous_mib())
            time.sleep(0.001)


    def peak_mib():  # the most anonymous memory this process has held so far
        highest[0] = max(highest[0], anonymous_mib())
        return highest[0]


    threading.Thread(target=sample, daemon=True).start()
    base = anonymous_mib()  # the interpreter and the libraries
    """
)

CLASSIFY_IDS = PREAMBLE + textwrap.dedent(
    """
    mode, model_kwargs, lengths = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    torch.manual_seed(0)
    model = AWDLSTMForSequenceClassification(AWDLSTMConfig(**model_kwargs)).train(mode == "train")
    documents = {n: torch.randint(4, model_kwargs["vocab_size"], (1, n)) for n in [200, *lengths]}


    def classify(ids):
        if mode == "train":  # one training step's forward and backward
            output = model(ids, labels=torch.tensor([1]))
            output.loss.backward()
            model.zero_grad(set_to_none=False)
        else:
            with torch.no_grad():
                output = model(ids)
        return output.logits.detach()


    classify(documents[200])  # warm-up: kernels, allocator pools and (training) gradients
    result = {"base": base}
    for n in lengths:
        logits = classify(documents[n])
        result[n] = {"memory": peak_mib() - base, "finite": bool(logits.isfinite().all())}
    if mode == "eval":
        longest = documents[lengths[-1]]
        window = longest[:, -model.config.max_len :]
        result["window_only_differs"] = not torch.allclose(classify(longest), classify(window))
        with torch.no_grad():  # the control: an encoder that keeps every position's outputs
            model.awd_lstm(longest)
        result["all_positions"] = peak_mib() - base
    print("RESULT" + json.dumps(result))
    """
)

CLASSIFY_TEXT = PREAMBLE + textwrap.dedent(
    """
    from transformers import pipeline
    from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

    corpus, num_characters = json.loads(sys.argv[1]), int(sys.argv[2])
    tokenizer = train_tokenizer(corpus * 20, vocab_size=1000, show_progress=False)
    config = AWDLSTMConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=12, num_labels=2)
    model = AWDLSTMForSequenceClassification(config).eval()
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    classify("warm up")
    text = (" ".join(corpus) + " ") * (num_characters // len(" ".join(corpus)) + 1)
    text = text[:num_characters]
    start = time.perf_counter()
    scores = classify(text, top_k=None)
    seconds, memory = time.perf_counter() - start, peak_mib() - base
    tokens = len(tokenizer(text)["input_ids"])
    print("RESULT" + json.dumps({"memory": memory, "seconds": seconds, "scores": scores, "tokens": tokens}))
    """
)


def run_fresh(script: str, *args) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULT", 1)[1])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_200000_token_document_needs_about_the_memory_of_a_2000_token_one(mode):
    result = run_fresh(CLASSIFY_IDS, mode, json.dumps(MODEL), json.dumps([SHORT, LONG]))
    short, long = result[str(SHORT)], result[str(LONG)]
    assert short["finite"] and long["finite"]
    assert long["memory"] <= 1.5 * short["memory"], result
    # Sharper: the long document costs less extra memory than one layer's outputs at all its positions.
    assert long["memory"] - short["memory"] < ALL_POSITIONS_MIB, result
    if mode == "eval":
        assert result["window_only_differs"]  # the tokens before the pooled window count: nothing is cut off
        # The measure sees an encoder that keeps every position's outputs, so the bounds above mean something.
        assert result["all_positions"] > 1.5 * short["memory"] + ALL_POSITIONS_MIB, result


def test_a_million_characters_go_through_the_pipeline_in_seconds():
    result = run_fresh(CLASSIFY_TEXT, json.dumps(REVIEWS), 1_000_000)
    assert result["tokens"] > 150_000
    assert sorted(s["label"] for s in result["scores"]) == ["LABEL_0", "LABEL_1"]
    assert sum(s["score"] for s in result["scores"]) == pytest.approx(1.0)
    assert result["seconds"] < 120, result
    # Tokenizing is what takes memory (the Rust encoding holds offsets and token strings): about 150 MiB here.
    assert result["memory"] < 1024, result
