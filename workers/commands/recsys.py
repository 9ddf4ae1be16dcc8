"""``ea train graph``, ``ea eval recsys``, ``ea recommend``, ``ea similar``."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from typing import Any

import click

from recsys import DEFAULT_MODEL, MODELS
from vectorstore import INDEX_BACKENDS

from ._common import WORKER_PATHS, parse_params, train

__all__ = ["COMMANDS", "train"]


def _interaction_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the interaction-file options (column names, encoding) to a command."""
    flags = [click.option(f"--{name}-col", f"{name}_col", default=None, metavar="NAME",
                          help=f"The file's column holding the {name} (default: {name}).")
             for name in ("user", "item", "weight", "timestamp")]
    flags.append(click.option("--encoding", default=None, help="Text encoding of the files (default: UTF-8, "
                                                                "else latin-1 with a warning), e.g. cp1252."))
    for flag in reversed(flags):
        command = flag(command)
    return command


def _read_options(user_col: str | None, item_col: str | None, weight_col: str | None, timestamp_col: str | None,
                  encoding: str | None) -> dict[str, Any]:
    """``recsys.Interactions.read`` keywords of the options of :func:`_interaction_flags`."""
    columns = {name: col for name, col in (("user", user_col), ("item", item_col), ("weight", weight_col),
                                           ("timestamp", timestamp_col)) if col}
    return {**({"columns": columns} if columns else {}), **({"encoding": encoding} if encoding else {})}


@train.command("graph")
@click.option("--interactions", required=True, help="Path the worker can read: CSV/Parquet user,item[,weight].")
@click.option("--model", "algorithm", type=click.Choice(sorted(MODELS)), default=DEFAULT_MODEL,
              show_default=True)
@click.option("--name", default="default", show_default=True, help="Model name to publish under.")
@click.option("--valid", default=None,
              help="Held-out interactions to stop LightGCN on (else it carves a split from the training data).")
@click.option("--test", default=None, help="Held-out interactions for the published metrics.")
@click.option("--item-metadata", default=None, help="CSV with an `item` column (title, category...).")
@click.option("--param", "params", multiple=True, help="Model parameter KEY=VALUE (repeatable), e.g. dim=64.")
@click.option("--precompute", type=int, default=0, help="Then precompute every user's top-N (N).")
@click.option("--index-backend", type=click.Choice(INDEX_BACKENDS), default=INDEX_BACKENDS[0], show_default=True,
              help="Where the item index lives: in the serving process, or a Milvus collection (EA_MILVUS_URI).")
@click.option("--wait", is_flag=True, help="Wait with a progress bar and print the result.")
@_interaction_flags
@WORKER_PATHS
def train_graph(interactions, algorithm, name, valid, test, item_metadata, params, precompute, index_backend, wait,
                user_col, item_col, weight_col, timestamp_col, encoding, worker_paths) -> None:
    """Train a graph model (spectral, LightGCN or Node2Vec) on an interaction file and publish it as NAME.

    Paths are made absolute and checked here before the job is queued (--worker-paths: they name files on
    the workers' machines).
    """
    from .. import jobs

    handle = jobs.train_graph(interactions, model=algorithm, name=name, params=parse_params(params), valid=valid,
                              test=test, item_metadata=item_metadata, precompute=precompute,
                              read_options=_read_options(user_col, item_col, weight_col, timestamp_col, encoding),
                              check_paths=not worker_paths, index_backend=index_backend)
    click.echo(f"submitted {handle.id} (follow it with `ea jobs {handle.id} --wait`)")
    if wait:
        click.echo(json.dumps(handle.wait(show_progress=True)))


@click.group("eval")
def eval_group() -> None:
    """Evaluate models on a train/test split."""


@eval_group.command("recsys")
@click.option("--train", "train_path", required=True, help="Training interactions (user,item CSV).")
@click.option("--test", "test_path", required=True, help="Test interactions (user,item CSV).")
@click.option("--model", "algorithm", type=click.Choice(sorted(MODELS)), default=DEFAULT_MODEL, show_default=True)
@click.option("--k", type=int, default=20, show_default=True)
@click.option("--recs-out", required=True, help="Where to write user,item,rank of every test user.")
@click.option("--name", default="eval", show_default=True, help="Model name to publish under.")
@click.option("--param", "params", multiple=True, help="Model parameter KEY=VALUE (repeatable).")
@_interaction_flags
def eval_recsys(train_path, test_path, algorithm, k, recs_out, name, params, user_col, item_col, weight_col,
                timestamp_col, encoding) -> None:
    """Train on TRAIN, publish as NAME, and write the top-k of every TEST user through the serving client.

    Prints one JSON line: recall@k, ndcg@k and the wall time of each stage.
    """
    from recsys import Interactions, RecommendationClient, ranking_metrics, train_and_publish

    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    read_options = _read_options(user_col, item_col, weight_col, timestamp_col, encoding)
    result = train_and_publish(train_path, algorithm=algorithm, name=name, params=parse_params(params), k=k,
                               read_options=read_options)
    stages.update({f"{key}": round(v, 3) for key, v in result.timings.items()})
    t = time.perf_counter()
    test = Interactions.read(test_path, **read_options)
    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        if client.model_version != result.version:
            raise click.ClickException(f"served v{client.model_version}, expected v{result.version}")
        users = test.user_ids.tolist()
        recs = {}
        with open(recs_out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["user", "item", "rank"])
            for start in range(0, len(users), 1000):
                for rec in client.recommend_many(users[start : start + 1000], k=k):
                    recs[rec.user] = rec.items
                    writer.writerows((rec.user, item, rank) for rank, item in enumerate(rec.items, start=1))
    stages["recommend_s"] = round(time.perf_counter() - t, 3)
    truth: dict[str, set] = {}
    for user, item in zip(test.user_ids[test.users], test.item_ids[test.items]):
        truth.setdefault(str(user), set()).add(str(item))
    metrics = ranking_metrics(recs, truth, k)
    stages["total_s"] = round(time.perf_counter() - t0, 3)
    click.echo(json.dumps({f"recall@{k}": metrics[f"recall@{k}"], f"ndcg@{k}": metrics[f"ndcg@{k}"],
                           "users": metrics["users"], "model": name, "version": result.version,
                           "algorithm": algorithm, "stages": stages}))


def _print(recs, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"model": recs.model, "version": recs.model_version, "source": recs.source,
                               "items": recs.items, "scores": [round(float(s), 6) for s in recs.scores],
                               **({"fields": recs.fields} if recs.fields else {})}))
        return
    click.echo(f"model {recs.model} v{recs.model_version} ({recs.source})")
    click.echo(recs.to_pandas().to_string(index=False))


@click.command()
@click.option("--user", required=True)
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--model", "name", default="default", show_default=True)
@click.option("--field", "fields", multiple=True, help="Item metadata to show (repeatable), e.g. title.")
@click.option("--strict", is_flag=True, help="Fail for unknown users instead of popular items.")
@click.option("--filter", "expression", default=None,
              help="Only items whose metadata pass EXPR, e.g. 'genre == \"Comedy\" and year >= 1990'.")
@click.option("--json", "as_json", is_flag=True)
def recommend(user, k, name, fields, strict, expression, as_json) -> None:
    """Recommend K items for USER from the active version of a model."""
    from recsys import RecommendationClient

    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        _print(client.recommend(user, k=k, fields=list(fields) or None, strict=strict, filter=expression), as_json)


@click.command()
@click.option("--item", required=True)
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--model", "name", default="default", show_default=True)
@click.option("--field", "fields", multiple=True)
@click.option("--metric", type=click.Choice(["ip", "cosine"]), default="ip", show_default=True,
              help="The model's inner product, or cosine (by direction only: popular items do not lead).")
@click.option("--filter", "expression", default=None, help="Only items whose metadata pass EXPR.")
@click.option("--json", "as_json", is_flag=True)
def similar(item, k, name, fields, metric, expression, as_json) -> None:
    """The K items most similar to ITEM."""
    from recsys import RecommendationClient

    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        _print(client.similar_items(item, k=k, fields=list(fields) or None, metric=metric, filter=expression),
               as_json)


COMMANDS = [train, eval_group, recommend, similar]
