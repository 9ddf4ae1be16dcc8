"""The Redis keys of the model registry: the one place they are spelled.

Every key of a model is ``<prefix>model:{<name>}:...`` (prefix ``EA_KEY_PREFIX``, default ``ea:``), each
method of :class:`ModelKeys` names one of them and what it holds. The braces are a Redis Cluster hash tag:
all keys of a model live in one slot, so the registry's scripts and transactions may touch any of them
together. Only ``<prefix>models`` is outside a model.
"""

from __future__ import annotations

from ...exceptions import InvalidModelData

__all__ = ["ModelKeys", "check_name", "derived_label", "table_label"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(what: str, name: str) -> str:
    """``name`` (of a model, part, table or derived key) if it is safe in a key, else :class:`InvalidModelData`."""
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 200:
        raise InvalidModelData(f"{what} {name!r} must be 1-200 characters of letters, digits, '-', '_', '.'")
    return name


def table_label(name: str) -> str:
    """How a version's per-key table ``name`` is named in its key and in its rows' signatures."""
    return f"t:{name}"


def derived_label(name: str) -> str:
    """How data derived from a version under ``name`` is named in its key and in its rows' signatures."""
    return f"x:{name}"


class ModelKeys:
    """The keys of every model under one key prefix (names are checked by the callers, with :func:`check_name`).

    Args:
        prefix: ``EA_KEY_PREFIX``.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, model: str, *parts: object) -> str:
        """``<prefix>model:{<model>}:<part>:<part>...``: any key of a model."""
        return ":".join([f"{self.prefix}model:{{{model}}}", *map(str, parts)])

    def models(self) -> str:
        """The set of model names."""
        return f"{self.prefix}models"

    def seq(self, model: str) -> str:
        """STRING: the last version number given out (the next is above it and every stored version)."""
        return self.key(model, "seq")

    def active(self, model: str) -> str:
        """STRING: the active version number."""
        return self.key(model, "active")

    def versions(self, model: str) -> str:
        """ZSET: the complete versions (score = version)."""
        return self.key(model, "versions")

    def tokens(self, model: str) -> str:
        """HASH: publication token -> the version committed with it."""
        return self.key(model, "tokens")

    def leases(self, model: str) -> str:
        """ZSET: ``<version>:<holder>`` -> when the lease ends (:mod:`.leases`)."""
        return self.key(model, "leases")

    def events(self, model: str) -> str:
        """PUB/SUB channel: ``staged`` and ``activated`` notices (and the catalogue's ``delta`` ones)."""
        return self.key(model, "events")

    def version(self, model: str, version: int, *parts: object) -> str:
        """A key of one version: ``...:v:<version>:<part>...``."""
        return self.key(model, f"v:{int(version)}", *parts)

    def manifest(self, model: str, version: int) -> str:
        """STRING: the version's JSON manifest (parts with their sha256, tables, meta, signature)."""
        return self.version(model, version, "manifest")

    def data(self, model: str, version: int) -> str:
        """HASH: ``<part>:<chunk>`` -> bytes (arrays as raw little-endian bytes, blobs in chunks)."""
        return self.version(model, version, "data")

    def table(self, model: str, version: int, name: str) -> str:
        """HASH: a per-key table, key -> row (read a few rows per request, e.g. one user's vector)."""
        return self.version(model, version, table_label(name))

    def derived(self, model: str, version: int, name: str) -> str:
        """Any type: data derived from the version after publication (e.g. precomputed top-N lists)."""
        return self.version(model, version, derived_label(name))

    def derived_set(self, model: str, version: int) -> str:
        """SET: the version's derived keys, deleted with it."""
        return self.version(model, version, "derived")
