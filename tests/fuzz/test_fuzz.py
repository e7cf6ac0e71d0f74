"""Hostile bytes, fuzzed: the image decoder and the manifest parser under atheris.

Each target (tests/fuzz/fuzz_targets.py) runs in its own process for a bounded time,
``LOOKALIKE_FUZZ_SECONDS`` (default 60), from the seed corpus the rest of the suite
uses (fuzz_seeds.py). Every input must end in an accepted result or the module's own
error (``ImageRejected``, ``ManifestError``); the run fails on

- any other exception (libFuzzer: ``crash-*``),
- an input that takes longer than ``PER_INPUT_SECONDS`` (a hang: ``timeout-*``),
- memory past the limits: resident memory over ``RSS_LIMIT_MB`` (libFuzzer:
  ``oom-*``), or an allocation over the process's address-space limit
  (``RLIMIT_AS``), which Python and Pillow report as ``MemoryError`` (a crash).

The failure message carries the offending input (base64) and libFuzzer's output; the
input stays in the test's tmp folder. Keep it as a regression test beside the
module's own tests once fixed.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fuzz_seeds
import fuzz_targets
import pytest

log = logging.getLogger(__name__)

FUZZ = Path(__file__).with_name("fuzz.py")
REPO = Path(__file__).resolve().parents[2]

FUZZ_SECONDS = int(os.environ.get("LOOKALIKE_FUZZ_SECONDS", "60"))
PER_INPUT_SECONDS = 10  # a hang, not a slow input: the seeds decode in milliseconds
RSS_LIMIT_MB = 768
ADDRESS_SPACE_BYTES = 1536 * 1024 * 1024  # the fuzzer's process uses ~180 MB of it idle
MAX_INPUT_BYTES = 32 * 1024
# Startup (instrumenting Pillow takes seconds) on top of twice the budget: a wedged run.
STARTUP_SECONDS = 180


def _limit_address_space() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def _findings(folder: Path) -> dict[str, bytes]:
    """What libFuzzer kept: ``crash-…``, ``timeout-…``, ``oom-…`` inputs, by file name."""
    kinds = ("crash", "timeout", "oom", "leak", "slow-unit")
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.name.startswith(kinds)
    }


@dataclass
class Run:
    returncode: int
    output: str
    findings: dict[str, bytes]
    seeds: int
    corpus: int  # inputs in the corpus afterwards: libFuzzer adds those with new coverage

    def report(self) -> str:
        inputs = "\n".join(
            f"{name} ({len(data)} bytes): {base64.b64encode(data[:4096]).decode()}"
            for name, data in self.findings.items()
        )
        return f"exit {self.returncode}; inputs:\n{inputs}\n\n{self.output[-6000:]}"


def fuzz(
    target: str, folder: Path, *, seconds: int, per_input: int, seeds: dict[str, bytes]
) -> Run:
    """Run ``target`` under libFuzzer in a process of its own, within the limits above."""
    corpus = folder / "corpus"
    corpus.mkdir()
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    artifacts = folder / "findings"
    artifacts.mkdir()
    options = [
        f"-max_total_time={seconds}",
        f"-timeout={per_input}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_INPUT_BYTES}",
        "-len_control=0",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    if target in fuzz_seeds.DICTIONARIES:
        options.append(f"-dict={fuzz_seeds.write_dictionary(target, folder / 'tokens.dict')}")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    run = subprocess.run(
        [sys.executable, str(FUZZ), target, str(corpus), *options],
        env=env,
        cwd=folder,
        capture_output=True,
        timeout=2 * seconds + STARTUP_SECONDS,
        preexec_fn=_limit_address_space,
    )
    return Run(
        run.returncode,
        (run.stdout + run.stderr).decode("utf-8", "replace"),
        _findings(artifacts),
        len(seeds),
        len(list(corpus.iterdir())),
    )


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzzing_ends_every_input_in_a_result_or_the_modules_own_error(
    target, tmp_path, record_property
):
    run = fuzz(
        target,
        tmp_path,
        seconds=FUZZ_SECONDS,
        per_input=PER_INPUT_SECONDS,
        seeds=fuzz_seeds.SEEDS[target](),
    )
    assert run.returncode == 0 and not run.findings, f"fuzzing {target} failed: {run.report()}"
    done = re.search(r"Done (\d+) runs in (\d+) second", run.output)
    assert done, run.output[-3000:]
    runs, seconds = int(done.group(1)), int(done.group(2))
    # It fuzzed: far more inputs than the seeds, and it kept some that reach new code.
    assert runs > 10 * run.seeds and run.corpus > run.seeds, (runs, run.corpus, run.seeds)
    record_property("fuzz_runs", runs)
    record_property("fuzz_seconds", seconds)
    log.info(
        "fuzzed %s: %d inputs in %d s, corpus %d -> %d",
        target,
        runs,
        seconds,
        run.seeds,
        run.corpus,
    )


# The guards themselves: a target that misbehaves on its first input (libFuzzer starts
# with the empty one) fails the run, with that input kept, for each fault the fuzz runs
# above must catch.
GUARDED_FAULTS = {  # target: (the finding it leaves, what libFuzzer says, -timeout)
    "guard-escapes": ("crash-", "KeyError", 30),
    "guard-hangs": ("timeout-", "Timeout", 2),
    "guard-allocates": ("crash-", "MemoryError", 30),  # the address-space limit (RLIMIT_AS)
    "guard-grows": ("oom-", "out-of-memory", 30),  # libFuzzer's resident-memory limit
}


@pytest.mark.parametrize("target", GUARDED_FAULTS)
def test_each_fault_fails_the_fuzz_run_with_its_input_kept(target, tmp_path):
    kept, said, per_input = GUARDED_FAULTS[target]
    run = fuzz(target, tmp_path, seconds=60, per_input=per_input, seeds={"seed": b"hostile"})
    assert run.returncode != 0, run.report()
    assert any(name.startswith(kept) for name in run.findings), run.report()
    assert said in run.output, run.report()


def test_the_driver_knows_every_target():
    """fuzz.py names the targets without importing them (it instruments them on import)."""
    spec = importlib.util.spec_from_file_location("fuzz_driver", FUZZ)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    assert set(driver.NAMES) == set(fuzz_targets.TARGETS)
    assert set(driver.GUARDS) == set(GUARDED_FAULTS)


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_the_seed_corpus_ends_in_results_and_rejections(target):
    """The oracle on the seeds alone, in this process: each as its name says, nothing else."""
    outcomes = {
        name: fuzz_targets.TARGETS[target](data)
        for name, data in fuzz_seeds.SEEDS[target]().items()
    }
    expected = {"good": fuzz_targets.ACCEPTED, "bad": fuzz_targets.REJECTED}
    wrong = {
        name: outcome
        for name, outcome in outcomes.items()
        if expected.get(name.split("-", 1)[0], outcome) != outcome
    }
    assert not wrong, wrong
    assert set(outcomes.values()) == {fuzz_targets.ACCEPTED, fuzz_targets.REJECTED}
