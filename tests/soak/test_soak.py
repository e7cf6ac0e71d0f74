"""The soak of ``soak.py`` at 2 minutes (CI's run; the README reports a 10-minute one).

The whole system as ``lookalike up`` runs it, on Redis and PostgreSQL: 4 clients
search back to back while 2,000 photos (some corrupt, slow or failing) are ingested,
the index is rebuilt twice, the embed worker's pool process is SIGKILLed and 100
items are deleted. Nothing may be lost, served after its delete or answered with a 5xx.
"""

from __future__ import annotations

import soak  # beside this file (conftest.py)


def test_two_minutes_of_searches_ingest_reindexes_a_kill_and_deletes_lose_nothing(tmp_path):
    report = soak.run(minutes=2, photos=2000, workdir=tmp_path / "soak")
    assert report.checks.failed() == {}, report.text()
    assert set(report.checks.problems) >= {
        "no 5xx answers",
        "every search answer names one index version",
        "no deleted item in a later answer",
        "every photo indexed, failed with a reason, or deleted",
        "index holds each indexed item once, and nothing else",
        "the killed pool process was replaced",
    }, report.text()  # each of them was checked (and found nothing wrong)
    assert [row["minute"] for row in report.table][:2] == [1, 2], report.text()
    assert all(row["photo_n"] and row["id_n"] for row in report.table[:2]), report.text()
    assert report.checks.figures["deletes"] == soak.DELETES
