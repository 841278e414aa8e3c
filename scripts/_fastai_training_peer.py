"""fastai side of ``scripts/bench_training.py``; runs as a long-lived subprocess inside the venv with fastai.

It reads one JSON command per line on stdin and answers each with one line ``@@{json}`` on stdout (anything else
fastai or torch print is not prefixed and is ignored by the parent), so that the parent can alternate between
our model and fastai's step by step (ours, fastai, ours, fastai, ...) while only one of them computes at a time.

Commands:

* ``{"cmd": "setup", "kind": "lm" | "classifier", "data": "batches.npz", "weights_out": "x.pth", ...}``: builds
  fastai's model exactly as ``language_model_learner`` / ``text_classifier_learner`` do
  (``get_language_model(AWD_LSTM, vocab_sz)`` with ``awd_lstm_lm_config``; ``get_text_classifier(AWD_LSTM,
  vocab_sz, n_class, seq_len=72, max_len=72*20, drop_mult=...)``), fastai's ``Adam`` (decoupled weight decay
  0.01) over fastai's layer-group splitter, the loss fastai uses (``CrossEntropyLossFlat``) and the AR/TAR of
  ``RNNRegularizer(alpha=2, beta=1)`` that ``TextLearner`` adds; saves the random initial weights to
  ``weights_out`` (so the parent can load the very same weights into our model with ``hf_ulmfit.convert_fastai``)
  and loads the batches. Classifier batches are collated as fastai's ``SortedDL`` + ``pad_input_chunk`` do:
  rows sorted by decreasing length, padding in front by whole ``seq_len`` chunks (the rest at the end).
* ``{"cmd": "eval", "batch": i}``: eval-mode LM loss or classifier logits on batch ``i`` (to check that both
  implementations compute the same function with the same weights).
* ``{"cmd": "steps", "batch": i, "n": k}``: ``k`` training steps (forward, loss, backward, optimizer step,
  zero_grad) on batch ``i``; returns [wall seconds, process CPU seconds] of each.
* ``{"cmd": "profile", "batch": i}``: one training step under ``torch.profiler``; returns self CPU time per
  category (see ``categorize``) and the top operators.
* ``{"cmd": "mm_peak", "size": n, "repeats": r, "threads": t}``: best GFLOP/s (wall and CPU time) of an
  (n x n) @ (n x n) fp32 ``torch.mm``.
* ``{"cmd": "quit"}``.

``categorize`` is also imported by the parent for profiling our model, so both sides use the same buckets.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

# ----------------------------------------------------------------------------------------------------------
# Profile buckets (shared with bench_training.py; stdlib only at import time)

CATEGORIES = (
    # (bucket, substrings of the lower-cased operator name), first match wins
    ("LSTM kernels (fwd+bwd)", ("rnn", "lstm")),
    ("optimizer step", ("adam", "_foreach", "optimizer.step", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("softmax / cross-entropy", ("log_softmax", "nll_loss", "cross_entropy", "softmax")),
    ("GEMM (decoder, head; fwd+bwd)", ("addmm", "aten::mm", "matmul", "linear", "bmm")),
    ("embedding (lookup + grad)", ("embedding",)),
    ("dropout masks (bernoulli, mask mul/div)", ("bernoulli", "dropout", "aten::div")),
    ("grad clipping / norms", ("norm", "clip")),
    ("zero_grad / fill / copy / cat", ("zero", "fill_", "copy_", "aten::cat", "clone", "empty", "to_copy")),
    (
        "indexing / packing (BPT3C, padding)",
        ("index", "gather", "scatter", "sort", "pack", "nonzero", "select", "slice"),
    ),
    (
        "elementwise (AR/TAR, activations, masks)",
        (
            "mul",
            "add",
            "sub",
            "pow",
            "mean",
            "sum",
            "max",
            "where",
            "masked",
            "relu",
            "batch_norm",
            "threshold",
            "sigmoid",
            "tanh",
        ),
    ),
)


def categorize(rows: list[tuple[str, float]]) -> dict[str, float]:
    """Sums self CPU seconds of (operator name, seconds) rows into the buckets of ``CATEGORIES`` (+ "other")."""
    totals: dict[str, float] = {name: 0.0 for name, _ in CATEGORIES}
    totals["other"] = 0.0
    for name, seconds in rows:
        lowered = name.lower()
        for bucket, keys in CATEGORIES:
            if any(key in lowered for key in keys):
                totals[bucket] += seconds
                break
        else:
            totals["other"] += seconds
    return totals


def profile_rows(step) -> tuple[list[tuple[str, float]], float]:
    """Runs ``step()`` under torch.profiler; returns (operator, self CPU seconds) rows and the wall seconds."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    rows = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    return rows, wall


def timed_steps(step, n: int, model) -> list[list[float]]:
    """Runs ``step()`` ``n`` times in train mode; [wall seconds, process CPU seconds] of each. With one torch
    thread the CPU time is the work done, whatever share of a core the scheduler gave the process."""
    model.train()
    seconds = []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        seconds.append([time.perf_counter() - wall, time.process_time() - cpu])
    return seconds


def mm_peak(size: int, repeats: int, dtype: str = "float32") -> dict[str, float]:
    """Best GFLOP/s of a square matrix multiply (one warm-up), by wall time and by process CPU time."""
    import torch

    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    torch.mm(a, b)
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best_wall, best_cpu = (
            min(best_wall, time.perf_counter() - wall),
            min(best_cpu, time.process_time() - cpu),
        )
    return {"wall": 2 * size**3 / best_wall / 1e9, "cpu": 2 * size**3 / best_cpu / 1e9}


# ----------------------------------------------------------------------------------------------------------
# fastai


class FastaiSide:
    def __init__(self, spec: dict):
        import numpy as np
        import torch
        from fastai.optimizer import Adam
        from fastai.text.all import (
            AWD_LSTM,
            CrossEntropyLossFlat,
            awd_lstm_clas_split,
            awd_lstm_lm_config,
            awd_lstm_lm_split,
            get_language_model,
            get_text_classifier,
        )
        from fastai.text.data import pad_chunk

        torch.manual_seed(spec.get("seed", 0))
        torch.set_num_threads(spec["threads"])
        self.torch = torch
        self.kind = spec["kind"]
        self.alpha, self.beta = spec.get("alpha", 2.0), spec.get("beta", 1.0)
        data = np.load(spec["data"])
        vocab_size = spec["vocab_size"]
        if self.kind == "lm":
            config = dict(awd_lstm_lm_config, **spec.get("config", {}))
            self.model = get_language_model(AWD_LSTM, vocab_size, config=config)
            splitter = awd_lstm_lm_split
            self.batches = [
                (torch.from_numpy(data[f"x{i}"]).long(), torch.from_numpy(data[f"y{i}"]).long())
                for i in range(int(data["n"]))
            ]
        else:
            self.model = get_text_classifier(
                AWD_LSTM,
                vocab_size,
                n_class=spec["num_labels"],
                seq_len=spec["bptt"],
                max_len=spec["max_len"],
                config=spec.get("config"),
                drop_mult=spec.get("drop_mult", 0.5),
            )
            splitter = awd_lstm_clas_split
            self.batches = []
            for i in range(int(data["n"])):
                ids, lengths, labels = data[f"ids{i}"], data[f"len{i}"], data[f"labels{i}"]
                order = np.argsort(-lengths, kind="stable")  # SortedDL: longest first
                docs = [torch.from_numpy(ids[j, : lengths[j]]).long() for j in order]
                width = int(lengths.max())
                x = torch.stack([pad_chunk(d, pad_idx=1, pad_first=True, seq_len=spec["bptt"], pad_len=width)
                                 for d in docs])  # fmt: skip
                self.batches.append((x, torch.from_numpy(labels[order]).long(), order))
        torch.save(self.model.state_dict(), spec["weights_out"])
        self.loss_func = CrossEntropyLossFlat()
        self.opt = Adam(splitter(self.model), lr=spec.get("lr", 1e-3), wd=spec.get("wd", 0.01))
        self.model.train()

    def _loss(self, batch):
        x, y = batch[0], batch[1]
        out = self.model(x)
        pred, raw_out, dropped_out = (
            o[-1] if isinstance(o, (list, tuple)) else o for o in out
        )  # RNNCallback
        loss = self.loss_func(pred, y)
        if self.model.training:  # RNNRegularizer.after_loss
            if self.alpha:
                loss = loss + self.alpha * dropped_out.float().pow(2).mean()
            if self.beta and len(raw_out) > 1:
                loss = loss + self.beta * (raw_out[:, 1:] - raw_out[:, :-1]).float().pow(2).mean()
        return loss, pred

    def step(self, batch) -> None:
        loss, _ = self._loss(batch)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()

    def steps(self, index: int, n: int) -> list[list[float]]:
        return timed_steps(lambda: self.step(self.batches[index]), n, self.model)

    def eval(self, index: int):
        import numpy as np

        self.model.eval()
        if hasattr(self.model, "reset"):
            self.model.reset()
        with self.torch.no_grad():
            loss, pred = self._loss(self.batches[index])
        self.model.train()
        if self.kind == "lm":
            return {"loss": float(loss)}
        order = self.batches[index][2]
        logits = np.empty_like(pred.numpy())
        logits[order] = pred.numpy()  # back to the parent's row order
        return {"loss": float(loss), "logits": logits.tolist()}

    def profile(self, index: int) -> dict:
        self.model.train()
        rows, wall = profile_rows(lambda: self.step(self.batches[index]))
        rows.sort(key=lambda r: -r[1])
        return {"categories": categorize(rows), "top": rows[:15], "wall": wall}


def main() -> None:
    warnings.filterwarnings("ignore")
    side = None
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        cmd = command["cmd"]
        try:
            if cmd == "setup":
                side = None
                import fastai
                import torch

                side = FastaiSide(command)
                answer = {"ok": True, "versions": {"fastai": fastai.__version__, "torch": torch.__version__},
                          "threads": torch.get_num_threads()}  # fmt: skip
            elif cmd == "eval":
                answer = side.eval(command["batch"])
            elif cmd == "steps":
                answer = {"seconds": side.steps(command["batch"], command["n"])}
            elif cmd == "profile":
                answer = side.profile(command["batch"])
            elif cmd == "mm_peak":
                import torch

                torch.set_num_threads(command["threads"])
                answer = mm_peak(command["size"], command["repeats"], command.get("dtype", "float32"))
            elif cmd == "quit":
                print("@@" + json.dumps({"ok": True}), flush=True)
                return
            else:
                answer = {"error": f"unknown command {cmd}"}
        except Exception as error:  # reported to the parent, which raises
            import traceback

            answer = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        print("@@" + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
