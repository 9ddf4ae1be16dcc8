"""``ea detect``, ``ea train series``, ``ea score``, ``ea outliers``."""

from __future__ import annotations

import json

import click

from .recsys import _params, train

__all__ = ["COMMANDS"]


@click.command()
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV.")
@click.option("--train-until", type=int, required=True, help="Fit on the first N rows.")
@click.option("--scores-out", required=True, help="Output CSV: timestamp,value,score,is_anomaly.")
@click.option("--plot", default=None, help="Also draw series, score, threshold and flagged points to this PNG.")
@click.option("--embedding", type=click.Choice(["lstm", "gru", "raw"]), default="lstm", show_default=True)
@click.option("--window", type=int, default=None, help="Window length (default: chosen from the training part).")
@click.option("--param", "params", multiple=True, help="Detector parameter KEY=VALUE (repeatable), e.g. k=3.")
def detect(input_csv, train_until, scores_out, plot, embedding, window, params) -> None:
    """Fit a kNN-distance detector on the first N rows and score every row causally.

    Prints one JSON line: the chosen window, threshold, number of anomalies and timings.
    """
    from anomaly.detect import detect_file

    result = detect_file(input_csv, train_until, scores_out, plot=plot, embedding=embedding, window=window,
                         **_params(params))
    click.echo(json.dumps(result.summary))


@train.command("series")
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV the worker can read.")
@click.option("--name", required=True, help="Detector model name to publish under.")
@click.option("--train-until", type=int, default=None, help="Fit on the first N rows (default: all).")
@click.option("--embedding", type=click.Choice(["lstm", "gru", "raw"]), default="lstm", show_default=True)
@click.option("--param", "params", multiple=True, help="Detector parameter KEY=VALUE (repeatable).")
@click.option("--wait", is_flag=True, help="Wait with a progress bar and print the result.")
def train_series(input_csv, name, train_until, embedding, params, wait) -> None:
    """Train a series anomaly detector (LSTM/GRU autoencoder + kNN index) and publish it."""
    from ..jobs import submit

    handle = submit("ea.train_series", series=input_csv, name=name, train_until=train_until, embedding=embedding,
                    params=_params(params))
    click.echo(f"submitted {handle.id}")
    if wait:
        click.echo(json.dumps(handle.wait(show_progress=True)))


@click.command()
@click.option("--model", "name", required=True, help="Published detector model.")
@click.option("--series-id", required=True, help="Which stream the points belong to (state is kept per id).")
@click.option("--input", "input_csv", required=True, help="timestamp,value CSV of new points.")
def score(name, series_id, input_csv) -> None:
    """Score new points of a stream with a published detector (state kept in Redis), raising incidents."""
    from anomaly.series import read_one_series
    from anomaly.service import score_points

    series = read_one_series(input_csv)
    out = score_points(name, series_id, [str(t) for t in series.timestamps], series.values.tolist())
    click.echo(json.dumps({k: v for k, v in out.items() if k not in ("scores",)}))


@click.command()
@click.option("--model", "name", required=True, help="A published graph model.")
@click.option("--kind", type=click.Choice(["users", "items"]), default="users", show_default=True)
@click.option("--k", type=int, default=10, show_default=True, help="Peers averaged in the distance.")
@click.option("--top", type=int, default=20, show_default=True, help="How many to list.")
@click.option("--json", "as_json", is_flag=True)
def outliers(name, kind, k, top, as_json) -> None:
    """List the users or items farthest from their nearest peers in a graph model's embedding space."""
    from anomaly.service import entity_outliers

    df = entity_outliers(name, kind, k=k)
    if as_json:
        click.echo(df.head(top).to_json(orient="records"))
        return
    click.echo(f"{int(df['is_outlier'].sum())} outliers among {len(df)} {kind} "
               f"(threshold {df.attrs['threshold']:.4g})")
    click.echo(df.head(top).to_string(index=False))


COMMANDS = [detect, score, outliers]
