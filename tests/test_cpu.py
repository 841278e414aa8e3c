"""The CPU helpers: which allocator a process runs with, and the advice the stages log when it is glibc's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hf_ulmfit.cpu as cpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps (Linux)")

# Runs hf_ulmfit/cpu.py on its own in a fresh process (it imports nothing of the package), under LD_PRELOAD.
PROBE = f"""
import importlib.util, json
spec = importlib.util.spec_from_file_location("cpu", {cpu.__file__!r})
cpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu)
print(json.dumps({{"loaded": cpu.loaded_fast_allocator(), "advice": cpu.allocator_advice()}}))
"""


def probe(preload: str) -> dict:
    env = {**os.environ, "LD_PRELOAD": preload}
    output = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(output.stdout)


def test_glibc_malloc_gets_advice_naming_ld_preload():
    result = probe("")
    assert result["loaded"] is None
    assert "LD_PRELOAD=" in result["advice"]
    library = cpu.installed_fast_allocator()
    assert (library in result["advice"]) if library else ("apt install" in result["advice"])


@pytest.mark.parametrize("name", sorted(cpu.FAST_ALLOCATORS))
def test_a_preloaded_fast_allocator_is_detected_and_needs_no_advice(name):
    library = cpu.allocator_library(name)
    if library is None:
        pytest.skip(f"{name} is not installed here")
    assert probe(library) == {"loaded": name, "advice": None}


def test_the_advice_is_logged_once_per_process(caplog, monkeypatch):
    monkeypatch.setattr(cpu, "loaded_fast_allocator", lambda: None)
    cpu.advise_on_allocator.cache_clear()
    with caplog.at_level("WARNING", logger="hf_ulmfit.cpu"):
        cpu.advise_on_allocator()
        cpu.advise_on_allocator()
    assert [record.getMessage() for record in caplog.records] == [cpu.allocator_advice()]
