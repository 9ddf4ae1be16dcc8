"""``ea detect``, ``ea train series``, ``ea score``, ``ea outliers``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ._common import WORKER_PATHS, LibraryChoice, parse_params, train

if TYPE_CHECKING:  # the CLI imports the library only when a command runs
    from anomaly import ReadOptions

__all__ = ["COMMANDS"]

DUPLICATES = LibraryChoice("anomaly.series:DUPLICATE_POLICIES")
EMBEDDINGS = LibraryChoice("anomaly.detector:EMBEDDINGS")
EMBEDDING_HELP = ("Short window embedding [+ long context embedding]: raw+paa (raw window + piecewise means of "
                  "the last 256 rows), raw, raw+lstm, raw+gru, lstm, gru (lstm/gru need the 'train' extra); "
                  "default: the detector's (anomaly.detector.DEFAULT_EMBEDDING, raw+paa).")


def _read_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the series-reading options (columns, repeated timestamps) to a command."""
    flags = [
        click.option("--timestamp-col", default="timestamp", show_default=True,
                     help="Timestamp column (a unique case-insensitive match also works)."),
        click.option("--value-col", default="value", show_default=True, help="Value column."),
        click.option("--duplicates", type=DUPLICATES, default="keep", show_default=True,
                     help="Rows sharing a timestamp: keep them all (warned), average them, keep the last one, "
                          "or refuse the file."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def _read_options(timestamp_col: str, value_col: str, duplicates: str) -> ReadOptions:
    """The ``read_options`` the library takes (keyword arguments of ``anomaly.series.read_series``)."""
    return {"timestamp_col": timestamp_col, "value_col": value_col, "duplicates": duplicates}


@click.command()
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV.")
@click.option("--train-until", type=int, required=True, help="Fit on the first N rows.")
@click.option("--scores-out", required=True, help="Output CSV: timestamp,value,score,is_anomaly.")
@click.option("--plot", default=None, help="Also draw the series, its incidents, the score and its threshold to "
              "this PNG.")
@click.option("--explain", default=None, help="Also write one JSON line per alert to this file: the window, its "
              "nearest earlier windows with their timestamps and distances, the score.")
@click.option("--embedding", type=EMBEDDINGS, default=None,
              help=EMBEDDING_HELP)
@click.option("--window", type=int, default=None, help="Short window length, rows (default 16).")
@click.option("--param", "params", multiple=True, help="Detector parameter KEY=VALUE (repeatable), e.g. "
              "delay=100; an unknown KEY is refused with the list of accepted ones.")
@_read_flags
def detect(input_csv, train_until, scores_out, plot, explain, embedding, window, params, timestamp_col, value_col,
           duplicates) -> None:
    """Fit a kNN-distance detector on the first N rows and score every row causally, learning as it goes;
    the alerting layer's incident machine (EA_ALERT_* settings) decides which rows alert (is_anomaly).

    Prints one JSON line: rows, anomalies, the window, timings and the files written.
    """
    from ..detection import detect_file

    result = detect_file(input_csv, train_until, scores_out, plot=plot, embedding=embedding, window=window,
                         explain=explain, read_options=_read_options(timestamp_col, value_col, duplicates),
                         **parse_params(params))
    click.echo(json.dumps(result.summary))


@train.command("series")
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV the worker can read.")
@click.option("--name", required=True, help="Detector model name to publish under.")
@click.option("--train-until", type=int, default=None, help="Fit on the first N rows (default: all).")
@click.option("--embedding", type=EMBEDDINGS, default=None,
              help=EMBEDDING_HELP)
@click.option("--param", "params", multiple=True, help="Detector parameter KEY=VALUE (repeatable).")
@click.option("--series-id", default=None, help="Id of the series trained on (default: its id in the file, or "
              "'default'): `ea score --series-id` with it continues after the training rows.")
@click.option("--wait", is_flag=True, help="Wait with a progress bar and print the result.")
@_read_flags
@WORKER_PATHS
def train_series(input_csv, name, train_until, embedding, params, series_id, wait, timestamp_col, value_col,
                 duplicates, worker_paths) -> None:
    """Train a series anomaly detector (window embeddings + hnswlib reference index) and publish it.

    The input path is made absolute and checked here before the job is queued (--worker-paths: it names a
    file on the workers' machines).
    """
    from .. import jobs

    handle = jobs.train_series(input_csv, name=name, train_until=train_until, embedding=embedding,
                               params=parse_params(params),
                               read_options=_read_options(timestamp_col, value_col, duplicates),
                               series_id=series_id, check_paths=not worker_paths)
    click.echo(f"submitted {handle.id} (follow it with `ea jobs {handle.id} --wait`)")
    if wait:
        click.echo(json.dumps(handle.wait(show_progress=True)))


@click.command()
@click.option("--model", "name", required=True, help="Published detector model.")
@click.option("--series-id", required=True, help="Which stream the points belong to (state is kept per id).")
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV of new points.")
@_read_flags
def score(name, series_id, input_csv, timestamp_col, value_col, duplicates) -> None:
    """Score new points of a stream with a published detector (state kept in Redis), raising incidents."""
    from anomaly import read_one_series

    from ..scoring import score_series

    series = read_one_series(input_csv, **_read_options(timestamp_col, value_col, duplicates))
    out = score_series(name, series_id, [t.isoformat() for t in series.timestamps], series.values.tolist())
    click.echo(json.dumps({"model": name, "version": out["version"], "series_id": series_id, "rows": len(series),
                           "anomalies": int(sum(out["is_anomaly"])), "notifications": out["notifications"],
                           "warming_up": out["warming_up"], "position": out["position"],
                           "alerts": [e for e in out["explanations"] if e.get("alert")]}))


@click.command()
@click.option("--model", "name", required=True, help="A published graph model.")
@click.option("--kind", type=click.Choice(["users", "items"]), default="users", show_default=True)
@click.option("--k", type=int, default=10, show_default=True, help="Peers averaged in the distance.")
@click.option("--top", type=int, default=20, show_default=True, help="How many to list.")
@click.option("--json", "as_json", is_flag=True)
def outliers(name, kind, k, top, as_json) -> None:
    """List the users or items farthest from their nearest peers in a graph model's embedding space."""
    from ..scoring import entity_outliers

    df = entity_outliers(name, kind, k=k)
    if as_json:
        click.echo(df.head(top).to_json(orient="records"))
        return
    click.echo(f"{int(df['is_outlier'].sum())} outliers among {len(df)} {kind} "
               f"(threshold {df.attrs['threshold']:.4g})")
    click.echo(df.head(top).to_string(index=False))


COMMANDS = [detect, score, outliers]
