"""Catalogue deltas through a real Celery worker (workers.jobs, idempotent by job id) and through the CLI
(`ea items upsert/delete/set`, `ea users update`), seen by a real client."""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

from recsys import RecommendationClient
from workers import jobs
from workers.cli import main


def wait_for(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the delta never became visible"
        time.sleep(0.01)


def test_deltas_as_celery_jobs(celery_worker, published, settings):
    with RecommendationClient(model=published.model, settings=settings, refresh_interval=30) as client:
        vector = client._rows.fetch(client._model, ["u4"], False)[0].vector
        receipt = jobs.upsert_items(published.model, [{"id": "job-item", "vector": vector, "metadata": {"title": "J"}}]
                                    ).wait(timeout=60, interval=0.05)
        assert receipt["op"] == "upsert_items" and receipt["version"] == published.version
        wait_for(lambda: client.recommend("u4", k=1).items == ["job-item"])
        handle = jobs.delete_items(published.model, ["job-item"])
        handle.wait(timeout=60, interval=0.05)
        wait_for(lambda: "job-item" not in client.recommend("u4", k=50).items)
        jobs.update_users(published.model, {"job-user": ["i1", "i4"]}).wait(timeout=60, interval=0.05)
        jobs.update_metadata(published.model, {"i2": {"title": "By job"}}).wait(timeout=60, interval=0.05)
        wait_for(lambda: client.recommend("job-user", k=3).source == "index")
        assert client.recommend("u0", k=1, include=["i2"], fields=["title"], exclude_seen=False).fields == {
            "title": ["By job"]}
        # the job id is the write's token: the same job run again (a redelivery) writes nothing new
        from recsys import CatalogueWriter

        again = CatalogueWriter(published.model, settings=settings).delete_items(["job-item"], token=handle.id)
        assert again.duplicate


def test_bad_delta_job_fails_naming_the_item(celery_worker, published):
    handle = jobs.delete_items(published.model, ["no-such-item"])
    try:
        handle.wait(timeout=60, interval=0.05)
    except Exception as exc:  # noqa: BLE001 - JobFailed carries the task's error
        assert "no-such-item" in str(exc) and "UnknownItem" in str(exc)
    else:
        raise AssertionError("the job should have failed")


def test_cli_items_and_users(published, settings):
    run = CliRunner().invoke
    with RecommendationClient(model=published.model, settings=settings, refresh_interval=30) as client:
        out = run(main, ["items", "upsert", "cli-item", "--model", published.model, "--users", "u2,u5,u8",
                         "--field", "title=From CLI", "--field", "stock=4"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["op"] == "upsert_items"
        wait_for(lambda: "cli-item" in client.recommend("u11", k=60).items)
        out = run(main, ["items", "set", "cli-item", "--model", published.model, "--field", "stock=0"])
        assert out.exit_code == 0, out.output
        out = run(main, ["users", "update", "cli-user", "i2", "i5", "--model", published.model])
        assert out.exit_code == 0, out.output
        out = run(main, ["items", "delete", "i20", "--model", published.model])
        assert out.exit_code == 0, out.output
        wait_for(lambda: "i20" not in client.recommend("u2", k=60, exclude_seen=False).items)
        wait_for(lambda: client.recommend("cli-user", k=2).source == "index")
        rec = client.recommend("u11", k=60, include=["cli-item"], fields=["title", "stock"])
        assert rec.fields == {"title": ["From CLI"], "stock": [0]}
        bad = run(main, ["items", "delete", "i20", "--model", published.model])
        assert bad.exit_code == 2 and "i20" in bad.output and "deleted" in bad.output
        bad = run(main, ["items", "upsert", "x", "--model", published.model, "--vector", "[1, 2]"])
        assert bad.exit_code == 2 and "dimension 2" in bad.output
        bad = run(main, ["items", "delete", "i1", "--model", "no-such-model"])
        assert bad.exit_code == 2 and "no-such-model" in bad.output
