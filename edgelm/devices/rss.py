"""This process's peak resident memory (Linux VmHWM), and resetting it so a measurement
is not an earlier peak of the same process: what bench records and the memory model's
check measures."""

from __future__ import annotations

__all__ = ["peak_rss_bytes", "reset_peak_rss"]


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: ``5`` to /proc/self/clear_refs) so that a
    benchmark's peak is not an earlier peak of the same process (an export, say).
    False where the platform does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
