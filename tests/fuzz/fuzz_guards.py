"""Targets that misbehave on purpose, to show that the fuzz run's guards catch each fault.

Each fails on the first seed it is given: an exception that is not the module's own,
an input that never finishes, an allocation past the memory limit.
"""

from __future__ import annotations

import time


def escapes(data: bytes) -> str:
    raise KeyError(data[:8])


def hangs(data: bytes) -> str:
    while True:
        time.sleep(0.05)


def allocates(data: bytes) -> str:
    """One allocation past the address-space limit: MemoryError, before a page is used."""
    return str(len(bytearray(8 * 1024**3)))


def grows(data: bytes) -> str:
    """Memory that grows past the resident limit, 64 MiB at a time (4 GiB in all)."""
    hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]
    return str(len(hoard))


TARGETS = {
    "guard-escapes": escapes,
    "guard-hangs": hangs,
    "guard-allocates": allocates,
    "guard-grows": grows,
}
