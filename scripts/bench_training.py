"""Training throughput on CPU: our AWD-LSTM vs fastai's, same size, same weights, same batches.

What one step is, on both sides: forward, loss (cross-entropy + the AR/TAR of AWD-LSTM), backward, optimizer
step, zero_grad; the recurrent state of the LM is carried (detached) from step to step, as in training.

* LM: ``--lm_batch`` x ``--bptt`` windows (default 64 x 72) of a token stream of IMDb train reviews.
  Ours: ``AWDLSTMForCausalLM`` (``AWDLSTMConfig.for_language_model``), loss with ``shift_labels``, AdamW
  (``fused=True``, the optimizer ``ULMFiTTrainer`` gets from the Trainer's default ``optim``) over the
  discriminative parameter groups of ``hf_ulmfit.trainer.discriminative_param_groups``, and gradient clipping at
  1.0 (the Trainer's default ``max_grad_norm``). fastai: ``get_language_model(AWD_LSTM, vocab_sz)`` with
  ``awd_lstm_lm_config``, ``CrossEntropyLossFlat`` + ``RNNRegularizer(alpha=2, beta=1)``, fastai's ``Adam``
  (wd 0.01) over ``awd_lstm_lm_split`` (what ``language_model_learner`` trains with), no clipping.
* Classifier: batches of ``--clas_batch`` IMDb train reviews (default 32), encoded with BPT3C (chunks of 72,
  pooling over the last 1440 tokens); ``--clas_batches`` kinds: "random" (32 reviews drawn at random: lengths
  vary, so padding matters) and "grouped" (32 reviews of similar length, as the length-grouped samplers of both
  libraries make them). Ours: ``AWDLSTMForSequenceClassification`` (``for_classifier(dropout_multiplier=0.5)``),
  right padding + attention mask, AdamW fused + clipping as above. fastai: ``get_text_classifier(AWD_LSTM, ...,
  drop_mult=0.5)`` as ``text_classifier_learner`` builds it, rows collated as ``SortedDL`` + ``pad_input_chunk``
  do, ``CrossEntropyLossFlat`` + AR/TAR (``TextLearner`` adds ``RNNRegularizer`` to classifiers too).

Both models start from the same random weights: fastai's initial weights are converted to ours with
``hf_ulmfit.convert_fastai``; the eval-mode LM loss / classifier logits of both are compared as a check.

A third contender, "ours bf16-autocast" (``--no_bf16`` drops it), is our step with the forward and the loss under
``torch.autocast("cpu", dtype=torch.bfloat16)``, which is what the Trainer's ``bf16=True`` does on a CPU: the GEMMs
and oneDNN's LSTM run in bfloat16 (this CPU has AVX512-BF16), weights, gradients and AdamW stay float32.

fastai runs in its own venv (``--fastai_python``) as a long-lived subprocess (``scripts/_fastai_training_peer.py``)
so the contenders take turns step by step (ours, fastai, ours bf16, then the order rotates) under the same
background load, each with ``--threads`` torch threads while the others wait. Every step is timed by wall clock and
by process CPU time: on a shared machine the wall time depends on the share of a core the scheduler gives, while
with one thread the CPU time is the work itself, so the CPU-time ratios are the ones to trust under load.

Reported: tokens/s (best and median step, wall and CPU time), ratios to fastai, nominal FLOP/s (matrix-multiply
FLOPs of the LSTMs and the decoder, x3 for forward + backward) against this machine's measured ``torch.mm`` peak
(2048^3 fp32, and bf16, same threads, measured in both processes before and after), and where the time goes
(``torch.profiler`` self CPU time per bucket for ours and fastai; the profiler clock is wall time, so under load
its seconds are inflated but the shares hold). ``--quick`` is a smoke run (a tiny model, tiny batches). Example::

    .venv/bin/python scripts/bench_training.py --output /work/runs-bench/training.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine_info, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "_fastai_training_peer.py"


# ----------------------------------------------------------------------------------------------------------
# Machine load


class LoadMeter:
    """How busy the machine was during a run: all CPUs (from ``/proc/stat``) minus this benchmark's processes."""

    def __init__(self):
        self.start_busy, self.start_time, self.start_load = self._busy(), time.monotonic(), os.getloadavg()

    @staticmethod
    def _busy() -> float:
        """Busy CPU seconds of the whole machine since boot (user+nice+system+irq+softirq+steal)."""
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        busy = (
            fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)
        )
        return busy / os.sysconf("SC_CLK_TCK")

    def report(self, own_cpu_seconds: float) -> dict[str, float]:
        elapsed = time.monotonic() - self.start_time
        busy = self._busy() - self.start_busy
        return {
            "wall_s": elapsed,
            "loadavg_1m_start": self.start_load[0],
            "loadavg_1m_end": os.getloadavg()[0],
            "busy_cores_all": busy / elapsed,
            "busy_cores_this_benchmark": own_cpu_seconds / elapsed,
            "busy_cores_others": max(0.0, (busy - own_cpu_seconds) / elapsed),
        }


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------------------------------------
# The fastai peer


class Peer:
    """The fastai subprocess: one JSON command per line in, one ``@@{json}`` line out."""

    def __init__(self, python: str, threads: int, log_path: Path):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.log = open(log_path, "w")  # noqa: SIM115  (closed in close())
        self.process = subprocess.Popen(
            [python, str(PEER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, env=env, bufsize=1,
        )  # fmt: skip
        self.log_path = log_path

    def __call__(self, **command) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("@@"):
                answer = json.loads(line[2:])
                if "error" in answer:
                    raise RuntimeError(f"fastai peer: {answer['error']}\n{answer.get('traceback', '')}")
                return answer
        raise RuntimeError(f"fastai peer died; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self(cmd="quit")
            self.process.wait(timeout=60)
        self.log.close()


# ----------------------------------------------------------------------------------------------------------
# Ours


class OursSide:
    """Our model with fastai's initial weights, and the step ULMFiTTrainer takes."""

    def __init__(
        self,
        kind: str,
        weights_path: str,
        config,
        batches: list[dict],
        lr: float,
        threads: int,
        bf16: bool = False,
    ):
        import contextlib

        import torch

        from hf_ulmfit.convert_fastai import hf_state_dict, load_fastai_state_dict, read_fastai_weights
        from hf_ulmfit.modeling_awd_lstm import AWDLSTMForCausalLM, AWDLSTMForSequenceClassification
        from hf_ulmfit.trainer import discriminative_param_groups

        torch.set_num_threads(threads)
        self.torch, self.kind, self.batches = torch, kind, batches
        # bf16: the Trainer's ``bf16=True`` on CPU, i.e. forward and loss under torch.autocast (GEMMs and the
        # oneDNN LSTM in bfloat16, weights and optimizer in float32).
        self.autocast = (
            (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        )
        model_class = AWDLSTMForCausalLM if kind == "lm" else AWDLSTMForSequenceClassification
        self.model = model_class(config)
        state = hf_state_dict(read_fastai_weights(load_fastai_state_dict(weights_path)), kind)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [key for key in missing if key != "decoder.weight"]
        if missing or unexpected:
            raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
        groups = discriminative_param_groups(self.model, lr, 2.6, weight_decay=0.01)
        for group in groups:
            group.pop("layer_group"), group.pop("depth")
        self.optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
        self.cache = None
        self.model.train()

    def _forward(self, batch: dict):
        if self.kind == "lm":
            out = self.model(input_ids=batch["input_ids"], cache=self.cache, shift_labels=batch["labels"])
            self.cache = tuple((h.detach(), c.detach()) for h, c in out.cache)
            return out
        return self.model(**batch)

    def step(self, batch: dict) -> None:
        with self.autocast():
            loss = self._forward(batch).loss
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def steps(self, index: int, n: int) -> list[list[float]]:
        from _fastai_training_peer import timed_steps

        return timed_steps(lambda: self.step(self.batches[index]), n, self.model)

    def eval(self, index: int) -> dict[str, Any]:
        self.model.eval()
        with self.torch.no_grad(), self.autocast():
            if self.kind == "lm":
                batch = self.batches[index]
                out = self.model(input_ids=batch["input_ids"], shift_labels=batch["labels"])
                result = {"loss": float(out.loss)}
            else:
                result = {"logits": self.model(**self.batches[index]).logits.float().tolist()}
        self.model.train()
        return result

    def profile(self, index: int) -> dict[str, Any]:
        from _fastai_training_peer import categorize, profile_rows

        self.model.train()
        rows, wall = profile_rows(lambda: self.step(self.batches[index]))
        rows.sort(key=lambda r: -r[1])
        return {"categories": categorize(rows), "top": rows[:15], "wall": wall}


# ----------------------------------------------------------------------------------------------------------
# Data


def get_tokenizer(args: argparse.Namespace, texts: list[str]):
    from transformers import AutoTokenizer

    from hf_ulmfit.tokenization_awd_lstm import train_tokenizer

    if args.tokenizer:
        return AutoTokenizer.from_pretrained(args.tokenizer), args.tokenizer
    cache = args.cache_dir / f"tokenizer-imdb-{args.vocab_size}-{len(texts)}"
    if (cache / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(
            cache
        ), f"{cache} (BPE, trained on {len(texts)} IMDb train reviews)"
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size, show_progress=False)
    tokenizer.save_pretrained(cache)
    return tokenizer, f"BPE trained on {len(texts)} IMDb train reviews (cached in {cache})"


def lm_batches(tokenizer, texts: list[str], batch: int, bptt: int, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` consecutive (batch x bptt) windows of one token stream split into ``batch`` rows, as
    ``LanguageModelStream`` reads them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    need, stream, order = batch * (bptt * n + 1), [], rng.permutation(len(texts))
    for i in order:
        stream.extend(tokenizer(texts[i])["input_ids"])
        if len(stream) >= need:
            break
    rows = np.asarray(stream[:need], dtype=np.int64).reshape(batch, bptt * n + 1)
    return [{"x": np.ascontiguousarray(rows[:, i * bptt : (i + 1) * bptt]),
             "y": np.ascontiguousarray(rows[:, i * bptt + 1 : (i + 1) * bptt + 1])} for i in range(n)]  # fmt: skip


def classifier_batches(
    tokenizer,
    texts: list[str],
    labels: list[int],
    batch: int,
    kinds: list[str],
    seed: int,
    max_tokens: int | None,
) -> list[dict[str, Any]]:
    """One batch per kind: "random" (any lengths) or "grouped" (a run of similar lengths from a length-sorted
    sample of 50 batches, as LengthGroupedSampler / SortedDL make them; the run at the median length)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        if kind == "random":
            rows = rng.choice(len(texts), size=batch, replace=False)
        else:
            pool = rng.choice(len(texts), size=min(len(texts), 50 * batch), replace=False)
            lengths = np.array([len(tokenizer(texts[i])["input_ids"]) for i in pool])
            sorted_pool = pool[np.argsort(lengths, kind="stable")]
            middle = len(sorted_pool) // 2 - batch // 2
            rows = sorted_pool[middle : middle + batch]
        ids = [tokenizer(texts[i])["input_ids"][: max_tokens or None] for i in rows]
        lengths = np.array([len(x) for x in ids])
        padded = np.full((batch, lengths.max()), tokenizer.pad_token_id, dtype=np.int64)
        for r, x in enumerate(ids):
            padded[r, : len(x)] = x
        out.append({"kind": kind, "ids": padded, "lengths": lengths,
                    "labels": np.array([labels[i] for i in rows], dtype=np.int64)})  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------
# FLOPs


def forward_flops_per_token(config, with_decoder: bool) -> float:
    """Multiply-add FLOPs (x2) of one token through the LSTMs (input and hidden GEMMs of 4 gates) and, for an LM,
    the decoder. Elementwise work (gates, dropout, softmax) is left out."""
    from hf_ulmfit.modeling_awd_lstm import AWDLSTMModel

    lstm = sum(2 * 4 * n_out * (n_in + n_out) for n_in, n_out in AWDLSTMModel.layer_sizes(config))
    return lstm + (2 * config.embedding_size * config.vocab_size if with_decoder else 0)


# ----------------------------------------------------------------------------------------------------------
# Running one task


def run_task(task: str, args, peer: Peer, tokenizer, texts, labels, scratch: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from hf_ulmfit.configuration_awd_lstm import AWDLSTMConfig

    sizes = dict(vocab_size=args.vocab_size, embedding_size=args.size[0], hidden_size=args.size[1],
                 num_hidden_layers=args.size[2])  # fmt: skip
    fastai_config = {"emb_sz": args.size[0], "n_hid": args.size[1], "n_layers": args.size[2]}
    data_path, weights_path = scratch / f"{task}.npz", scratch / f"{task}.pth"
    if task == "lm":
        raw = lm_batches(tokenizer, texts, args.lm_batch, args.bptt, 1, args.seed)
        np.savez(data_path, n=len(raw), **{f"x{i}": b["x"] for i, b in enumerate(raw)},
                 **{f"y{i}": b["y"] for i, b in enumerate(raw)})  # fmt: skip
        batches = [{"input_ids": torch.from_numpy(b["x"]), "labels": torch.from_numpy(b["y"])} for b in raw]
        names = [f"{args.lm_batch}x{args.bptt}"]
        tokens = [args.lm_batch * args.bptt]
        padded_tokens = tokens
        config = AWDLSTMConfig.for_language_model(**sizes, bptt=args.bptt)
        peer_spec = {"kind": "lm", "config": fastai_config}
    else:
        raw = classifier_batches(tokenizer, texts, labels, args.clas_batch, args.clas_batches, args.seed,
                                 args.clas_max_tokens)  # fmt: skip
        np.savez(data_path, n=len(raw), **{f"ids{i}": b["ids"] for i, b in enumerate(raw)},
                 **{f"len{i}": b["lengths"] for i, b in enumerate(raw)},
                 **{f"labels{i}": b["labels"] for i, b in enumerate(raw)})  # fmt: skip
        batches = []
        for b in raw:
            ids = torch.from_numpy(b["ids"])
            mask = (torch.arange(ids.size(1))[None, :] < torch.from_numpy(b["lengths"])[:, None]).long()
            batches.append(
                {"input_ids": ids, "attention_mask": mask, "labels": torch.from_numpy(b["labels"])}
            )
        names = [f"{b['kind']} {args.clas_batch} reviews" for b in raw]
        tokens = [int(b["lengths"].sum()) for b in raw]
        padded_tokens = [int(b["ids"].size) for b in raw]
        config = AWDLSTMConfig.for_classifier(dropout_multiplier=0.5, **sizes, bptt=args.bptt, max_len=args.max_len,
                                              num_labels=2)  # fmt: skip
        peer_spec = {"kind": "classifier", "config": fastai_config, "num_labels": 2, "bptt": args.bptt,
                     "max_len": args.max_len, "drop_mult": 0.5}  # fmt: skip
    print(f"[{task}] setting up fastai ...", flush=True)
    setup = peer(cmd="setup", data=str(data_path), weights_out=str(weights_path), vocab_size=args.vocab_size,
                 threads=args.threads, seed=args.seed, lr=args.lr, **peer_spec)  # fmt: skip
    ours = OursSide(task, str(weights_path), config, batches, args.lr, args.threads)
    contenders = {"ours": ours.steps, "fastai": lambda b, n: peer(cmd="steps", batch=b, n=n)["seconds"]}
    if args.bf16:
        ours_bf16 = OursSide(task, str(weights_path), config, batches, args.lr, args.threads, bf16=True)
        contenders["ours bf16-autocast"] = ours_bf16.steps

    # Same function? eval-mode loss (LM) / logits (classifier) on the same weights and batch.
    check = {}
    for b in range(len(batches)):
        theirs_eval, ours_eval = peer(cmd="eval", batch=b), ours.eval(b)
        if task == "lm":
            check[names[b]] = {"ours_loss": ours_eval["loss"], "fastai_loss": theirs_eval["loss"]}
            if args.bf16:
                check[names[b]]["ours_bf16_loss"] = ours_bf16.eval(b)["loss"]
        else:
            diff = np.abs(np.array(ours_eval["logits"]) - np.array(theirs_eval["logits"])).max()
            check[names[b]] = {"max_abs_logit_diff": float(diff)}
            if args.bf16:
                diff = np.abs(np.array(ours_bf16.eval(b)["logits"]) - np.array(theirs_eval["logits"])).max()
                check[names[b]]["bf16_max_abs_logit_diff"] = float(diff)
    print(f"[{task}] same weights, eval check: {check}", flush=True)

    # Warm-up, then timed steps, the contenders taking turns (the order rotates every round).
    times = {who: {name: [] for name in names} for who in contenders}
    for steps in contenders.values():
        steps(0, 1)
    order = list(contenders)
    for r in range(args.repeats):
        for b, name in enumerate(names):
            for who in order[r % len(order) :] + order[: r % len(order)]:
                times[who][name].extend(contenders[who](b, args.steps))
            print(f"[{task}] round {r + 1}/{args.repeats} {name}: " + ", ".join(
                f"{who} {min(w for w, _ in times[who][name]):.2f}s wall / {min(c for _, c in times[who][name]):.2f}s cpu"
                for who in contenders) + " (best step so far)", flush=True)  # fmt: skip

    profiles = {}
    if args.profile:
        print(f"[{task}] profiling ...", flush=True)
        b = len(batches) - 1
        profiles = {"ours": ours.profile(b), "fastai": peer(cmd="profile", batch=b), "batch": names[b]}

    flops_token = 3 * forward_flops_per_token(config, with_decoder=(task == "lm"))
    rows = {}
    for b, name in enumerate(names):
        entry = {"real_tokens": tokens[b], "padded_tokens": padded_tokens[b], "contenders": {}}
        for who in contenders:
            wall = [w for w, _ in times[who][name]]
            cpu = [c for _, c in times[who][name]]
            entry["contenders"][who] = {
                "steps_wall_cpu": times[who][name],
                "tok_s_wall": tokens[b] / min(wall), "tok_s_wall_median": tokens[b] / statistics.median(wall),
                "tok_s_cpu": tokens[b] / min(cpu), "tok_s_cpu_median": tokens[b] / statistics.median(cpu),
                "gflops_wall": flops_token * tokens[b] / min(wall) / 1e9,
                "gflops_cpu": flops_token * tokens[b] / min(cpu) / 1e9,
            }  # fmt: skip
        ref = entry["contenders"]["fastai"]
        for numbers in entry["contenders"].values():
            for key in ("tok_s_wall", "tok_s_wall_median", "tok_s_cpu", "tok_s_cpu_median"):
                numbers["x_fastai_" + key[6:]] = numbers[key] / ref[key]
        rows[name] = entry
    return {"rows": rows, "check": check, "profiles": profiles, "fastai_setup": setup,
            "train_flops_per_token": flops_token}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Output


def print_report(result: dict[str, Any]) -> str:
    lines = []
    p = lines.append
    m = result["machine"]
    p(f"### Training throughput: ours vs fastai ({result['date']})\n")
    p(f"Command: `{result['command']}`\n")
    p(f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['platform']}; python {m['python']}; "
      f"ours: torch {m['torch']}, transformers {m['transformers']}; fastai peer: fastai {result['fastai_versions']['fastai']}, "
      f"torch {result['fastai_versions']['torch']}; {result['threads']} torch thread(s) each.\n")  # fmt: skip
    load = result["load"]
    p(
        f"Load during the run ({load['wall_s']:.0f} s): load average {load['loadavg_1m_start']:.2f} -> "
        f"{load['loadavg_1m_end']:.2f}; CPU cores busy on average: {load['busy_cores_all']:.2f} in all, "
        f"{load['busy_cores_this_benchmark']:.2f} this benchmark, {load['busy_cores_others']:.2f} other processes.\n"
    )
    peak = result["mm_peak_gflops"]
    p(f"Matrix-multiply peak (torch.mm 2048^3, {result['threads']} thread(s), best of the runs before and after): fp32 "
      f"{peak['ours']['wall']:.1f} GFLOP/s by wall time, {peak['ours']['cpu']:.1f} by CPU time (peer's torch: "
      f"{peak['fastai']['wall']:.1f} / {peak['fastai']['cpu']:.1f}); bf16 {peak['ours_bf16']['wall']:.1f} / "
      f"{peak['ours_bf16']['cpu']:.1f}.\n")  # fmt: skip
    p(
        f"Model: {result['size']} AWD-LSTM, vocabulary {result['vocab_size']} ({result['tokenizer']}), the same random "
        f"initial weights on both sides.\n"
    )
    p(
        "| task | batch | real tokens (padded) | contender | tok/s wall (best) | x fastai | tok/s wall (median) | x fastai "
        "| tok/s CPU time (best) | x fastai | (median) | x fastai | GFLOP/s by CPU time | % of fp32 mm peak |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task, t in result["tasks"].items():
        for name, r in t["rows"].items():
            for who, c in r["contenders"].items():
                p(f"| {task} | {name} | {r['real_tokens']} ({r['padded_tokens']}) | {who} "
                  f"| {c['tok_s_wall']:.0f} | {c['x_fastai_wall']:.2f}x | {c['tok_s_wall_median']:.0f} "
                  f"| {c['x_fastai_wall_median']:.2f}x | {c['tok_s_cpu']:.0f} | {c['x_fastai_cpu']:.2f}x "
                  f"| {c['tok_s_cpu_median']:.0f} | {c['x_fastai_cpu_median']:.2f}x | {c['gflops_cpu']:.1f} "
                  f"| {100 * c['gflops_cpu'] / peak['ours']['cpu']:.0f}% |")  # fmt: skip
    p("")
    steps = {task: len(next(iter(t["rows"].values()))["contenders"]["ours"]["steps_wall_cpu"])
             for task, t in result["tasks"].items()}  # fmt: skip
    p(
        "One step = forward + loss + backward + optimizer step + zero_grad. tok/s: real (non-padding) tokens per "
        "second of the best (and the median) step; timed steps per contender: "
        + ", ".join(f"{task} {n}" for task, n in steps.items())
        + ". Wall time depends on the share of a core the "
        "scheduler gives each process under the background load; with one thread, process CPU time measures the "
        "work itself. GFLOP/s: nominal matrix-multiply FLOPs of the LSTMs (and the LM decoder) per real token x3 "
        "(forward + backward), per CPU second, against the fp32 torch.mm peak per CPU second.\n"
    )
    for task, t in result["tasks"].items():
        p(f"Eval check ({task}, same weights): {json.dumps(t['check'])}\n")
    for task, t in result["tasks"].items():
        if not t["profiles"]:
            continue
        po, pf = t["profiles"]["ours"], t["profiles"]["fastai"]
        p(
            f"Where the time goes, {task} step ({t['profiles']['batch']}), torch.profiler self CPU time "
            f"(profiled step: ours {po['wall']:.2f} s, fastai {pf['wall']:.2f} s wall):\n"
        )
        p("| bucket | ours s | ours % | fastai s | fastai % |")
        p("|---|---|---|---|---|")
        total_o, total_f = sum(po["categories"].values()), sum(pf["categories"].values())
        for bucket in po["categories"]:
            so, sf = po["categories"][bucket], pf["categories"].get(bucket, 0.0)
            if so < 0.005 * total_o and sf < 0.005 * total_f:
                continue
            p(f"| {bucket} | {so:.2f} | {100 * so / total_o:.1f}% | {sf:.2f} | {100 * sf / total_f:.1f}% |")
        p(f"| total | {total_o:.2f} | | {total_f:.2f} | |")
        p("")
        p("Top operators (self CPU s), ours: " + "; ".join(f"{n} {s:.2f}" for n, s in po["top"][:10]))
        p("")
        p("Top operators (self CPU s), fastai: " + "; ".join(f"{n} {s:.2f}" for n, s in pf["top"][:10]))
        p("")
    text = "\n".join(lines)
    print("\n" + text)
    return text


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=("lm", "classifier"), default=["lm", "classifier"])
    parser.add_argument("--data_dir", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument(
        "--vocab_size", type=int, default=30000, help="model vocabulary (and BPE tokenizer) size"
    )
    parser.add_argument(
        "--size", type=int, nargs=3, default=[400, 1152, 3], metavar=("EMB", "HIDDEN", "LAYERS")
    )
    parser.add_argument(
        "--tokenizer", default=None, help="saved tokenizer dir (default: train a BPE on IMDb train)"
    )
    parser.add_argument(
        "--tokenizer_texts", type=int, default=25000, help="reviews to train the tokenizer on"
    )
    parser.add_argument("--cache_dir", type=Path, default=Path("/tmp/hf-ulmfit-bench-cache"))
    parser.add_argument("--lm_batch", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=72)
    parser.add_argument(
        "--max_len", type=int, default=1440, help="classifier pooling window (fastai's max_len)"
    )
    parser.add_argument("--clas_batch", type=int, default=32)
    parser.add_argument(
        "--clas_batches", nargs="+", choices=("random", "grouped"), default=["random", "grouped"]
    )
    parser.add_argument("--clas_max_tokens", type=int, default=None, help="truncate reviews (smoke runs)")
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds (ours, fastai) per batch")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per contender per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each contender")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_profile", dest="profile", action="store_false")
    parser.add_argument(
        "--no_bf16",
        dest="bf16",
        action="store_false",
        help="skip the third contender: ours with bf16 autocast (the Trainer's --bf16 on CPU)",
    )
    parser.add_argument("--fastai_python", default="/tmp/fastai-peer/bin/python")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny model (64/128/3, vocab 2000), LM 8x24, 4 reviews of <= 100 tokens, 1 repeat",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="append the markdown report to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.vocab_size, args.lm_batch, args.bptt = [64, 128, 3], 2000, 8, 24
        args.clas_batch, args.clas_max_tokens, args.repeats, args.tokenizer_texts = 4, 100, 1, 2000
        args.max_len = 10 * args.bptt
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pyarrow.parquet as pq
    import torch

    from _fastai_training_peer import mm_peak

    torch.set_num_threads(args.threads)
    meter = LoadMeter()
    info = machine_info("torch", "transformers", threads=args.threads)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    table = pq.read_table(args.data_dir / "imdb" / "train.parquet", columns=["text", "label"])
    texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
    tokenizer, source = get_tokenizer(args, texts[: args.tokenizer_texts])
    print(f"tokenizer: {source}", flush=True)
    result: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", *sys.argv]),
        "machine": info, "threads": args.threads, "size": "/".join(map(str, args.size)),
        "vocab_size": args.vocab_size, "tokenizer": source, "tasks": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        peer = Peer(args.fastai_python, args.threads, Path(scratch) / "peer.log")
        try:
            peaks = {
                "ours": [mm_peak(2048, 5)],
                "ours_bf16": [mm_peak(2048, 5, "bfloat16")],
                "fastai": [peer(cmd="mm_peak", size=2048, repeats=5, threads=args.threads)],
            }
            for task in args.tasks:
                result["tasks"][task] = run_task(task, args, peer, tokenizer, texts, labels, Path(scratch))
                result["fastai_versions"] = result["tasks"][task]["fastai_setup"]["versions"]
            peaks["ours"].append(mm_peak(2048, 5))
            peaks["ours_bf16"].append(mm_peak(2048, 5, "bfloat16"))
            peaks["fastai"].append(peer(cmd="mm_peak", size=2048, repeats=5, threads=args.threads))
            own = self_cpu_seconds() + peer.cpu_seconds()
        finally:
            peer.close()
    result["mm_peak_gflops"] = {
        k: {t: max(x[t] for x in v) for t in ("wall", "cpu")} for k, v in peaks.items()
    }
    result["mm_peak_gflops_all"] = peaks
    result["load"] = meter.report(own)
    text = print_report(result)
    write_results(result, text, args.output, args.markdown)


if __name__ == "__main__":
    main()
