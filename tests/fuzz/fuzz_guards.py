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
    """Resident memory that grows past the resident limit, 64 MiB at a time, to 1 GiB,
    and stays there. Slowly: libFuzzer samples the resident size once a second, and a
    burst would reach the address-space limit (a MemoryError) before it looks."""
    hoard = []
    for _ in range(16):
        hoard.append(b"\x01" * (64 * 1024 * 1024))  # written: every page is resident
        time.sleep(0.25)
    while True:
        time.sleep(0.05)


TARGETS = {
    "guard-escapes": escapes,
    "guard-hangs": hangs,
    "guard-allocates": allocates,
    "guard-grows": grows,
}
