"""``ea demo``: the whole service end to end on generated data, in a few minutes on 2 cores.

It generates an interaction log and metric series, submits the training jobs through Celery (Node2Vec,
LightGCN, one series detector per metric), prints recommendations, streams the metrics through the
scorer, opens incidents, delivers them to the alert hooks (printed and a JSON-lines file) and draws a
plot per series. Every step goes through the same code a deployment uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoSizes", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSizes:
    """How big the generated data and the training runs are (``small()`` for tests)."""

    users: int = 3000
    items: int = 800
    per_user: int = 30
    series_rows: int = 2400
    node2vec: dict = field(default_factory=lambda: {"dim": 32, "walk_length": 30, "walks_per_node": 8,
                                                    "window": 5})
    lightgcn: dict = field(default_factory=lambda: {"dim": 32, "epochs": 40, "layers": 2})
    detector: dict = field(default_factory=dict)

    @classmethod
    def small(cls) -> DemoSizes:
        return cls(users=300, items=120, per_user=12, series_rows=1200,
                   node2vec={"dim": 16, "walk_length": 20, "walks_per_node": 4, "window": 5},
                   lightgcn={"dim": 16, "epochs": 10, "layers": 2}, detector={})


def run_demo(out_dir: Path | str, *, sizes: DemoSizes | None = None, external_workers: bool = False,
             echo: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run the demo and return a summary (paths, versions, recommendations, alerts).

    Args:
        out_dir: where the data, the plots and the alerts file go.
        external_workers: do not start an in-process worker (``ea demo --redis-url`` with workers running).
        echo: where the narrative goes (the CLI prints it; tests collect it).
        progress: draw progress bars while jobs run.
    """
    import alerts
    from anomaly import load_detector, plot_detection, reset_stream, synthetic_metrics
    from recsys import RecommendationClient, synthetic_interactions
    from vectorstore import ModelRegistry, get_settings

    from . import jobs
    from .local import local_worker

    sizes = sizes or DemoSizes()
    out = Path(out_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    summary: dict[str, Any] = {"out_dir": str(out)}
    started = time.perf_counter()

    # 1. Data: an interaction log with communities and popularity skew, and metric series.
    frame, items = synthetic_interactions(users=sizes.users, items=sizes.items, per_user=sizes.per_user)
    interactions, items_csv = out / "data" / "interactions.csv", out / "data" / "items.csv"
    frame.to_csv(interactions, index=False)
    items.to_csv(items_csv, index=False)
    metrics = synthetic_metrics(n=sizes.series_rows)
    for name, m in metrics.items():
        m["frame"].to_csv(out / "data" / f"{name}.csv", index=False)
    echo(f"data: {len(frame):,} interactions of {frame.user.nunique():,} users on {frame.item.nunique():,} items, "
         f"{len(metrics)} metric series -> {out / 'data'}")

    worker = contextlib.nullcontext() if external_workers else local_worker()
    with worker:
        # 2. Training jobs through Celery, with progress.
        handles = {
            "demo-node2vec": jobs.train_graph(str(interactions), model="node2vec", name="demo-node2vec",
                                              params=sizes.node2vec, item_metadata=str(items_csv)),
            "demo-lightgcn": jobs.train_graph(str(interactions), model="lightgcn", name="demo-lightgcn",
                                              params=sizes.lightgcn, item_metadata=str(items_csv), precompute=50),
        }
        for name, m in metrics.items():
            handles[f"demo-{name}"] = jobs.train_series(str(out / "data" / f"{name}.csv"), name=f"demo-{name}",
                                                        train_until=m["train_until"], params=sizes.detector,
                                                        series_id=name)
        versions = {}
        for name, handle in handles.items():
            echo(f"job {handle.id} {name}: waiting (`ea jobs {handle.id}`)")
            result = handle.wait(timeout=900, show_progress=progress)
            versions[name] = result["version"]
            extra = f", window {result['window']}" if "window" in result else ""
            echo(f"  -> published {name} v{result['version']}{extra}")
        summary["versions"] = versions

        # 3. Recommendations through the serving client.
        recs_out = []
        with RecommendationClient(model="demo-lightgcn", settings=settings, listen=False,
                                  refresh_interval=0) as client:
            genre = dict(zip(items.item, items.genre))
            for user in ("user-1", "user-2", "user-3"):
                seen = frame.loc[frame.user == user, "item"]
                top = seen.map(genre).value_counts().index[0]
                rec = client.recommend(user, k=5, fields=["title", "genre"])
                recs_out.append({"user": user, "items": rec.items, "scores": [round(float(s), 4) for s in rec.scores],
                                 "source": rec.source})
                echo(f"\n{user} (mostly {top}, {len(seen)} items) <- {rec.model} v{rec.model_version} "
                     f"({rec.source}):\n{rec.to_pandas().to_string(index=False)}")
            sim = client.similar_items("item-0", k=5, fields=["title"])
            echo(f"\nitems similar to item-0 ({genre['item-0']}):\n{sim.to_pandas().to_string(index=False)}")
            cold = client.recommend_for_history(["item-1", "item-7", "item-13"], k=5, fields=["title", "genre"])
            echo("\na new user who liked item-1, item-7, item-13 (fold-in):\n"
                 f"{cold.to_pandas().to_string(index=False)}")
            stranger = client.recommend("someone-new", k=3)
            echo(f"\nan unknown user gets {stranger.source} items: {stranger.items}")
        summary["recommendations"] = recs_out

        # 4. Stream the metrics through the scorer; incidents go to the outbox and then to the hooks.
        alerts_file = out / "alerts.jsonl"
        alerts_file.unlink(missing_ok=True)
        hooks = [alerts.JsonLinesHook(alerts_file),
                 alerts.CallableHook(lambda n: echo(f"ALERT {n.state.upper():8} {n.incident.key} ({n.incident.model}) "
                                                    f"peak {n.incident.peak_score:.2f} at {n.incident.peak_at}"),
                                     name="demo-print")]
        flagged_total = 0
        run = time.strftime("%Y%m%dT%H%M%S")
        plots = []
        for name, m in metrics.items():
            model = f"demo-{name}"
            reset_stream(model, name, settings)
            alerts.forget(model, name, settings=settings)  # a rerun replays the same rows
            df = m["frame"].iloc[m["train_until"]:]
            scores, flags, incident = [], [], []
            for start in range(0, len(df), 200):
                chunk = df.iloc[start : start + 200]
                # Each run's incidents are its own (a rerun's would be the same incidents, already delivered).
                res = jobs.score_series(model, name, list(chunk.timestamp), chunk.value.tolist(),
                                        labels={"metric": name, "demo_run": run}).wait(timeout=120)
                scores += res["scores"]
                flags += res["is_anomaly"]
                incident += res["in_incident"]
            flagged_total += sum(flags)
            _, detector = load_detector(ModelRegistry(settings), model)
            full = m["frame"].copy()
            full["score"] = [0.0] * m["train_until"] + scores
            full["is_anomaly"] = [0] * m["train_until"] + flags
            full["incident"] = [0] * m["train_until"] + incident
            title = f"{name}: kNN distance detector ({detector.embedding}), learning as it goes"
            png = plot_detection(full, out / "plots" / f"{name}.png", title=title, train_until=m["train_until"])
            plots.append(str(png))
            planted = ", ".join(f"{k} rows {a}-{b}" for k, a, b in m["anomalies"])
            hit = [k for k, a, b in m["anomalies"]
                   if any(f and a <= m["train_until"] + i <= b + detector.window for i, f in enumerate(flags))]
            echo(f"{name}: {sum(flags)} flagged points; planted: {planted}; found: {', '.join(hit) or 'none'}")
        stats = alerts.Deliverer(hooks, settings=settings).drain(timeout=60)
        delivered = len(alerts_file.read_text().splitlines()) if alerts_file.exists() else 0
        summary.update(plots=plots, alerts_file=str(alerts_file), flagged=flagged_total,
                       alerts_delivered=delivered, delivery=str(stats))

    summary["seconds"] = round(time.perf_counter() - started, 1)
    redis_where = settings.redis_url or os.environ.get("EA_REDIS_URL") or "embedded"
    echo("\nsummary:")
    echo(f"  data:    {out / 'data'}")
    echo(f"  plots:   {', '.join(plots)}")
    echo(f"  alerts:  {alerts_file} ({summary['alerts_delivered']} notifications)")
    echo(f"  redis:   {redis_where}")
    echo(f"  took:    {summary['seconds']} s")
    echo("next: `ea models`, `ea recommend --model demo-lightgcn --user user-5 --field title`, "
         "`ea similar --model demo-node2vec --item item-3`, `ea detect --help`, `ea alerts --help`")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
