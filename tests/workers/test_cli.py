"""The workers' commands (``workers/cli.py``: worker, beat, up, demo) and the job queue
they give the core's ``--background``: help with examples, one-line errors, the whole path."""

from __future__ import annotations

import json
import socket

import pytest
from cli_help import help_of

from indexer.cli import build_parser, main
from indexer.queueing import JobQueue, load_job_queue
from indexer.sample import write_sample_catalogue

COMMANDS = [["worker"], ["beat"], ["up"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_workers_command_has_help_with_an_example(command, capsys):
    out = help_of(build_parser(), command, capsys)
    assert "examples:" in out and "lookalike " in out.split("examples:")[1]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("lookalike: error: ")
    return err


@pytest.mark.parametrize(("args", "message"), [
    (["worker", "--queues", "ingest,index", "--concurrency", "2"], "one consumer"),
    (["up", "--bind", "8000"], "expected host:port"),
])
def test_bad_worker_commands_exit_2_with_one_line(make_setup, monkeypatch, capsys, args, message):
    make_setup().apply(monkeypatch)
    assert main(args) == 2
    assert message in one_line_error(capsys)


def test_bad_queue_names_and_an_empty_schedule_are_refused(make_setup, monkeypatch, capsys):
    make_setup(sweep_interval=0, recrawl_interval=0, reindex_interval=0).apply(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--queues", "ingest,gpu"])
    assert exited.value.code == 2
    assert "expected a comma-separated list of ingest, embed, index" in capsys.readouterr().err
    assert main(["beat"]) == 2
    assert "nothing to schedule" in one_line_error(capsys)


def test_inline_ingest_jobs_retry_reindex_and_rollback(make_setup, shop, monkeypatch, capsys,
                                                       tmp_path):
    setup = make_setup(ingest_chunk_size=4)
    setup.apply(monkeypatch)
    manifest = shop.manifest(tmp_path / "m.csv", range(6))
    with manifest.open("a") as handle:
        handle.write(f"{shop.server.url('/gone.jpg')},gone\n")
    assert main(["ingest", str(manifest), "--inline"]) == 0
    out = capsys.readouterr().out
    assert "job 1 (ingest) done: 7/7 fetched, 6 indexed, 1 failed" in out
    assert f"failed {shop.server.url('/gone.jpg')}: HTTP 404" in out

    assert main(["jobs", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["status"], listed["fetches"]["failed"]) == (1, "done", 1)
    assert main(["jobs"]) == 0
    assert "    1  ingest   done" in capsys.readouterr().out

    shop.urls([99])
    shop.server.routes["/gone.jpg"] = shop.server.routes["/img/99.jpg"]  # it is back
    assert main(["jobs", "retry", "1", "--inline"]) == 0
    assert "done: 7/7 fetched, 7 indexed, 0 failed" in capsys.readouterr().out
    assert main(["jobs", "retry", "1", "--inline"]) == 0
    assert "no failed URLs to retry" in capsys.readouterr().out

    assert main(["index", "reindex"]) == 0
    assert "is current: 7 vectors of tiny-test" in capsys.readouterr().out
    assert main(["index", "rollback"]) == 0
    assert "(7 vectors)" in capsys.readouterr().out
    assert main(["index", "reindex", "--background"]) == 0  # the embedded transport: a file
    assert "re-index job 3 queued" in capsys.readouterr().out
    assert [p.name.split(".", 1)[1] for p in (setup.home / "broker" / "queue").iterdir()] == [
        "index.msg"]


def test_the_procfile_runs_a_worker_per_queue_and_beat():
    import shlex
    from pathlib import Path

    procfile = Path(__file__).resolve().parents[2] / "deploy" / "Procfile"
    entries = dict(line.split(":", 1) for line in procfile.read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    assert set(entries) == {"web", "ingest", "embed", "index", "beat"}
    parser = build_parser()
    queues = {}
    for name, command in entries.items():
        argv = shlex.split(command)
        assert argv[0] == "lookalike"
        args = parser.parse_args(argv[1:])
        if name not in ("beat", "web"):
            queues[name] = (args.queues, args.concurrency)
    assert queues["index"] == (["index"], 1) and queues["embed"] == (["embed"], 1)
    assert queues["ingest"][0] == ["ingest"]


def test_the_job_queue_of_background_work_is_the_workers_client():
    from workers import client

    queue = load_job_queue()
    assert queue is client and isinstance(queue, JobQueue)


@pytest.mark.parametrize("command", [["up"], ["demo"]])
def test_up_and_demo_name_a_busy_port_before_starting_anything(tmp_path, capsys, command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--home", str(tmp_path / "home"), *command,
                     "--bind", f"127.0.0.1:{port}"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(capsys)
    assert not (tmp_path / "home" / "logs").exists()  # nothing was started


def test_demo_no_serve_indexes_here_and_prints_one_search(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=2, shots=2, seed=4)
    assert main(["--home", str(tmp_path / "home"), "demo", "--no-serve", "--images",
                 str(photos), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "done: 4/4 fetched, 4 indexed, 0 failed" in out and "is current" in out
    first_hit = out.split("searching with")[1].splitlines()[1]
    assert first_hit.split()[1] == "1.000"  # the query image itself, score 1
