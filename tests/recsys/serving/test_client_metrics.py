"""The recommendation client's Prometheus metrics, scraped from an application's own /metrics endpoint
(issue 29, item 4): request latency by path and source, errors by path."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from recsys import RecommendationClient, UnknownItem


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _count(samples, **labels) -> float:
    return sum(s.value for s in samples if s.name.endswith("_count") and all(s.labels.get(k) == v
                                                                            for k, v in labels.items()))


def test_an_application_serves_the_client_s_latency_sources_and_errors(published, settings):
    server, _ = start_http_server(0, "127.0.0.1")  # what an application does for its own /metrics
    port = server.server_address[1]
    try:
        before = _scrape(port).get("ea_client_request_seconds", [])
        with RecommendationClient(model=published.model, settings=settings, listen=False) as client:
            known = client.recommend("u1", k=5)
            unknown = client.recommend("nobody", k=5)
            client.similar_items("i1", k=3)
            with pytest.raises(UnknownItem):
                client.similar_items("no-such-item", k=3)
        assert unknown.source == "popularity"
        found = _scrape(port)
        latency = found["ea_client_request_seconds"]
        for source in (known.source, "popularity"):
            grew = _count(latency, path="recommend", source=source) - _count(before, path="recommend", source=source)
            assert grew >= 1, source
        assert _count(latency, path="similar_items", source="similar") >= 1
        assert any(s.labels == {"path": "similar_items", "error": "UnknownItem"} and s.value >= 1
                   for s in found["ea_client_errors"])
    finally:
        server.shutdown()
