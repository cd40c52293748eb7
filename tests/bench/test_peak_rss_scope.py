"""bench's peak RSS must not be an earlier peak of the same process (an export, say)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgelm.devices.rss import peak_rss_bytes, reset_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/clear_refs is Linux's")
def test_reset_peak_rss_forgets_an_earlier_peak() -> None:
    big = np.ones(200 << 20, np.uint8)  # 200 MB touched, then freed
    assert peak_rss_bytes() >= 200 << 20
    del big
    assert reset_peak_rss()
    # After the reset the peak is the current RSS, well under the freed 200 MB on top.
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    assert peak_rss_bytes() < rss + (50 << 20)
