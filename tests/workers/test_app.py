"""The app factory, its configuration and the embedded transport (no worker processes)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from pydantic import ValidationError

from indexer.config import Settings
from workers.app import create_app
from workers.config import beat_schedule, celery_config
from workers.names import TASK_NAMES
from workers.state import WorkerState, state_of


def settings_for(tmp_path: Path, **values) -> Settings:
    return Settings(home=tmp_path / "home", _env_file=None, **values)


def test_json_only_late_acks_prefetch_one_and_each_stage_on_its_queue(tmp_path):
    config = celery_config(settings_for(tmp_path, broker_url="redis://r:6379/2"))
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["result_backend"] == "redis://r:6379/2"
    transport = config["broker_transport_options"]
    assert transport["visibility_timeout"] == 4 * 3600
    assert config["task_time_limit"] < transport["visibility_timeout"]
    assert transport["global_keyprefix"] == "lookalike:"
    queues = {name: route["queue"] for name, route in config["task_routes"].items()}
    assert queues == {
        TASK_NAMES["start"]: "ingest", TASK_NAMES["fetch"]: "ingest",
        TASK_NAMES["recrawl"]: "ingest", TASK_NAMES["sweep"]: "ingest",
        TASK_NAMES["embed"]: "embed", TASK_NAMES["index"]: "index",
        TASK_NAMES["reindex"]: "index", TASK_NAMES["deletions"]: "index",
        TASK_NAMES["map"]: "embed",
    }
    app = create_app(settings_for(tmp_path, broker_url="redis://r:6379/2"))
    assert set(TASK_NAMES.values()) <= set(app.tasks)
    reindex = app.tasks[TASK_NAMES["reindex"]]
    assert reindex.time_limit == 3 * 3600 < transport["visibility_timeout"]


def test_two_apps_in_one_process_each_have_every_task_bound_to_their_own_settings(tmp_path):
    from celery import Celery

    first = create_app(settings_for(tmp_path / "a"))
    second = create_app(settings_for(tmp_path / "b", reindex_time_limit=600))
    for app in (first, second):
        assert set(TASK_NAMES.values()) <= set(app.tasks)
        assert all(app.tasks[name].app is app for name in TASK_NAMES.values())
    assert first.tasks[TASK_NAMES["reindex"]].time_limit == 3 * 3600
    assert second.tasks[TASK_NAMES["reindex"]].time_limit == 600
    assert second.tasks[TASK_NAMES["reindex"]].soft_time_limit == 570
    # Each app has its own per-process state, made from its own settings.
    assert isinstance(state_of(first), WorkerState) and state_of(first) is not state_of(second)
    assert state_of(first).settings.home == tmp_path / "a" / "home"
    assert state_of(second).settings.home == tmp_path / "b" / "home"
    with pytest.raises(RuntimeError, match="not made by workers.app.create_app"):
        state_of(Celery("other", set_as_current=False))


@pytest.mark.parametrize(
    "module", ["workers.names", "workers.app", "workers.tasks", "workers.wiring", "workers.client"]
)
def test_each_workers_module_imports_first_and_names_is_a_leaf(module):
    """No import circle: any module can be the first one imported. Senders (the API
    through workers.client) import no task code, and the names import no Celery."""
    code = textwrap.dedent(f"""
        import sys
        import {module}
        loaded = set(sys.modules)
        if {module!r} == "workers.names":
            assert not {{"celery", "kombu"}} & loaded, sorted(loaded)
        if {module!r} == "workers.client":
            assert "workers.tasks" not in loaded and "torch" not in loaded
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_without_a_broker_url_everything_stays_in_the_data_directory(tmp_path):
    settings = settings_for(tmp_path)
    config = celery_config(settings)
    assert config["broker_url"].startswith("filesystem://")
    assert config["broker_transport"] == "workers.broker:Transport"
    assert config["broker_transport_options"]["data_folder_in"] == str(
        settings.home / "broker" / "queue")
    assert config["result_backend"] == f"file://{settings.home / 'celery-results'}"
    assert (settings.home / "broker" / "queue").is_dir()


def test_time_limits_must_stay_below_the_visibility_timeout(tmp_path):
    with pytest.raises(ValidationError, match="below broker_visibility_timeout"):
        settings_for(tmp_path, broker_visibility_timeout=600, task_time_limit=600)
    with pytest.raises(ValidationError, match="reindex_time_limit"):
        settings_for(tmp_path, broker_visibility_timeout=3600)  # the 3 h re-index limit
    with pytest.raises(ValidationError, match="task_soft_time_limit"):
        settings_for(tmp_path, task_soft_time_limit=1800)
    with pytest.raises(ValidationError, match="queue names must differ"):
        settings_for(tmp_path, queue_embed="ingest")


def test_beat_schedule_comes_from_settings_and_zero_switches_an_entry_off(tmp_path):
    schedule = beat_schedule(settings_for(tmp_path, recrawl_interval=0, reindex_interval=3600,
                                          sweep_interval=30))
    assert set(schedule) == {"reindex", "sweep"}
    assert schedule["reindex"] == {"task": TASK_NAMES["reindex"], "schedule": 3600.0,
                                   "options": {"expires": 3600.0}}
    assert beat_schedule(settings_for(tmp_path, recrawl_interval=0, reindex_interval=0,
                                      sweep_interval=0)) == {}


def _fs_connection(options: dict) -> Connection:
    return Connection("filesystem://localhost/", transport="workers.broker:Transport",
                      transport_options=options)


def _publish(options: dict, start: int) -> None:
    """In a process of its own: declare the queue (as every worker does) and send 100."""
    queue = Queue("ingest", Exchange("ingest"), routing_key="ingest")
    with _fs_connection(options) as conn:
        producer = conn.Producer(serializer="json")
        for n in range(start, start + 100):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="ingest",
                             declare=[queue])


def test_the_embedded_transport_hands_each_message_to_exactly_one_consumer(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(tmp_path / "control"),
               "claimed_folder": str(tmp_path / "claimed")}
    queue = Queue("ingest", Exchange("ingest"), routing_key="ingest")
    (folder / ".123_abc.ingest.msg.tmp").write_text("{half a mess")  # a writer mid-way

    # Two processes starting at once race to create the exchange table: none may be lost.
    context = multiprocessing.get_context("fork")
    publishers = [context.Process(target=_publish, args=(options, s)) for s in (0, 100)]
    for process in publishers:
        process.start()
    for process in publishers:
        process.join(60)
        assert process.exitcode == 0

    received: list[int] = []
    lock = threading.Lock()

    deadline = time.monotonic() + 60

    errors: list[BaseException] = []

    def consume() -> None:
        try:
            _consume()
        except BaseException as exc:  # a thread's exception would otherwise vanish
            errors.append(exc)
            raise

    def _consume() -> None:
        # Poll until all 200 are in (not until the first empty poll: on a loaded machine
        # a poll can come back empty while the other consumer holds a claim).
        with _fs_connection(options) as conn:
            simple = conn.SimpleQueue(queue)
            while time.monotonic() < deadline:
                with lock:
                    if len(received) >= 200:
                        return
                try:
                    message = simple.get(timeout=0.5)
                except simple.Empty:
                    continue
                with lock:
                    received.append(message.payload["n"])
                message.ack()

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for thread in consumers:
        thread.start()
    for thread in consumers:
        thread.join()
    assert not errors, errors
    assert sorted(received) == list(range(200))
    assert [p.name for p in folder.iterdir()] == [".123_abc.ingest.msg.tmp"]
    assert not list((tmp_path / "claimed").iterdir())


def test_a_second_broker_folder_in_one_process_gets_its_own_bindings(tmp_path):
    """kombu's in-memory binding state is process-wide; the exchange file must still be
    written for every folder, or messages to the second folder are routed nowhere."""
    queue = Queue("ingest", Exchange("ingest"), routing_key="ingest")
    for name in ("first", "second"):
        folder = tmp_path / name
        options = {"data_folder_in": str(folder / "q"), "data_folder_out": str(folder / "q"),
                   "control_folder": str(folder / "control"),
                   "claimed_folder": str(folder / "claimed")}
        (folder / "q").mkdir(parents=True)
        _publish(options, 0)
        with _fs_connection(options) as conn:
            simple = conn.SimpleQueue(queue)
            got = []
            while True:
                try:
                    message = simple.get(timeout=0.2)
                except simple.Empty:
                    break
                got.append(message.payload["n"])
                message.ack()
        assert sorted(got) == list(range(100)), name
