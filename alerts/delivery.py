"""The delivery consumer: outbox stream -> hooks, at least once, with retries and dead letters.

Each :class:`Deliverer` is one consumer of the outbox's consumer group. One :meth:`Deliverer.step`:

1. **re-claims** entries another consumer read but never acknowledged for ``min_idle`` seconds
   (XAUTOCLAIM): that consumer crashed, its deliveries are not lost;
2. takes the **retries that are due** from the retry ZSET. Taking one leases it (its due time moves
   ``min_idle`` ahead) instead of removing it, so a consumer that dies during a retry leaves it to the next;
3. reads **new entries** (XREADGROUP).

Delivery is tracked per (notification, hook) in a hash: a hook that succeeded is never called again for
that notification, even when another hook is retried or the entry is re-claimed. After a pass over the
hooks an entry is either finished (XACK + XDEL: the outbox keeps only undelivered notifications) or,
if some hook failed in a retryable way, scheduled in the retry ZSET with exponential backoff and jitter
(ZADD and XACK in one MULTI). A hook that fails ``max_attempts`` times, or permanently (a 4xx but 401, 408, 429), gets a
dead-letter entry; ``requeue`` sends it back. While an incident's ``firing`` notification is in backoff
for a hook, its ``resolved`` one waits for it instead of overtaking it. Delivery is at least once: a
consumer killed between a hook's success and its record repeats that delivery, which is why every
delivery carries an idempotency key.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from vectorstore import UNAVAILABLE_ERRORS, Settings, connect, get_settings

from . import _outbox_records as records
from ._outbox_records import GROUP, OutboxKeys
from .exceptions import AlertError, CorruptRecord, DeliveryError, HookDisabled, HookError
from .hooks import Hook
from .notification import Notification
from .registry import registered_hooks
from .settings import AlertSettings, get_alert_settings
from .shared import HookKeys, disable_hook, load_shared_hooks, queue_disabled, read_disabled, shared_hooks_version

__all__ = ["DeliveryStats", "Deliverer", "backoff_delay"]

log = logging.getLogger(__name__)

_UNREAD = object()  # the shared hooks' version before the first look

# Take up to ARGV[3] members due at ARGV[1] and lease them until ARGV[2], atomically.
_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"""


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped at ``cap``,
    with "equal jitter" (uniform in the upper half) so that consumers do not retry in lockstep."""
    full = min(cap, base * 2 ** max(0, attempt - 1))
    return full / 2 + (rng or random).uniform(0, full / 2)


@dataclass
class DeliveryStats:
    """Counters of one consumer since it started."""

    delivered: int = 0  # successful (notification, hook) deliveries
    failed: int = 0  # failed attempts that will be retried
    dead: int = 0  # (notification, hook) pairs dead-lettered
    reclaimed: int = 0  # outbox entries taken over from a silent consumer


class Deliverer:
    """One delivery consumer of the outbox.

    Args:
        hooks: this consumer's own hooks; by default :func:`registered_hooks` (code + ``EA_ALERT_*`` settings).
        shared: also deliver to the hooks registered in Redis (:mod:`alerts.shared`), which every
            consumer shares; they are re-read whenever they change.
        consumer: this consumer's name in the group (default: host, pid and a random suffix).
        max_attempts, backoff, backoff_max, min_idle: default to the ``EA_ALERT_*`` settings.
        batch: entries read per XREADGROUP; ``min_idle`` must exceed the time a batch can take.
        seed: seeds the backoff jitter (tests, benchmarks).

    A deliverer is used by one thread; run more of them (threads, processes, machines) to deliver faster.

    While a consumer has no hook at all (none of its own, none shared), it reads nothing: the outbox keeps
    the notifications until a hook is added.

    Raises:
        AlertError: no hook of its own and ``shared=False`` (such a consumer could never deliver).
    """

    def __init__(self, hooks: Sequence[Hook] | None = None, *, shared: bool = True, settings: Settings | None = None,
                 client: redis.Redis | None = None, consumer: str | None = None, max_attempts: int | None = None,
                 backoff: float | None = None, backoff_max: float | None = None, min_idle: float | None = None,
                 batch: int = 10, seed: int | None = None, alert_settings: AlertSettings | None = None) -> None:
        self.settings = settings or get_settings()
        config = alert_settings or get_alert_settings()
        self.client = client or connect(self.settings)
        self.own_hooks = list(registered_hooks(config) if hooks is None else hooks)
        self.shared = shared
        if not self.own_hooks and not shared:
            raise AlertError("no alert hooks configured: register() one or set EA_ALERT_WEBHOOK_URL/EA_ALERT_FILE")
        self.keys = OutboxKeys(self.settings.key_prefix)
        self.hook_keys = HookKeys(self.settings.key_prefix)
        self._shared_hooks: dict[str, Hook] = {}
        self._shared_version: object = _UNREAD
        self._refresh_hooks()
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_attempts = max_attempts or config.max_attempts
        self.backoff = config.backoff if backoff is None else backoff
        self.backoff_max = config.backoff_max if backoff_max is None else backoff_max
        self.min_idle = config.min_idle if min_idle is None else min_idle
        self.batch = batch
        self.stats = DeliveryStats()
        self._rng = random.Random(seed)
        self._lease = self.client.register_script(_LEASE_DUE)
        ensure_group(self.client, self.keys)

    @property
    def hooks(self) -> list[Hook]:
        """Where this consumer delivers now: its own hooks and the shared ones (a shared one replaces an own
        one of the same name)."""
        merged = {h.name: h for h in self.own_hooks}
        merged.update(self._shared_hooks)
        return list(merged.values())

    def _refresh_hooks(self) -> None:
        """Re-read the shared hooks if they changed since the last look (one GET)."""
        if not self.shared:
            return
        version = shared_hooks_version(self.client, self.hook_keys)
        if version == self._shared_version:
            return
        fresh = load_shared_hooks(self.client, self.hook_keys)
        for name, hook in self._shared_hooks.items():
            if name not in fresh or fresh[name] is not hook:
                _close(hook)
        if set(fresh) != set(self._shared_hooks):
            log.info("alert consumer %s: shared hooks now %s", getattr(self, "consumer", "?"), sorted(fresh))
        self._shared_hooks, self._shared_version = fresh, version

    # --- the loop -------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, *, block: float = 1.0) -> DeliveryStats:
        """Deliver until ``stop`` is set (or forever); returns the counters. Blocks up to ``block`` seconds
        per read, so ``stop`` is honoured within about that long."""
        stop = stop or threading.Event()
        log.info("alert consumer %s delivering to %s", self.consumer, [h.name for h in self.hooks])
        try:
            while not stop.is_set():
                try:
                    self.step(block=block)
                except UNAVAILABLE_ERRORS as exc:  # Redis restarting, or a cluster failing over: wait
                    log.warning("alert consumer %s: Redis unavailable (%s), retrying", self.consumer, exc)
                    stop.wait(min(5.0, max(block, 0.1)))
        finally:
            self.close()
        return self.stats

    def step(self, *, block: float = 0.0) -> int:
        """One pass: re-claim, due retries, new entries (waiting up to ``block`` s when there is nothing
        else to do). Returns the number of outbox entries handled. With no hook at all, reads nothing."""
        self._refresh_hooks()
        if not self.hooks:
            time.sleep(max(block, 0.0))
            return 0
        handled = self.reclaim() + self.retry_due()
        count = max(1, self.batch)
        block_ms = None if handled or block <= 0 else int(block * 1000)
        reply = self.client.xreadgroup(GROUP, self.consumer, {self.keys.outbox: ">"}, count=count, block=block_ms)
        if reply:
            self._refresh_hooks()  # a hook added while this consumer waited gets what it read
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self._handle_safely(entry_id, fields)
                handled += 1
        return handled

    def drain(self, timeout: float = 30.0) -> DeliveryStats:
        """Step until nothing is unread, pending or scheduled for retry in the outbox, or ``timeout``
        seconds pass. For tests, tasks and scripts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.step(block=0.05) == 0 and self._idle():
                break
        return self.stats

    def close(self) -> None:
        """Leave the group if this consumer holds no pending entry (otherwise its name stays, so the
        entries can be re-claimed), and close the hooks' connections."""
        try:
            info = self.client.xpending_range(self.keys.outbox, GROUP, "-", "+", 1, consumername=self.consumer)
            if not info:
                self.client.xgroup_delconsumer(self.keys.outbox, GROUP, self.consumer)
        except redis.RedisError:
            pass
        for hook in self.hooks:
            _close(hook)

    # --- the three sources ----------------------------------------------------------------------------

    def reclaim(self) -> int:
        """Take over entries idle for ``min_idle`` s in other consumers; returns how many were handled."""
        handled, start = 0, "0-0"
        while True:
            reply = self.client.xautoclaim(self.keys.outbox, GROUP, self.consumer, int(self.min_idle * 1000),
                                           start_id=start, count=self.batch)
            start, entries = reply[0], reply[1]
            for entry_id, fields in entries:
                if fields is None:  # deleted while pending
                    self.client.xack(self.keys.outbox, GROUP, entry_id)
                    continue
                log.warning("alert consumer %s re-claimed %s", self.consumer, _s(entry_id))
                self.stats.reclaimed += 1
                self._handle_safely(entry_id, fields)
                handled += 1
            if start in (b"0-0", "0-0") or not entries:
                return handled

    def retry_due(self) -> int:
        """Deliver the retries whose time has come; returns how many entries were handled."""
        now = time.time()
        due = self._lease(keys=[self.keys.retry], args=[now, now + self.min_idle, self.batch])
        for entry_id in due:
            found = self.client.xrange(self.keys.outbox, entry_id, entry_id)
            if not found:  # finished meanwhile (or requeued elsewhere): nothing left to do
                self.client.zrem(self.keys.retry, entry_id)
                continue
            self._handle_safely(entry_id, found[0][1])
        return len(due)

    # --- one entry ------------------------------------------------------------------------------------

    def _handle_safely(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """:meth:`_handle`, but an entry that breaks it (garbage in a record it reads) is dead-lettered with
        the reason, so that one entry never stops the consumer; Redis being away still propagates."""
        try:
            self._handle(entry_id, fields)
        except UNAVAILABLE_ERRORS:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not str(exc).startswith("WRONGTYPE"):
                raise  # Redis full, read-only or refusing: not this entry's fault
            reason = str(exc) if isinstance(exc, CorruptRecord) else f"{type(exc).__name__} while delivering"
            log.error("alert outbox entry %s could not be handled (%s): moved to dead letters", _s(entry_id), reason)
            self._finish(entry_id, dead=[("*", records.raw_notification(fields), f"malformed: {reason}", 0)])

    def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            note, only = records.read_entry(fields)
        except CorruptRecord as exc:
            log.error("alert outbox entry %s is malformed (%s): moved to dead letters", _s(entry_id), exc)
            self._finish(entry_id, dead=[("*", records.raw_notification(fields), f"malformed: {exc}", 0)])
            return
        targets = [h for h in self.hooks if only is None or h.name in only]
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.delivery(note.id))
        queue_disabled(pipe, self.hook_keys)
        pipe.hgetall(self.keys.delivery(f"{note.incident.id}:firing"))
        raw_record, raw_disabled, raw_firing = pipe.execute()
        record = records.read_record(raw_record)
        disabled = read_disabled(raw_disabled)
        # Hooks done earlier (another hook is being retried, or the entry was re-claimed) are skipped.
        todo = [h for h in targets if not records.done(record, h.name)]
        deferred = []
        if note.state == "resolved" and raw_firing:
            # Keep each incident's order per hook: while its "firing" is in backoff for a hook, the
            # "resolved" waits (without using up attempts) rather than overtaking it.
            firing = records.read_record(raw_firing)
            deferred = [h for h in todo if records.tried(firing, h.name)]
            todo = [h for h in todo if h not in deferred]
        retry_attempts: list[int] = []
        finished = False
        for i, hook in enumerate(todo):
            if hook.name in disabled:
                self._dead(entry_id, note, hook, f"hook {hook.name} is disabled", records.attempts(record, hook.name))
                continue
            try:
                hook.deliver(note)
            except HookDisabled as exc:
                log.error("alert hook %s disabled: %s", hook.name, exc)
                disable_hook(self.client, self.hook_keys, hook.name, str(exc), exc.status)
                disabled.add(hook.name)
                self._dead(entry_id, note, hook, str(exc), records.attempts(record, hook.name) + 1)
            except DeliveryError as exc:
                log.warning("alert %s to %s failed for good: %s", note.id, hook.name, exc)
                self._dead(entry_id, note, hook, str(exc), records.attempts(record, hook.name) + 1)
            except Exception as exc:  # HookError, or a hook that broke its contract: retry
                attempts = records.count_attempt(self.client, self.keys, note.id, hook.name,
                                                 records.attempts(record, hook.name))
                reason = str(exc) if isinstance(exc, HookError) else f"{type(exc).__name__}: {exc}"
                if attempts >= self.max_attempts:
                    log.warning("alert %s to %s failed %d times: dead-lettered (%s)", note.id, hook.name,
                                attempts, reason)
                    self._dead(entry_id, note, hook, reason, attempts)
                else:
                    self.stats.failed += 1
                    records.count_outcome(self.client, self.keys, "retried")
                    retry_attempts.append(attempts)
            else:
                # The common case, the last hook succeeding with nothing to retry, records the success
                # and finishes the entry in one MULTI.
                finished = i == len(todo) - 1 and not retry_attempts and not deferred
                self._ok(note, hook, finish=entry_id if finished else None)
        if deferred:
            retry_attempts.append(1)
        if retry_attempts:
            due = time.time() + backoff_delay(max(retry_attempts), self.backoff, self.backoff_max, self._rng)
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(self.keys.retry, {entry_id: due})
            pipe.xack(self.keys.outbox, GROUP, entry_id)
            pipe.execute()
        elif not finished:
            self._finish(entry_id)

    def _ok(self, note: Notification, hook: Hook, finish: bytes | None = None) -> None:
        pipe = self.client.pipeline(transaction=True)
        records.record_ok(pipe, self.keys, note, hook.name)
        records.count_outcome(pipe, self.keys, "delivered")
        if finish is not None:
            self._finish(finish, pipe=pipe)
        pipe.execute()
        self.stats.delivered += 1

    def _dead(self, entry_id: bytes, note: Notification, hook: Hook, error: str, attempts: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        records.record_dead(pipe, self.keys, entry_id, note.to_json(), hook.name, error, attempts, note.id)
        records.count_outcome(pipe, self.keys, "dead")
        pipe.execute()
        self.stats.dead += 1

    def _finish(self, entry_id: bytes, dead: list[tuple] | None = None, pipe: redis.client.Pipeline | None = None,
                ) -> None:
        """Acknowledge and delete a finished entry (queued on ``pipe`` when given, else executed now)."""
        execute = pipe is None
        pipe = pipe if pipe is not None else self.client.pipeline(transaction=True)
        for hook_name, raw, error, attempts in dead or []:
            records.record_dead(pipe, self.keys, entry_id, raw, hook_name, error, attempts)
            records.count_outcome(pipe, self.keys, "dead")
        pipe.xack(self.keys.outbox, GROUP, entry_id)
        pipe.zrem(self.keys.retry, entry_id)
        pipe.xdel(self.keys.outbox, entry_id)
        if execute:
            pipe.execute()

    def _idle(self) -> bool:
        pending = self.client.xpending(self.keys.outbox, GROUP)["pending"]
        return pending == 0 and self.client.zcard(self.keys.retry) == 0 and self._unread() == 0

    def _unread(self) -> int:
        # Entries past the group's last-delivered id ("lag" is unreliable once entries are XDELed).
        last = next((g["last-delivered-id"] for g in self.client.xinfo_groups(self.keys.outbox)
                     if _s(g["name"]) == GROUP), b"0-0")
        return len(self.client.xrange(self.keys.outbox, b"(" + _b(last), "+", count=1))


def _close(hook: Hook) -> None:
    close = getattr(hook, "close", None)
    if callable(close):
        close()


def ensure_group(client: redis.Redis, keys: OutboxKeys) -> None:
    """Create the outbox stream and its consumer group if missing (idempotent)."""
    try:
        client.xgroup_create(keys.outbox, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _s(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
