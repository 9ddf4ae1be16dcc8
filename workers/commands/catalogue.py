"""``ea items upsert``, ``ea items delete``, ``ea users update``: deltas on a model's active version;
``ea items get`` and ``ea items query``: its items by id or by filter.

Each delta command writes at once (``recsys.CatalogueWriter``, no worker needed) and prints the receipt
as one JSON line; every client of the model applies the change within about a second. ``get`` and ``query``
print one JSON line per item (``RecommendationClient.get`` / ``.query``, as pymilvus' ``get`` / ``query``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from ._common import parse_params

__all__ = ["COMMANDS"]


def _writer(name: str) -> Any:
    from recsys import CatalogueWriter

    return CatalogueWriter(name)


@click.group("items")
def items_group() -> None:
    """Add, change or delete a model's items without retraining (deltas on the active version)."""


@items_group.command("upsert")
@click.argument("item")
@click.option("--model", "name", default="default", show_default=True)
@click.option("--vector", default=None, metavar="JSON", help="The item's vector as a JSON list of numbers.")
@click.option("--users", default=None, metavar="U1,U2,...",
              help="Fold the item in from the users who interacted with it (instead of --vector).")
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE", help="Item metadata (repeatable).")
def upsert(item, name, vector, users, fields) -> None:
    """Add ITEM, or replace its vector (a deleted item comes back)."""
    spec: dict[str, Any] = {"id": item}
    if vector is not None:
        try:
            spec["vector"] = json.loads(vector)
        except ValueError:
            raise click.BadParameter("not a JSON list of numbers", param_hint="--vector") from None
    if users:
        spec["users"] = [u for u in users.split(",") if u]
    if fields:
        spec["metadata"] = parse_params(fields, "--field")
    click.echo(json.dumps(asdict(_writer(name).upsert_items([spec]))))


@items_group.command("delete")
@click.argument("items", nargs=-1, required=True)
@click.option("--model", "name", default="default", show_default=True)
def delete(items, name) -> None:
    """Delete ITEMS: no client returns them from then on."""
    click.echo(json.dumps(asdict(_writer(name).delete_items(list(items)))))


@items_group.command("set")
@click.argument("item")
@click.option("--model", "name", default="default", show_default=True)
@click.option("--field", "fields", multiple=True, required=True, metavar="KEY=VALUE", help="Repeatable.")
def set_fields(item, name, fields) -> None:
    """Set metadata fields of ITEM."""
    click.echo(json.dumps(asdict(_writer(name).update_metadata({item: parse_params(fields, "--field")}))))


@items_group.command("get")
@click.argument("items", nargs=-1, required=True)
@click.option("--model", "name", default="default", show_default=True)
@click.option("--field", "fields", multiple=True, help="Metadata to show (repeatable; default: every field).")
def get(items, name, fields) -> None:
    """ITEMS as the active version holds them (unknown or deleted ones left out), one JSON line each."""
    from recsys import RecommendationClient

    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        for row in client.get(list(items), fields=list(fields) or None):
            click.echo(json.dumps(row, default=str))


@items_group.command("query")
@click.argument("expression", required=False)
@click.option("--model", "name", default="default", show_default=True)
@click.option("--field", "fields", multiple=True, help="Metadata to show (repeatable; default: every field).")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
def query(expression, name, fields, limit, offset) -> None:
    """The active version's items passing EXPRESSION (as ``ea recommend --filter``; none: every item), one
    JSON line each."""
    from recsys import RecommendationClient

    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        for row in client.query(expression, fields=list(fields) or None, limit=limit, offset=offset):
            click.echo(json.dumps(row, default=str))


@click.group("users")
def users_group() -> None:
    """Change a model's users without retraining (deltas on the active version)."""


@users_group.command("update")
@click.argument("user")
@click.argument("items", nargs=-1, required=True)
@click.option("--model", "name", default="default", show_default=True)
def update(user, items, name) -> None:
    """Record that USER interacted with ITEMS: their vector takes them in, they are not recommended to USER
    again, and the next training learns them."""
    click.echo(json.dumps(asdict(_writer(name).update_users({user: list(items)}))))


COMMANDS = [items_group, users_group]
