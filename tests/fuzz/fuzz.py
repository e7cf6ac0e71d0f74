"""Coverage-guided fuzzing (atheris: libFuzzer for Python) of a target in fuzz_targets.py.

    python tests/fuzz/fuzz.py image CORPUS_DIR [libFuzzer options]
    python tests/fuzz/fuzz.py manifest CORPUS_DIR -max_total_time=3600 -timeout=10

``tests/fuzz/test_fuzz.py`` runs each target this way for a bounded time; run it by
hand for longer. libFuzzer enforces the limits: ``-max_total_time`` (seconds in all),
``-timeout`` (seconds one input may take: a hang is a failure), ``-rss_limit_mb``
(memory; the test adds an address-space limit on top). An exception that escapes the
target is a crash: libFuzzer writes the input to ``<artifact_prefix>crash-<sha1>``
and exits non-zero. Replay one with ``python tests/fuzz/fuzz.py image crash-…``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):  # fuzz_targets.py; images_factory beside the tests
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

NAMES = ("image", "manifest")  # fuzz_targets.TARGETS
GUARDS = ("guard-escapes", "guard-hangs", "guard-allocates", "guard-grows")  # fuzz_guards.TARGETS


def load(name: str):
    if name in GUARDS:  # targets that fail on purpose: the guards' own tests
        import fuzz_guards

        return fuzz_guards.TARGETS[name]
    # Instrument what parses the bytes: our modules and Pillow's Python plugins (its C
    # decoders are not instrumented, but every input still runs through them).
    with atheris.instrument_imports(include=["indexer", "PIL", "csv", "json"]):
        from PIL import Image

        Image.init()  # imports every plugin now, so that they are instrumented too
        import fuzz_targets
    return fuzz_targets.TARGETS[name]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES + GUARDS:
        sys.exit(f"usage: fuzz.py {{{'|'.join(NAMES + GUARDS)}}} [CORPUS...] [-option=value...]")
    target = load(sys.argv.pop(1))

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
