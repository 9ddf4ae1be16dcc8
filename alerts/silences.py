"""Silences, in Alertmanager's sense: matchers, a start and an end, who and why.

A silence mutes the notifications of the incidents it matches while it is active (from ``starts_at`` to
``ends_at``, wall-clock time): the incidents still open and resolve, are kept in the history and listed as
silenced, but no hook is notified. An incident that was silenced all along does not notify its resolution
either (no hook saw it fire). Expiring a silence ends it now; expired silences are kept for the record.

Matchers are Alertmanager's: ``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` (a regex
matches the whole value). The names are ``detector`` (the model whose scores they are), ``series`` (the
series or entity id), ``kind`` and any label of the incident; a label the incident lacks reads as empty.
Every matcher of a silence must match.

This module owns the record ``{alerts}:silences`` (HASH: silence id -> JSON ``{"id", "matchers": [{"name",
"op", "value"}], "starts_at", "ends_at", "created_by", "comment", "created_at"}``, times in epoch seconds).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis

from vectorstore import Settings, connect, get_settings

from ._records import is_number, parse_json, to_epoch
from .exceptions import CorruptRecord, InvalidAlertSetting, SilenceNotFound
from .notification import Incident

__all__ = ["Matcher", "Silence", "add_silence", "expire_silence", "parse_matcher", "silence_key", "silences"]

log = logging.getLogger(__name__)

_OPS = ("=~", "!~", "!=", "=")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.-]{0,63})\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class Matcher:
    """``name op value``: ``op`` is ``=``, ``!=``, ``=~`` or ``!~`` (regex on the whole value).

    Raises:
        InvalidAlertSetting: an unknown op, or a regex that does not compile (names it).
    """

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise InvalidAlertSetting(f"matcher {self.name}{self.op}{self.value}: op {self.op!r} is not one of "
                                      f"{', '.join(_OPS)}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise InvalidAlertSetting(f"matcher {self.name}{self.op}{self.value!r}: not a regex ({exc})") from None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = re.fullmatch(self.value, value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value) if not self.value.isidentifier() else self.value}"


def parse_matcher(text: str) -> Matcher:
    """A matcher from its text, e.g. ``series=cpu-eu-1``, ``detector=~"cpu-.*"``, ``service!=checkout``
    (quotes around the value are optional).

    Raises:
        InvalidAlertSetting: the text is not ``name op value`` (names it).
    """
    found = _MATCHER.fullmatch(text or "")
    if not found:
        raise InvalidAlertSetting(f"matcher {text!r} is not name=value, name!=value, name=~regex or name!~regex")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(name, op, value)


@dataclass(frozen=True)
class Silence:
    """A silence as stored (times in epoch seconds)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def state(self, now: float | None = None) -> str:
        """``pending`` (not started), ``active`` or ``expired``."""
        now = time.time() if now is None else now
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the record holds, and ``state``)."""
        return {**json.loads(_encode(self)), "state": self.state()}

    def matches(self, incident: Incident) -> bool:
        """Whether every matcher matches the incident."""
        values = {**incident.labels, "detector": incident.model or "", "series": incident.key, "kind": incident.kind}
        return all(m.matches(str(values.get(m.name, ""))) for m in self.matchers)


def silence_key(prefix: str) -> str:
    """The Redis key of the silences under ``prefix``."""
    return f"{prefix}{{alerts}}:silences"


def add_silence(matchers: Iterable[Matcher | str], *, ends_at: Any = None, duration: float | None = None,
                starts_at: Any = None, created_by: str, comment: str, settings: Settings | None = None,
                client: redis.Redis | None = None) -> Silence:
    """Record a silence and return it.

    Args:
        matchers: :class:`Matcher` or their text (:func:`parse_matcher`); at least one.
        starts_at: a datetime, ISO 8601 text or epoch seconds (default: now).
        ends_at, duration: the end (as ``starts_at``), or seconds after the start (one of them).
        created_by, comment: who and why (both required, as in Alertmanager).

    Raises:
        InvalidAlertSetting: no matcher, a bad matcher, an end not after the start, or no author or comment.
    """
    found = tuple(m if isinstance(m, Matcher) else parse_matcher(m) for m in matchers)
    if not found:
        raise InvalidAlertSetting("a silence needs at least one matcher (e.g. series=cpu-eu-1)")
    if not str(created_by or "").strip() or not str(comment or "").strip():
        raise InvalidAlertSetting("a silence needs who made it (created_by) and why (comment)")
    now = time.time()
    start = to_epoch(starts_at) if starts_at is not None else now
    if (ends_at is None) == (duration is None):
        raise InvalidAlertSetting("give the silence's end or its duration (one of them)")
    end = to_epoch(ends_at) if ends_at is not None else start + float(duration or 0)  # type: ignore[operator]
    assert start is not None and end is not None  # to_epoch of a value is never None
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise InvalidAlertSetting(f"silence end {end!r} must be after its start {start!r}")
    silence = Silence(f"sil_{uuid.uuid4().hex[:12]}", found, start, end, str(created_by).strip(),
                      str(comment).strip(), now)
    settings = settings or get_settings()
    (client or connect(settings)).hset(silence_key(settings.key_prefix), silence.id, _encode(silence))
    return silence


def expire_silence(silence_id: str, *, settings: Settings | None = None,
                   client: redis.Redis | None = None) -> Silence:
    """End a silence now (kept for the record); returns it as expired. Expiring an expired one changes nothing.

    Raises:
        SilenceNotFound: no silence has that id.
    """
    settings = settings or get_settings()
    client = client or connect(settings)
    key = silence_key(settings.key_prefix)
    raw = client.hget(key, silence_id)
    if raw is None:
        raise SilenceNotFound(f"no silence {silence_id!r} (ea alerts silence list)")
    silence = _decode(raw)
    now = time.time()
    if silence.ends_at > now:
        silence = replace(silence, ends_at=now, starts_at=min(silence.starts_at, now))
        client.hset(key, silence_id, _encode(silence))
    return silence


def silences(state: str | None = None, *, settings: Settings | None = None,
             client: redis.Redis | None = None) -> list[Silence]:
    """The silences (``state``: only ``active``, ``pending`` or ``expired`` ones), newest first."""
    settings = settings or get_settings()
    client = client or connect(settings)
    found = read_silences(client.hgetall(silence_key(settings.key_prefix)))
    now = time.time()
    return sorted((s for s in found if state is None or s.state(now) == state), key=lambda s: -s.created_at)


def read_silences(raw: Mapping[bytes, bytes]) -> list[Silence]:
    """The silences of the hash read whole, leaving out (with a warning) those that hold garbage."""
    found = []
    for sid, value in raw.items():
        try:
            found.append(_decode(value))
        except CorruptRecord as exc:
            log.warning("silence %s skipped: %s", sid.decode(errors="replace")[:64], exc)
    return found


def silencing(found: Iterable[Silence], incident: Incident, now: float) -> str | None:
    """The id of an active silence among ``found`` that matches ``incident``, or ``None``."""
    return next((s.id for s in found if s.state(now) == "active" and s.matches(incident)), None)


def _encode(s: Silence) -> str:
    data = asdict(s)
    data["matchers"] = [asdict(m) for m in s.matchers]
    return json.dumps(data, separators=(",", ":"))


def _decode(raw: bytes | str) -> Silence:
    data: Any = parse_json(raw, "silence")
    try:
        matchers = tuple(Matcher(str(m["name"]), str(m["op"]), str(m["value"])) for m in data["matchers"])
        times = [data[k] for k in ("starts_at", "ends_at", "created_at")]
        if not all(is_number(t) for t in times) or not matchers:
            raise TypeError
        return Silence(str(data["id"]), matchers, float(times[0]), float(times[1]), str(data["created_by"]),
                       str(data["comment"]), float(times[2]))
    except (KeyError, TypeError, InvalidAlertSetting):
        raise CorruptRecord("silence: a field is missing or of the wrong type") from None
