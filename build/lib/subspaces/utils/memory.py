"""Process-level memory tuning for CPU training (an allocator setting, like a thread count)."""
from __future__ import annotations


def keep_freed_memory() -> None:
    """On Linux with glibc, keep freed memory mapped for reuse instead of returning it to the OS.

    glibc's malloc hands the free top of its heap back to the OS once a few MB of it are free,
    and serves blocks above a threshold (raised on the fly) with fresh mmaps; a training step
    that frees its activations then page-faults them all back in at the next step. Measured on
    2 cores: up to 25,000 page faults (100 MB) and 10-20% of a cifar_resnet_20 step, hitting
    lines more than standard training by the luck of the heap layout. Raising the trim and mmap
    thresholds keeps that memory. Idempotent; a no-op elsewhere, and when the user set
    ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` (or preloads another allocator,
    which does not read these settings).
    """
    import ctypes
    import os
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    if any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: blocks up to 32 MB from the heap
    mallopt(m_trim_threshold, 1 << 30)  # return free heap top to the OS only beyond 1 GB
