"""What a benchmark ran on (CPU model, core counts, library versions), how much memory it took, and where its
results go. Standard library only: the fastai peer scripts, which run in fastai's own environment, import it too."""

import os
import platform
import resource
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(*packages: str, **extra: Any) -> dict[str, Any]:
    """The machine and the installed versions of ``packages``; ``extra`` items are added as they are."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for package in packages:
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    return {**info, **extra}


def _status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MiB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux: ``clear_refs`` 5), so that the
    peak measured afterwards excludes the imports' transient peak. False where this is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process, in MiB."""
    current, peak = _status_mb("VmRSS"), _status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"current": float("nan") if current is None else current, "peak": peak}


def timed_passes(run, texts: list, warm_up: int, repeats: int) -> tuple[list[float], list[float], Any]:
    """``run(texts[:warm_up])`` once, then ``repeats`` timed ``run(texts)``: wall and process CPU seconds of each
    pass, and the output of the last."""
    import time

    run(texts[:warm_up])
    seconds, cpu_seconds, output = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        output = run(texts)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu)
    return seconds, cpu_seconds, output


def write_results(result: dict, markdown_text: str, output: Path | None, markdown: Path | None) -> None:
    """Saves a benchmark's results as JSON (``output``) and appends its printed table to ``markdown``."""
    import json

    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {output}")
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        with open(markdown, "a") as f:
            f.write(markdown_text + "\n\n")
