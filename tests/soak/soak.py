"""Soak: the whole system under load and faults, and nothing lost at the end.

    python tests/soak/soak.py --minutes 10                 # the README's run
    python tests/soak/soak.py --minutes 2 --photos 2000    # what CI runs (tests/soak)

Starts the system the way ``lookalike up`` runs it (the API under gunicorn, a worker
per queue, beat) on the test Redis (a key prefix of its own) and PostgreSQL (a schema
of its own), with the tiny test model. A local web shop serves the photos. A first
job indexes a few hundred photos; then, for ``--minutes``:

* 4 clients search back to back, by photo and by item id, and record every answer;
* an ingest job of ``--photos`` URLs runs (one in twenty corrupt, a few slow, a few
  failing once or for good: ``soak_site``);
* two re-indexes switch the index version (``POST /api/v1/reindex``);
* the embed worker's pool process is SIGKILLed mid-job, and its worker starts another;
* 100 items are deleted through ``DELETE /api/v1/items/<id>``, each delete's return
  time recorded; deleted photos then become search queries too.

Then it waits for the work to finish and checks: no 5xx (nor any unanswered or
unexpected answer); every search answer names one index version; no deleted item in
an answer to a search sent after its delete returned; every photo sent is indexed,
failed with a reason or deleted, and the job's counts equal the catalog's and the
index's, reconciled by a query (``soak_reconcile``). It prints p50/p99 latency per
minute and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parent
import workers  # noqa: E402, F401 (the package, before tests/workers joins sys.path)

for _folder in (_TESTS, _TESTS / "workers", _TESTS / "deploy", _HERE):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

import urllib3  # noqa: E402
from deploy_harness import free_port, processes_with_home  # noqa: E402
from local_http import LocalServer  # noqa: E402
from postgres_support import fresh_schema  # noqa: E402
from redis_support import TEST_REDIS_URL, own_prefix  # noqa: E402
from soak_reconcile import reconcile  # noqa: E402
from soak_report import Answer, Checks, check_answers, format_table, minute_table  # noqa: E402
from soak_site import Kind, Photo, publish  # noqa: E402
from training_factory import write_tiny_model  # noqa: E402
from worker_harness import LOOKALIKE, Setup, deployment_setup  # noqa: E402

from indexer.engine import Lookalike  # noqa: E402

log = logging.getLogger("soak")

API_KEY = "soak-key-0123456789abcdef0123"
CLIENTS = 4
DELETES = 100
SEED_PHOTOS = 200  # indexed before the soak starts: what the clients search for
START_WAIT = 240.0  # seconds: five processes importing torch on two busy cores
DRAIN_WAIT = 300.0  # seconds after the soak for the work in flight to finish
RESTART_WAIT = 120.0  # seconds for a killed pool process to be replaced


class Api:
    """The API over HTTP; every request is recorded as an :class:`Answer`."""

    def __init__(self, base: str, started: float):
        self.base = base
        self.started = started
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def pool(self) -> urllib3.PoolManager:  # one per thread: clients never queue on a pool
        if not hasattr(self._local, "pool"):
            self._local.pool = urllib3.PoolManager(
                retries=False, timeout=urllib3.Timeout(connect=10, read=120)
            )
        return self._local.pool

    def now(self) -> float:
        return time.monotonic() - self.started

    def call(self, kind: str, method: str, path: str, *, query: str = "",
             **options) -> tuple[Answer, dict | None]:  # fmt: skip
        headers = {"Authorization": f"Bearer {API_KEY}", **options.pop("headers", {})}
        sent = self.now()
        try:
            response = self.pool.request(method, self.base + path, headers=headers, **options)
        except urllib3.exceptions.HTTPError as error:
            answer = Answer(kind, sent, self.now(), 0, query=query, error=repr(error))
            self._record(answer)
            return answer, None
        received = self.now()
        body, items, version = None, (), None
        error = "" if response.status < 300 else response.data[:500].decode(errors="replace")
        try:
            if response.headers.get("Content-Type", "").split(";")[0].endswith("json"):
                body = response.json()
            if kind in ("photo", "id") and response.status == 200:
                items = tuple(hit["item_id"] for hit in body["results"])
                version = body.get("index_version")
        except (ValueError, KeyError, TypeError) as bad:
            error = f"malformed answer ({bad!r}): {response.data[:300]!r}"
        answer = Answer(kind, sent, received, response.status, version, items, query, error)
        self._record(answer)
        return answer, body

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def search_photo(self, photo: Photo) -> Answer:
        fields = {"image": ("query.jpg", photo.data, "image/jpeg")}
        return self.call("photo", "POST", "/api/v1/search?k=10", query=photo.item_id,
                         fields=fields)[0]  # fmt: skip

    def search_id(self, item_id: str) -> Answer:
        return self.call("id", "POST", "/api/v1/search", query=item_id,
                         body=json.dumps({"item_id": item_id, "k": 10}),
                         headers={"Content-Type": "application/json"})[0]  # fmt: skip

    def submit(self, photos: list[Photo]) -> int:
        answer, body = self.call("submit", "POST", "/api/v1/sources",
                                 body=json.dumps({"urls": [p.url for p in photos]}),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        if answer.status != 202:
            raise SoakError(f"submitting {len(photos)} photos: {answer.status} {answer.error}")
        return body["job_id"]

    def job(self, job_id: int) -> dict | None:
        return self.call("job", "GET", f"/api/v1/jobs/{job_id}")[1]

    def reindex(self) -> int | None:
        answer, body = self.call("reindex", "POST", "/api/v1/reindex")
        return body["job_id"] if answer.status == 202 else None


class SoakError(RuntimeError):
    """The soak could not run (the system did not start, a job never finished)."""


class System:
    """``lookalike up`` in a process of its own; stopping it stops everything it started."""

    def __init__(self, setup: Setup, folder: Path):
        self.setup = setup
        self.home = Path(setup.values["home"]).resolve()
        self.output = folder / "lookalike-up.out"
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> System:
        env = self.setup.env()
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        with self.output.open("wb") as sink:
            self.popen = subprocess.Popen(
                [*LOOKALIKE, "up", "--bind", self.setup.values["api_bind"]],
                cwd=self.output.parent, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def __exit__(self, *exc_info) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # Ctrl-C: the supervisor stops the rest
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        for pid in processes_with_home(self.home):  # whatever outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def up(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout: float = START_WAIT) -> None:
        deadline = time.monotonic() + timeout
        while "Lookalike is running at" not in self.output.read_text(errors="replace"):
            if not self.up or time.monotonic() > deadline:
                raise SoakError(f"lookalike up did not start:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, tail: int = 3000) -> str:
        parts = [self.output.read_text(errors="replace")[-tail:]]
        for path in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def worker(self, queue: str) -> tuple[int, list[int]]:
        """The ``queue`` worker's main process and its pool processes."""
        assert self.popen is not None
        table = {}
        for pid in processes_with_home(self.home):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            table[pid] = (ppid, [a.decode(errors="replace") for a in args])
        mains = [pid for pid, (ppid, args) in table.items() if ppid == self.popen.pid
                 and "worker" in args and queue in args]  # fmt: skip
        if len(mains) != 1:
            raise SoakError(f"expected one {queue} worker, found {mains}")
        return mains[0], sorted(pid for pid, (ppid, _) in table.items() if ppid == mains[0])


@dataclass
class Shared:
    """What the clients search for; the deleter takes from it (under the lock)."""

    photos: list[Photo]  # query photos
    ids: list[str]  # item ids to search by (deleted ones taken out first)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, rng: random.Random, kind: str) -> Photo | str:
        with self.lock:
            return rng.choice(self.photos if kind == "photo" else self.ids)


def client(api: Api, shared: Shared, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    kinds = ("photo", "id") if seed % 2 else ("id", "photo")
    turn = 0
    while not stop.is_set():
        kind = kinds[turn % 2]
        turn += 1
        target = shared.pick(rng, kind)
        if kind == "photo":
            api.search_photo(target)
        else:
            api.search_id(target)


def deleter(
    api: Api,
    shared: Shared,
    seeds: list[Photo],
    batch: list[Photo],
    times: list[float],
    deleted_at: dict[str, float],
    states: Counter,
    stop: threading.Event,
) -> None:
    """Delete at ``times``: alternately an item of the first job and one of the soak's job
    (as soon as it is in the catalog, whatever its state: counted in ``states``)."""
    rng = random.Random(16)
    old = rng.sample(seeds, len(seeds))
    new = [p for p in batch if p.kind in (Kind.GOOD, Kind.SLOW)][::7]
    for number, at in enumerate(times):
        if stop.wait(max(0.0, at - api.now())):
            return
        target = None
        for _ in range(10 if number % 2 else 0):  # not taken in yet: try one further on
            if not new:
                break
            candidate = new.pop(0)
            answer, body = api.call("item", "GET", f"/api/v1/items/{candidate.item_id}",
                                    query=candidate.item_id)  # fmt: skip
            if answer.status == 200:
                target = candidate
                states[body["status"]] += 1
                break
        if target is None:
            target = old.pop()
            states["indexed"] += 1
        with shared.lock:
            if target.item_id in shared.ids:
                shared.ids.remove(target.item_id)
        answer, _ = api.call("delete", "DELETE", f"/api/v1/items/{target.item_id}",
                             query=target.item_id)  # fmt: skip
        if answer.status == 204:
            deleted_at[target.item_id] = answer.received
            with shared.lock:
                shared.photos.append(target)  # a search by its photo must not find it


def wait_for(what: str, done, timeout: float, system: System, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if not system.up:
            raise SoakError(f"lookalike up exited while waiting for {what}:\n{system.logs()}")
        if time.monotonic() > deadline:
            raise SoakError(f"no {what} after {timeout:.0f} s:\n{system.logs()}")
        time.sleep(poll)


def job_done(api: Api, job_id: int) -> bool:
    body = api.job(job_id)
    return body is not None and body["status"] in ("done", "failed", "skipped")


@dataclass
class SoakReport:
    minutes: float
    photos: int
    table: list[dict]
    checks: Checks
    timings: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.checks.ok

    def text(self) -> str:
        lines = [f"soak: {self.minutes:g} minutes, {self.photos} photos ingested under load",
                 "", format_table(self.table), ""]  # fmt: skip
        for name, value in {**self.timings, **self.checks.figures}.items():
            lines.append(f"{name}: {value}")
        lines.append("")
        for name, problems in self.checks.problems.items():
            lines.append(f"[{'FAIL' if problems else 'ok'}] {name}")
            lines.extend(f"    {problem}" for problem in problems)
        return "\n".join(lines)


def run(minutes: float, photos: int = 2000, *, workdir: Path | None = None,
        clients: int = CLIENTS, deletes: int = DELETES) -> SoakReport:  # fmt: skip
    """Run the soak for ``minutes``; the report says what was measured and what failed."""
    began = time.monotonic()
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        workdir.mkdir(parents=True, exist_ok=True)
        model = write_tiny_model(workdir / "model")
        _, prefix = stack.enter_context(own_prefix("lookalike-soak-", TEST_REDIS_URL))
        database = stack.enter_context(fresh_schema(prefix="soak_"))
        server = stack.enter_context(LocalServer())
        seeds = publish(server, SEED_PHOTOS, seed_base=0, folder="seed", faults=False)
        batch = publish(server, photos, seed_base=100_000, folder="img")
        port = free_port()
        setup = deployment_setup(
            workdir / "home", model, broker_url=TEST_REDIS_URL, broker_key_prefix=prefix,
            database_url=database, api_key=API_KEY, api_bind=f"127.0.0.1:{port}",
            cache_dir=str(workdir / "runtime-cache"), ingest_chunk_size=50,
            sweep_interval=30, stalled_after=90, fetch_retries=2,
        )  # fmt: skip
        system = stack.enter_context(System(setup, workdir))
        log.info("starting lookalike up on port %d (Redis prefix %s)", port, prefix)
        system.wait_ready()
        started = time.monotonic()
        api = Api(f"http://127.0.0.1:{port}", started)
        first = api.submit(seeds)
        wait_for("first job", lambda: job_done(api, first), START_WAIT, system)
        seeded = time.monotonic()
        log.info("system up in %.0f s, first %d photos indexed in %.0f s; soaking for %g min",
                 started - began, len(seeds), seeded - started, minutes)  # fmt: skip
        api.answers.clear()
        api.started = seeded  # the soak's clock starts now
        report = _soak(api, system, setup, seeds, batch, first, minutes * 60, clients, deletes)
        stopping = time.monotonic()
    log.info("stopped in %.0f s", time.monotonic() - stopping)
    report.timings = {
        "startup s": round(started - began, 1),
        "first job s": round(seeded - started, 1),
        **report.timings,
        "stop s": round(time.monotonic() - stopping, 1),
        "total s": round(time.monotonic() - began, 1),
    }
    return report


def _soak(api: Api, system: System, setup: Setup, seeds: list[Photo], batch: list[Photo],
          first: int, duration: float, clients: int, deletes: int) -> SoakReport:  # fmt: skip
    checks = Checks()
    shared = Shared(photos=list(seeds), ids=[p.item_id for p in seeds])
    stop = threading.Event()
    deleted_at: dict[str, float] = {}
    deleted_states: Counter = Counter()
    times = [duration * (0.1 + 0.7 * i / deletes) for i in range(deletes)]
    threads = [threading.Thread(target=client, args=(api, shared, stop, n), daemon=True)
               for n in range(clients)]  # fmt: skip
    threads.append(
        threading.Thread(
            target=deleter,
            args=(api, shared, seeds, batch, times, deleted_at, deleted_states, stop),
            daemon=True,
        )
    )
    for thread in threads:
        thread.start()
    job = api.submit(batch)
    log.info("job %d: %d photos submitted", job, len(batch))
    reindexes: list[int | None] = []
    kill: dict[str, object] = {}
    # Each fault lands while the job runs: once it has fetched a share of its photos,
    # or at a share of the soak's time, whichever comes first.
    events = [(0.25, 0.3, "reindex"), (0.45, 0.45, "kill"), (0.65, 0.6, "reindex")]
    try:
        for share, at, event in events:
            while api.now() < at * duration and _fetched(api, job) < share:
                if not system.up:
                    raise SoakError(f"lookalike up exited:\n{system.logs()}")
                time.sleep(1.0)
            if event == "reindex":
                reindexes.append(api.reindex())
                log.info("re-index job %s queued at %.0f s", reindexes[-1], api.now())
            else:
                kill = _kill_pool_process(system, "embed")
                log.info("SIGKILLed the embed worker's pool process %s at %.0f s (busy: %s)",
                         kill.get("killed"), api.now(), kill.get("busy"))  # fmt: skip
        if kill:
            _wait_for_replacement(system, kill)
        while api.now() < duration:
            if not system.up:
                raise SoakError(f"lookalike up exited:\n{system.logs()}")
            time.sleep(min(1.0, max(0.0, duration - api.now())))
    finally:
        stop.set()
        for thread in threads:
            thread.join(150)
    soaked = api.now()
    log.info("soak over at %.0f s: %d answers; waiting for the work in flight", soaked,
             len(api.answers))  # fmt: skip
    jobs = [job, *[r for r in reindexes if r is not None]]
    wait_for("finished jobs", lambda: all(job_done(api, j) for j in jobs), DRAIN_WAIT, system)
    wait_for("applied deletes", lambda: _no_deleted_rows(api), DRAIN_WAIT, system)
    drained = api.now()
    answers = list(api.answers)
    check_answers(checks, answers, deleted_at, allowed={"item": {404}})
    checks.check("every delete returned", [] if len(deleted_at) == deletes else
                 [f"{len(deleted_at)} of {deletes} deletes returned 204"])  # fmt: skip
    checks.check("two re-indexes switched the version", _reindex_problems(api, reindexes))
    checks.check("the killed pool process was replaced", kill.get("problems", []))
    checks.check("every process still running", [] if system.up else ["lookalike up exited"])
    checks.figures["embed pool process killed and replaced"] = {
        k: v for k, v in kill.items() if k != "problems"
    }
    with Lookalike.open(setup.settings) as engine:
        reconcile(
            checks,
            engine,
            {first: seeds, job: batch},
            {first: api.job(first), job: api.job(job)},
            set(deleted_at),
        )
    checks.figures["deletes"] = len(deleted_at)
    checks.figures["deleted items by state when deleted"] = dict(deleted_states)
    checks.figures["ingest job s (started to done)"] = _job_seconds(api.job(job))
    return SoakReport(
        duration / 60,
        len(batch),
        minute_table(answers),
        checks,
        {"soak s": round(soaked, 1), "drain s": round(drained - soaked, 1)},
    )


def _fetched(api: Api, job_id: int) -> float:
    """The share of the job's photos fetched (or failed) so far."""
    body = api.job(job_id)
    if body is None or not body["total"]:
        return 0.0
    return (body["fetches"]["done"] + body["fetches"]["failed"]) / body["total"]


def _job_seconds(body: dict | None) -> float | None:
    if not body or not body.get("started_at") or not body.get("finished_at"):
        return None
    started, finished = (datetime.fromisoformat(body[k]) for k in ("started_at", "finished_at"))
    return round((finished - started).total_seconds(), 1)


def _no_deleted_rows(api: Api) -> bool:
    answer, body = api.call("stats", "GET", "/api/v1/stats")
    return answer.status == 200 and body["items"]["deleted"] == 0


def _reindex_problems(api: Api, reindexes: list[int | None]) -> list[str]:
    problems, versions = [], set()
    for job_id in reindexes:
        body = api.job(job_id) if job_id is not None else None
        if body is None or body["status"] != "done":
            problems.append(f"re-index job {job_id}: {body and body['status']} "
                            f"{body and body['message']}")  # fmt: skip
            continue
        versions.add(body["message"].split(" is current")[0])
    if len(versions) != len(reindexes):
        problems.append(f"{len(reindexes)} re-indexes made versions {sorted(versions)}")
    return problems


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _kill_pool_process(system: System, queue: str, within: float = 15.0) -> dict[str, object]:
    """SIGKILL the ``queue`` worker's pool process, at a moment it computes if one comes
    within ``within`` seconds (its CPU time grows), else as it is."""
    main, children = system.worker(queue)
    if not children:
        return {"problems": [f"the {queue} worker {main} has no pool process to kill"]}
    child, busy = children[0], False
    deadline = time.monotonic() + within
    while not busy and time.monotonic() < deadline:
        before = _cpu_ticks(child)
        time.sleep(0.05)
        busy = _cpu_ticks(child) > before
    os.kill(child, signal.SIGKILL)
    return {"worker": main, "killed": child, "busy": busy, "at": time.monotonic()}


def _wait_for_replacement(system: System, kill: dict[str, object]) -> None:
    deadline = time.monotonic() + RESTART_WAIT
    while time.monotonic() < deadline:
        main, children = system.worker("embed")
        fresh = [pid for pid in children if pid != kill["killed"]]
        if main == kill["worker"] and fresh:
            kill["replaced by"] = fresh[0]
            kill["seconds to replace"] = round(time.monotonic() - kill.pop("at"), 1)
            return
        time.sleep(0.5)
    kill["problems"] = [f"no new pool process in {RESTART_WAIT:.0f} s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="how long the clients search (default 2)")  # fmt: skip
    parser.add_argument(
        "--photos",
        type=int,
        default=2000,
        help="photos of the ingest job under load (default 2000)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the data directory and logs here (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        report = run(args.minutes, args.photos, workdir=args.workdir)
    except SoakError as error:
        print(f"soak failed to run: {error}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
