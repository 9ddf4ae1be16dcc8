"""The workers' Prometheus metrics, scraped from the real endpoint (issue 29, item 4): jobs by task and state,
job durations, points scored, incidents, notification outcomes and the outbox backlog, counted by a real
Celery worker and a delivery consumer against the real Redis."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

import alerts
from anomaly.service import train_detector
from vectorstore import ModelRegistry
from workers.jobs import submit
from workers.metrics import serve


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_metrics_endpoint_counts_jobs_points_incidents_and_deliveries(celery_worker, settings, model_name,
                                                                          tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    values = np.sin(2 * np.pi * np.arange(n) / 25) + 0.05 * rng.standard_normal(n)
    values[950] += 5.0
    frame = pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"), "value": values})
    train_detector(frame.iloc[:800], name=model_name, series_id="web-1", registry=ModelRegistry(settings))
    port = _free_port()
    server = serve(port, "127.0.0.1", settings=settings)
    try:
        before = _scrape(port)
        batch = frame.iloc[800:]
        result = submit("ea.score_series", name=model_name, series_id="web-1",
                        timestamps=batch.timestamp.astype(str).tolist(), values=batch.value.tolist()).wait(timeout=120)
        assert sum(result["is_anomaly"]) == 1
        found = _scrape(port)
        assert _value(found["ea_points_scored"], "ea_points_scored_total", detector=model_name) == 200
        grew = (_value(found["ea_jobs"], "ea_jobs_total", task="ea.score_series", state="succeeded")
                - _value(before.get("ea_jobs", []), "ea_jobs_total", task="ea.score_series", state="succeeded"))
        assert grew >= 1
        assert _value(found["ea_job_duration_seconds"], "ea_job_duration_seconds_count", task="ea.score_series") >= 1
        assert _value(found["ea_incidents"], "ea_incidents_total", event="opened") >= 1
        assert _value(found["ea_outbox_backlog"], "ea_outbox_backlog") >= 0
        # A consumer delivers what the outbox holds to a file hook: the delivered count grows, the backlog empties.
        delivered = _value(found["ea_notifications"], "ea_notifications_total", outcome="delivered")
        alerts.Deliverer([alerts.JsonLinesHook(tmp_path / "alerts.jsonl")], shared=False, settings=settings).drain(30)
        after = _scrape(port)
        assert _value(after["ea_notifications"], "ea_notifications_total", outcome="delivered") > delivered
        assert _value(after["ea_outbox_backlog"], "ea_outbox_backlog") == 0
        assert _value(after["ea_outbox_oldest_age_seconds"], "ea_outbox_oldest_age_seconds") == 0
    finally:
        server.shutdown()


def test_ea_metrics_serve_is_a_process_that_serves_them(settings):
    """`ea metrics serve --port N` as an operator runs it (another process, reading the same Redis)."""
    port = _free_port()
    env = {**os.environ, "EA_REDIS_URL": settings.redis_url, "EA_KEY_PREFIX": settings.key_prefix}
    ea = str(Path(sys.executable).with_name("ea"))
    proc = subprocess.Popen([ea, "metrics", "serve", "--port", str(port),
                             "--addr", "127.0.0.1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                found = _scrape(port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.2)
        served = {"ea_jobs", "ea_job_duration_seconds", "ea_points_scored", "ea_incidents", "ea_notifications",
                  "ea_outbox_backlog", "ea_outbox_oldest_age_seconds", "ea_incidents_open"}
        assert served <= set(found)
        # The Grafana dashboard asks for these and the client's, nothing else.
        dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
        asked = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"ea_[a-z_]+", t["expr"])}
        known = {f"{n}{s}" for n in served | {"ea_client_request_seconds", "ea_client_errors"}
                 for s in ("", "_total", "_bucket", "_count", "_sum")}
        assert asked and asked <= known, asked - known
    finally:
        proc.terminate()
        proc.wait(timeout=10)
