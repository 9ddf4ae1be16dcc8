"""``ea items upsert``, ``ea items delete``, ``ea users update``: deltas on a model's active version.

Each command writes at once (``recsys.CatalogueWriter``, no worker needed) and prints the receipt
as one JSON line; every client of the model applies the change within about a second.
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
