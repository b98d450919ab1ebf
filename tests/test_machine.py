from __future__ import annotations

import sys

import pytest

from ddrm.machine import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_keep_freed_memory_applies_on_glibc_and_respects_user_settings(monkeypatch):
    assert keep_freed_memory() is True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert keep_freed_memory() is False  # the user's own malloc settings win


def test_machine_info_describes_this_process_and_feeds_the_results_line():
    import os

    import torch

    from ddrm.experiments.results import machine_line
    from ddrm.machine import machine_info

    m = machine_info()
    assert m["torch"] == torch.__version__ and m["threads"] == torch.get_num_threads()
    assert m["logical_cpus"] == os.cpu_count() and (m["cuda"] is None) == (not torch.cuda.is_available())
    line = machine_line()
    assert line.startswith(f"{m['cpu']}, {m['logical_cpus']} logical CPUs") and f"torch {m['torch']}" in line
