"""Turns a finished `hf-ulmfit pretrain` run into a shipped model directory: fp16 weights, the card, measured.

The shipped directory is a normal Hugging Face model directory (safetensors, config, tokenizer, card, the two code
files), pushable to the Hub as it is. Its weights are stored in float16 to halve the size; `config.json` keeps
`dtype: float32`, so `from_pretrained` gives a float32 model. The script measures, and the card states:

* validation perplexity per token and per word (total NLL over whitespace words, so that vocabularies compare)
  of the run's model and of the fp16-stored copy loaded back (they must agree to 0.1%);
* per-word perplexity on WikiText-2 test (one `<eos>` per line counted as a word, as its published figures
  count them; the text is read as it is distributed, `<unk>` and ` @-@ ` included, so the figure orients only);
* the same per-token figure on `tests/data/wikipedia_valid_slice.parquet`, the held-out slice the test suite
  checks the shipped weights against.

Perplexities are computed over one token stream per corpus (every document with its `<bos>`), cut into `--rows`
contiguous rows read in windows of `bptt` tokens with the state carried, as the trainer evaluates. Example::

    python scripts/package_pretrained_lm.py --run_dir ../runs/wiki-lm --name awd-lstm-wiki-en \\
        --output_dir src/hf_ulmfit/pretrained/awd-lstm-wiki-en --train_hours 3.9 --command "hf-ulmfit pretrain ..."
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_ulmfit  # noqa: F401  (registers awd_lstm)
from _machine import cpu_model
from hf_ulmfit.cards import copy_campaign_plots, write_model_card
from hf_ulmfit.data import mean_window_length

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / ".." / "shared" / "data"
SLICE = REPO_ROOT / "tests" / "data" / "wikipedia_valid_slice.parquet"


def perplexities(model, tokenizer, texts: list[str], words: int, rows: int = 16) -> dict[str, float]:
    """Per-token and per-word perplexity of the concatenated documents (each with its <bos>), read as ``rows``
    contiguous rows in windows of ``bptt`` with the state carried; per word scales the total NLL of all targets.

    A backward LM reads the stream right to left, as the trainer feeds it (``LanguageModelStream``): the rows and
    windows are cut from the reversed stream, and each window goes in flipped back to text order, since the model
    reverses a window itself; its targets are then the token before each input."""
    ids = torch.tensor([i for doc in tokenizer(texts)["input_ids"] for i in doc])
    backwards = model.config.backwards
    stream = ids.flip(0) if backwards else ids
    length = (len(stream) - 1) // rows
    inputs = stream[: rows * length].view(rows, length)
    targets = stream[1 : rows * length + 1].view(rows, length)
    total, state, bptt = 0.0, None, model.config.bptt
    model.eval()
    with torch.no_grad():
        for start in range(0, length, bptt):
            window, target = inputs[:, start : start + bptt], targets[:, start : start + bptt]
            if backwards:
                window, target = window.flip(1), target.flip(1)
            out = model(input_ids=window, cache=state)
            state = out.cache
            logits = out.logits.float()
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="sum"
            ).item()
    mean_nll, all_targets = total / (rows * length), len(ids) - 1
    return {
        "tokens": len(ids),
        "words": words,
        "ppl_token": math.exp(mean_nll),
        "ppl_word": math.exp(mean_nll * all_targets / words),
    }


def texts_of(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run_dir", type=Path, required=True, help="the pretrain output_dir")
    parser.add_argument("--name", required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument(
        "--train_hours", type=float, required=True, help="wall hours of the run, all sessions"
    )
    parser.add_argument("--command", required=True, help="the pretrain command, for the card")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--data_dir", type=Path, default=DATA)
    parser.add_argument(
        "--plot_dir",
        type=Path,
        default=REPO_ROOT / "docs",
        help="the accuracy campaign's plots (reproduce_accuracy.py report), copied into the model directory",
    )
    args = parser.parse_args(argv)

    tokenizer = AutoTokenizer.from_pretrained(args.run_dir)
    model = AutoModelForCausalLM.from_pretrained(args.run_dir, dtype=torch.float32)
    state = json.loads((args.run_dir / "trainer_state.json").read_text())
    training_args = json.loads((args.run_dir / "training_args.json").read_text())
    rows, bptt = training_args["per_device_train_batch_size"], model.config.bptt
    steps = state["global_step"]
    tokens_seen = steps * rows * mean_window_length(bptt)

    valid = texts_of(args.data_dir / "wikipedia-en" / "valid.parquet")
    valid_words = sum(len(text.split()) for text in valid)
    wikitext = texts_of(args.data_dir / "wikitext-2" / "test.parquet")
    slice_texts = texts_of(SLICE)
    measured = {}
    started = time.time()
    measured["valid"] = perplexities(model, tokenizer, valid, valid_words, args.rows)
    # WikiText-2 as distributed: one line per row; its word count is the whitespace tokens plus one <eos> a line.
    wikitext_words = sum(len(line.split()) + 1 for line in wikitext)
    measured["wikitext2_test"] = perplexities(
        model, tokenizer, ["\n".join(wikitext)], wikitext_words, args.rows
    )

    # fp16 storage, float32 on load.
    if args.output_dir.exists():
        shutil.rmtree(args.output_dir)
    model.to(torch.float16).save_pretrained(args.output_dir)
    config_path = args.output_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(args.output_dir)
    shipped = AutoModelForCausalLM.from_pretrained(args.output_dir)
    assert shipped.dtype == torch.float32, shipped.dtype
    measured["valid_fp16_stored"] = perplexities(shipped, tokenizer, valid, valid_words, args.rows)
    measured["test_slice_fp16_stored"] = perplexities(
        shipped, tokenizer, slice_texts, sum(len(t.split()) for t in slice_texts), args.rows
    )
    change = measured["valid_fp16_stored"]["ppl_token"] / measured["valid"]["ppl_token"] - 1
    print(
        json.dumps(measured, indent=2), f"\nfp16 storage changes the validation perplexity by {change:+.4%}"
    )
    if abs(change) > 1e-3:
        raise SystemExit("fp16 storage changed the perplexity by more than 0.1%: ship float32 weights")

    c = model.config
    direction = (
        "backward: reads each text right to left (ULMFiT section 3.4); the forward LM's tokenizer, so that "
        "classifiers from the two combine into the paper's ensemble (`hf-ulmfit combine-bidirectional`)"
        if c.backwards
        else "forward (left to right)"
    )
    details = f"""## How this model was trained

Stage 1 of ULMFiT, run once by the hf-ulmfit developers so that a user's stage 2 starts from a general-domain
LM: `hf_ulmfit.pretrained_path("{args.name}")` is this directory, and every stage takes
`--model_name_or_path {args.name}`.

| | |
|---|---|
| data | English Wikipedia: `wikipedia-en` (23,841 articles of about 2018) and `wikipedia-en-2015` (14,447 articles of a March 2015 dump), about 49M words, CC BY-SA 3.0 |
| tokens seen | {tokens_seen / 1e6:.1f}M ({steps:,} steps of {rows} rows x ~{bptt} tokens, variable BPTT) |
| training time | {args.train_hours:.1f} hours on {cpu_model()} (2 cores, bf16 autocast, no GPU) |
| model | {c.num_hidden_layers}-layer AWD-LSTM {c.embedding_size}/{c.hidden_size}, {c.vocab_size:,}-token BPE |
| direction | {direction} |
| weights | stored in float16, loaded as float32 (validation perplexity changed by {change:+.3%}) |

Command:

```bash
{args.command}
```

Perplexity (per token: this model's BPE tokens; per word: the total NLL over whitespace-separated words):

| data | tokens | words | per token | per word |
|---|---|---|---|---|
| `wikipedia-en` validation (486 held-out articles) | {measured["valid"]["tokens"]:,} | {measured["valid"]["words"]:,} | {measured["valid"]["ppl_token"]:.2f} | {measured["valid"]["ppl_word"]:.2f} |
| WikiText-2 test, as distributed | {measured["wikitext2_test"]["tokens"]:,} | {wikitext_words:,} | {measured["wikitext2_test"]["ppl_token"]:.2f} | {measured["wikitext2_test"]["ppl_word"]:.2f} |
| held-out slice of the test suite (`tests/data/wikipedia_valid_slice.parquet`) | {measured["test_slice_fp16_stored"]["tokens"]:,} | {measured["test_slice_fp16_stored"]["words"]:,} | {measured["test_slice_fp16_stored"]["ppl_token"]:.3f} | {measured["test_slice_fp16_stored"]["ppl_word"]:.2f} |

For orientation only: the published AWD-LSTM (Merity et al. 2018) reaches 68.6 per word on WikiText-2 test, trained
on WikiText-2 itself with its 33k-word vocabulary, where `<unk>` is one easy token. This model never saw WikiText,
reads `<unk>` and the ` @-@ ` / ` @,@ ` escapes as the characters they are, and was trained on
{tokens_seen / 1e6:.0f}M tokens on a CPU, so the two figures are not comparable.

Measured by `scripts/package_pretrained_lm.py` on {time.strftime("%Y-%m-%d")} ({time.time() - started:.0f} s).
"""
    copy_campaign_plots(args.plot_dir, args.output_dir)  # the card links them
    write_model_card(
        args.output_dir,
        "pretrain",
        model.config,
        metrics={"eval_perplexity": measured["valid"]["ppl_token"]},
        model_name=args.name,
        datasets=["wikipedia-en-2015", "wikipedia-en"],  # the last one names the validation data
        language="en",
        license="cc-by-sa-3.0",
        num_parameters=model.num_parameters(),
        details=details,
        campaign_plots=True,
    )
    measured["training"] = {
        "steps": steps,
        "tokens_seen": round(tokens_seen),
        "hours": args.train_hours,
        "backwards": c.backwards,
    }
    (args.output_dir / "measurements.json").write_text(json.dumps(measured, indent=2) + "\n")
    print(f"wrote {args.output_dir}")


if __name__ == "__main__":
    main()
