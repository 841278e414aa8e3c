"""What the CPU and the process offer training on a CPU: native bfloat16, and a memory allocator that keeps
freed blocks.

An AWD-LSTM step allocates and frees tens of large tensors (activations, gradients, the decoder's logits). glibc's
malloc gives large blocks back to the kernel when they are freed and faults them in again on the next step, so a
CPU training step spends much of its time in the kernel; tcmalloc and jemalloc keep the blocks for reuse. The
allocator is fixed when the process starts, through ``LD_PRELOAD``; ``scripts/bench_allocator.py`` measures the
difference (README, "Speed").
"""

import logging
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

# The allocators that keep freed blocks, by the file name of their shared library (Debian/Ubuntu packages
# libtcmalloc-minimal4 and libjemalloc2), best first.
FAST_ALLOCATORS = {"tcmalloc": "libtcmalloc_minimal.so.4", "jemalloc": "libjemalloc.so.2"}
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


@cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX tiles), so that bf16 autocast is a
    speed-up rather than an emulation."""
    import torch

    checks = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return any(check is not None and check() for check in checks)


def loaded_fast_allocator() -> str | None:
    """The name of the fast allocator this process runs with (``tcmalloc``, ``jemalloc``), or None: glibc's
    malloc, or a system without ``/proc/self/maps``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return next((name for name in FAST_ALLOCATORS if f"lib{name}" in maps), None)


def allocator_library(name: str) -> str | None:
    """The path of the fast allocator ``name``'s shared library on this system, or None."""
    paths = (Path(folder) / FAST_ALLOCATORS[name] for folder in LIBRARY_DIRS)
    return next((str(path) for path in paths if path.is_file()), None)


def installed_fast_allocator() -> str | None:
    """The path of the best fast allocator's shared library found on this system, or None."""
    return next(filter(None, map(allocator_library, FAST_ALLOCATORS)), None)


def allocator_advice() -> str | None:
    """What to do for a faster CPU training step, when this process runs on glibc's malloc; None otherwise."""
    if loaded_fast_allocator() is not None or not Path("/proc/self/maps").exists():
        return None
    library = installed_fast_allocator()
    how = (
        f"start the command with LD_PRELOAD={library}"
        if library
        else "install tcmalloc (Debian/Ubuntu: apt install libtcmalloc-minimal4) and start the command with "
        "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
    )
    return (
        f"Training on the CPU with glibc's malloc, which returns the step's large buffers to the kernel and "
        f"faults them in again: {how} for faster steps (README, 'Speed')."
    )


@cache
def advise_on_allocator() -> None:
    """Logs ``allocator_advice`` once per process, where there is advice to give."""
    advice = allocator_advice()
    if advice is not None:
        logger.warning(advice)


__all__ = [
    "FAST_ALLOCATORS",
    "advise_on_allocator",
    "allocator_library",
    "allocator_advice",
    "cpu_has_native_bf16",
    "installed_fast_allocator",
    "loaded_fast_allocator",
]
