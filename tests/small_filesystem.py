"""A real, small file system for disk-full tests: a ``tmpfs`` mounted with ``size=``.

The kernel itself answers ``ENOSPC`` when it is full, at whichever write call runs
out (no patched ``os.write``). Mounting needs root (or ``CAP_SYS_ADMIN``), as on
the development and CI machines; where it is refused the test fails with mount's
own message, it never skips. The file system is lazily unmounted afterwards, so a
file still memory-mapped by the test (an index shard) does not keep it busy.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_filesystem(path: Path, size: int) -> Iterator[Path]:
    """Mount a fresh ``tmpfs`` of ``size`` bytes at ``path`` (created) for the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert mounted.returncode == 0, f"cannot mount a tmpfs at {path}: {mounted.stderr.strip()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True, capture_output=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Write a ballast file in ``path`` so that only about ``leave`` bytes stay free."""
    ballast = path / "ballast"
    size = free_bytes(path) - leave
    assert size > 0, f"{path} has only {free_bytes(path)} bytes free, less than {leave}"
    block = b"\0" * (1 << 16)
    with open(ballast, "wb") as handle:
        while size > 0:
            size -= handle.write(block[: min(size, len(block))])
        handle.flush()
        os.fsync(handle.fileno())
    return ballast
