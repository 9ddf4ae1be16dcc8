"""The notices of a model's channel: the one place they are encoded and decoded.

A model's pub/sub channel (:meth:`~vectorstore.store.registry.keys.ModelKeys.events`) carries one JSON
object per notice, ``{"model", "version", "event"}`` and, for a ``delta``, the stream ``id`` of the delta log
entry it announces:

* ``staged``: a version was published without activation (readers may load it ahead);
* ``activated``: a version became the active one (publication, :meth:`~vectorstore.ModelRegistry.activate`,
  a rollback);
* ``delta``: a delta was appended to a version's log (``recsys.live``).

Notices are published from Redis scripts (a cluster client refuses PUBLISH in a pipeline). A ``delta``
notice names an entry id that only the append script knows: :meth:`ModelNotice.delta_frame` gives the
notice's text before and after the id, which the script joins around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelNotice"]

# A model name never holds a NUL (keys.check_name): json.dumps spells it as this escape, found once.
_ID_MARK = "\x00"
_ID_MARK_JSON = "\\u0000"


@dataclass(frozen=True)
class ModelNotice:
    """One notice of a model's channel.

    Attributes:
        event: :attr:`STAGED`, :attr:`ACTIVATED` or :attr:`DELTA` (a reader skips kinds it does not know).
        model: the model it is about.
        version: the version it is about (>= 1).
        entry: a ``delta``'s log entry id (``None`` for the other kinds).
    """

    event: str
    model: str
    version: int
    entry: str | None = None

    STAGED = "staged"
    ACTIVATED = "activated"
    DELTA = "delta"

    def encode(self) -> str:
        """The notice as PUBLISHed."""
        body: dict[str, Any] = {"model": self.model, "version": int(self.version), "event": self.event}
        if self.entry is not None:
            body["id"] = self.entry
        return json.dumps(body)

    @classmethod
    def delta_frame(cls, model: str, version: int) -> tuple[str, str]:
        """``(head, tail)``: a ``delta`` notice of ``model`` v``version`` is ``head + entry id + tail``, for a
        script that learns the entry id when it appends it."""
        head, tail = cls(cls.DELTA, model, version, _ID_MARK).encode().split(_ID_MARK_JSON)
        return head, tail

    @classmethod
    def decode(cls, data: Any) -> ModelNotice | None:
        """The notice in ``data`` (bytes or str, as a pub/sub message holds it), or ``None`` when it is not
        one (not JSON, no event, no version >= 1): a stray PUBLISH is ignored, never raised."""
        try:
            body = json.loads(data)
            event, version = body["event"], int(body["version"])
            model, entry = body.get("model"), body.get("id")
        except (TypeError, ValueError, KeyError, OverflowError, AttributeError):
            return None
        if not isinstance(event, str) or version < 1:
            return None
        return cls(event, model if isinstance(model, str) else "", version,
                   entry if isinstance(entry, str) else None)
