"""Hooks registered in Redis, shared by every delivery consumer, and the marks of hooks disabled by a 410.

A hook added here (``ea alerts hooks add NAME --webhook URL``) is delivered to by every ``ea alerts run``
consumer and every ``alerts`` worker of the deployment, whichever of them reads a notification, in addition
to the hooks of its own options and environment. Consumers notice a change through a version counter they
read before each batch, so a hook added before a notification is appended receives it.

This module owns these records (their keys, how they are written and read back):

===========================  =======  ====================================================================
``{alerts}:hooks``           HASH     hook name -> JSON spec ``{"kind": "webhook", "url", "secret",
                                      "format", "added_at"}``
``{alerts}:hooks:version``   STRING   counter, incremented at each change of the shared hooks
``{alerts}:hooks:disabled``  HASH     hook name -> JSON mark ``{"reason", "at", "status"}`` of an endpoint
                                      that answered 410 Gone (the hook's deliveries are dead-lettered)
===========================  =======  ====================================================================

The secret is kept in Redis for the consumers to sign with; it is never returned by :func:`shared_hooks` nor
shown by ``ea alerts hooks`` (protect Redis with a password, as the compose file does).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Literal

import redis

from vectorstore import Settings, connect, get_settings, redact_url

from ._records import number, parse_json, text
from .exceptions import CorruptRecord, HookNotFound, InvalidAlertSetting
from .hooks import Hook
from .webhook import WebhookHook

log = logging.getLogger(__name__)

__all__ = ["HookKeys", "SharedHook", "add_hook", "disable_hook", "disabled_hooks", "enable_hook", "load_shared_hooks",
           "queue_disabled", "read_disabled", "remove_hook", "shared_hooks", "shared_hooks_version"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")


@dataclass(frozen=True)
class HookKeys:
    """The key names of the shared hooks and their marks under one key prefix."""

    prefix: str

    @property
    def hooks(self) -> str:
        return f"{self.prefix}{{alerts}}:hooks"

    @property
    def version(self) -> str:
        return f"{self.prefix}{{alerts}}:hooks:version"

    @property
    def disabled(self) -> str:
        return f"{self.prefix}{{alerts}}:hooks:disabled"


def _ctx(settings: Settings | None, client: redis.Redis | None) -> tuple[HookKeys, redis.Redis]:
    settings = settings or get_settings()
    return HookKeys(settings.key_prefix), client or connect(settings)


@dataclass(frozen=True)
class SharedHook:
    """A hook registered in Redis, as listed (no secret: only whether it has one)."""

    name: str
    kind: str
    url: str  # credentials redacted
    format: str
    has_secret: bool
    added_at: float


def add_hook(name: str, url: str, *, secret: str | None = None,
             format: Literal["native", "alertmanager"] = "native", settings: Settings | None = None,
             client: redis.Redis | None = None) -> SharedHook:
    """Register (or replace) webhook ``name`` for every consumer of the deployment.

    Args:
        name: 1-64 letters, digits and ``_.:@-``, starting with a letter or digit.
        url: the http(s) endpoint (user info becomes Basic auth).
        secret: HMAC key of the signature headers (None: unsigned).
        format: ``"native"`` or ``"alertmanager"``.

    Raises:
        InvalidAlertSetting: a bad name, URL or format (nothing is registered).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidAlertSetting(f"hook name {name!r} must be 1-64 letters, digits or _.:@- (starting with a letter "
                               "or digit)")
    try:
        WebhookHook(url, secret, format=format, name=name)  # validates the URL and the format
    except ValueError as exc:
        raise InvalidAlertSetting(str(exc)) from None
    keys, client = _ctx(settings, client)
    spec = {"kind": "webhook", "url": url, "secret": secret or None, "format": format, "added_at": time.time()}
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.hooks, name, json.dumps(spec))
    pipe.incr(keys.version)
    pipe.execute()
    return _listed(name, spec)


def remove_hook(name: str, *, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
    """Unregister hook ``name`` (consumers stop delivering to it; a 410 mark on it is cleared).

    Raises:
        HookNotFound: no hook of that name is registered in Redis.
    """
    keys, client = _ctx(settings, client)
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.hooks, name)
    pipe.hdel(keys.disabled, name)
    pipe.incr(keys.version)
    removed, _, _ = pipe.execute()
    if not removed:
        raise HookNotFound(f"no hook {name!r} is registered (`ea alerts hooks` lists them)")


def shared_hooks(*, settings: Settings | None = None, client: redis.Redis | None = None) -> list[SharedHook]:
    """The hooks registered in Redis, by name, secrets left out; a record that holds garbage is left out with
    a warning naming it (``ea alerts hooks remove NAME`` deletes it)."""
    keys, client = _ctx(settings, client)
    listed = []
    for name, raw in sorted(client.hgetall(keys.hooks).items()):
        try:
            listed.append(_listed(_hook_name(name), _spec(raw)))
        except CorruptRecord as exc:
            log.warning("shared alert hook %s skipped: %s", name.decode(errors="replace")[:64], exc)
    return listed


def shared_hooks_version(client: redis.Redis, keys: HookKeys) -> bytes | None:
    """The change counter of the shared hooks (``None`` until the first change)."""
    return client.get(keys.version)


def load_shared_hooks(client: redis.Redis, keys: HookKeys) -> dict[str, Hook]:
    """The hooks registered in Redis, ready to deliver (secrets included), by name. A spec that cannot be
    built (written by a newer version, say) is left out."""
    hooks: dict[str, Hook] = {}
    for name, raw in client.hgetall(keys.hooks).items():
        try:
            spec = _spec(raw)
            hooks[_hook_name(name)] = WebhookHook(spec["url"], spec.get("secret"), format=spec.get("format", "native"),
                                                  name=_hook_name(name))
        except (ValueError, KeyError, TypeError) as exc:  # CorruptRecord is a ValueError
            why = exc if isinstance(exc, CorruptRecord) else "its webhook cannot be built"
            log.warning("shared alert hook %s skipped: %s", name.decode(errors="replace")[:64], why)
    return hooks


def _hook_name(raw: bytes) -> str:
    name = raw.decode(errors="replace")
    if not _NAME.fullmatch(name):
        raise CorruptRecord("hook name is not 1-64 letters, digits or _.:@-")
    return name


def _spec(raw: bytes) -> dict:
    """A hook's spec as :func:`add_hook` writes it, or CorruptRecord naming the bad field."""
    spec = parse_json(raw, "hook record")
    if not isinstance(spec, dict):
        raise CorruptRecord("hook record is not a JSON object")
    if not isinstance(spec.get("url"), str) or spec.get("format", "native") not in ("native", "alertmanager"):
        raise CorruptRecord("hook record: field 'url' or 'format' is missing or of the wrong type")
    if spec.get("secret") is not None and not isinstance(spec["secret"], str):
        raise CorruptRecord("hook record: field 'secret' is not text")
    added = spec.get("added_at", 0.0)
    if not isinstance(added, int | float) or isinstance(added, bool) or not math.isfinite(added):
        raise CorruptRecord("hook record: field 'added_at' is not a finite number")
    return spec


def _listed(name: str, spec: dict) -> SharedHook:
    return SharedHook(name, spec.get("kind", "webhook"), redact_url(spec.get("url", "")), spec.get("format", "native"),
                      bool(spec.get("secret")), float(spec.get("added_at", 0.0)))


# --- disabled-hook marks -----------------------------------------------------------------------------------


def disable_hook(client: redis.Redis, keys: HookKeys, name: str, reason: str, status: int | None) -> None:
    """Mark hook ``name`` disabled (its endpoint answered 410 Gone): its deliveries are dead-lettered until
    :func:`enable_hook`."""
    client.hset(keys.disabled, name, json.dumps({"reason": reason, "at": time.time(), "status": status}))


def queue_disabled(pipe: redis.client.Pipeline, keys: HookKeys) -> None:
    """Queue the read of the disabled hooks' names on ``pipe`` (:func:`read_disabled` reads the reply)."""
    pipe.hkeys(keys.disabled)


def read_disabled(reply: list[bytes]) -> set[str]:
    """The names of :func:`queue_disabled`'s reply."""
    return {name.decode(errors="replace") for name in reply}


def disabled_hooks(*, settings: Settings | None = None, client: redis.Redis | None = None) -> dict[str, dict]:
    """Hooks disabled because their endpoint answered 410: name -> ``{"reason", "at", "status"}``."""
    keys, client = _ctx(settings, client)
    found = {}
    for k, v in client.hgetall(keys.disabled).items():
        try:
            mark = parse_json(v, "disabled-hook mark")
        except CorruptRecord:
            mark = None
        if not isinstance(mark, dict):  # still disabled (HGET finds it); enable_hook's HDEL clears it
            mark = {"reason": "unreadable mark"}
        status = mark.get("status")
        found[text(k)] = {"reason": text(str(mark.get("reason", "unreadable mark")).encode()),
                          "at": number(str(mark.get("at")).encode()),
                          "status": status if type(status) is int else None}
    return found


def enable_hook(name: str, *, settings: Settings | None = None, client: redis.Redis | None = None) -> bool:
    """Re-enable a disabled hook (its dead letters stay; ``requeue`` them). Returns whether it was disabled."""
    keys, client = _ctx(settings, client)
    return bool(client.hdel(keys.disabled, name))
