"""`lookalike jobs`: listing, and the refusals of `jobs ID` and `jobs retry ID`."""

import pytest


def test_no_jobs_yet(tmp_path, capsys, run):
    assert run(tmp_path / "home", "jobs") == 0
    assert capsys.readouterr().out == "no jobs yet\n"


@pytest.mark.parametrize(("args", "message"), [
    (["jobs", "12345"], "no job 12345"),
    (["jobs", "retry"], "usage: lookalike jobs retry ID"),
    (["jobs", "retry", "x"], "whole number"),
    (["jobs", "retry", "0"], "at least 1"),
    (["jobs", "1", "2"], "expected a job id"),
    (["jobs", "retry", "7"], "no job 7"),
])
def test_bad_jobs_commands_exit_2_with_one_line(tmp_path, run, one_line_error, args, message):
    assert run(tmp_path / "home", *args) == 2
    assert message in one_line_error()


def test_retry_without_a_job_queue_says_so(tmp_path, capsys, run, one_line_error, no_job_queue):
    from indexer import jobs
    from indexer.catalog import Catalog
    from indexer.config import Settings

    settings = Settings(home=tmp_path / "home", _env_file=None)
    with Catalog(settings) as catalog:
        job = jobs.new_reindex_job(catalog)
    assert run(settings.home, "jobs", "retry", str(job.id)) == 2
    assert one_line_error().endswith("or retry here with --inline")
