"""Helpers of the core command tests: run `lookalike` in a home, read its one-line error,
and a machine without a job queue."""

import pytest

from indexer import plugins
from indexer.cli import main
from indexer.queueing import GROUP as JOB_QUEUE_GROUP


@pytest.fixture
def run():
    def run(home, *args) -> int:
        return main(["--home", str(home), *args])

    return run


@pytest.fixture
def one_line_error(capsys):
    def read() -> str:
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith("lookalike: error: ")
        return err

    return read


@pytest.fixture
def no_job_queue(monkeypatch):
    """As if the workers were not installed: the lookalike.job_queue group is empty."""
    real = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [] if group == JOB_QUEUE_GROUP else real(group))
