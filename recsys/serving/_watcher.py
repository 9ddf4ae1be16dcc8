"""Keeping a client's serving model current: activation notices, a periodic check, staged versions preloaded.

A :class:`VersionWatcher` holds the :class:`~recsys.serving.serving_model.ServingModel` a client answers from and
replaces it whole when another version becomes active (one reference assignment: queries never see half a
swap). Three daemon threads drive it:

* the **listener** subscribes to the model's notice channel (``activated``: switch now; ``staged``: load it
  ahead, so that its activation is instant; ``delta``: apply the serving version's new delta log entries,
  :mod:`recsys.live.follower`). A message it cannot read is logged and ignored: a stray ``PUBLISH`` must
  not end the thread;
* the **poller** checks the ``active`` pointer (and the delta log) every ``refresh_interval`` seconds,
  since pub/sub drops the notices sent while the connection was down;
* the **preloader** loads staged versions one at a time, always the newest asked for: a burst of notices
  starts no thread each.

After ``os.fork()`` the child restarts its threads (a forked process inherits none), so a client created
before a prefork server forks its workers keeps following new versions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from typing import Any

import redis

from vectorstore import UNAVAILABLE_ERRORS, ModelNotice, ModelRegistry, RedisUnavailable, VectorStoreError

from ..exceptions import ModelUnavailable
from ..live.follower import DeltaFollower
from ._lease import LeaseKeeper
from .serving_model import ServingModel

__all__ = ["VersionWatcher"]

log = logging.getLogger(__name__)

#: notices read from the channel before acting on them (a burst of deltas is caught up once)
NOTICE_BURST = 1000
#: seconds between the listener's own checks of the active pointer: pub/sub delivers at most once (a notice
#: sent while the subscription was being made, or lost in a cluster failover, is gone), so a listening client
#: with polling off still finds a version whose notice it missed
LISTENER_RECHECK_S = 5.0

_watchers: weakref.WeakSet[VersionWatcher] = weakref.WeakSet()


def _restart_after_fork() -> None:
    for watcher in list(_watchers):
        watcher._after_fork()


os.register_at_fork(after_in_child=_restart_after_fork)


class VersionWatcher:
    """The serving model of ``name``, kept current (see the module docstring).

    Args:
        registry: where versions are published.
        name: the model.
        listen: subscribe to notices (instant swaps); the listener also checks the active pointer every
            ``LISTENER_RECHECK_S`` seconds, for a notice it missed.
        refresh_interval: seconds between checks of the active pointer (0: none).

    Raises:
        ModelUnavailable: no active version could be loaded (the message says why).
    """

    def __init__(self, registry: ModelRegistry, name: str, *, listen: bool = True,
                 refresh_interval: float = 2.0) -> None:
        self.registry = registry
        self.name = name
        self.listen = listen
        self.refresh_interval = refresh_interval
        # Leases on the versions held: cleanup never deletes one while this client serves it (recsys.serving._lease).
        self._leases = LeaseKeeper(registry, name, registry.settings.lease_ttl)
        try:
            self.model: ServingModel = self._load(None)
        except VectorStoreError as exc:
            raise ModelUnavailable(f"cannot serve model {name!r}: {exc}") from exc
        self._init_runtime()
        self.check_precomputed()
        self._start_threads()
        _watchers.add(self)

    def _init_runtime(self) -> None:
        """Locks, events and threads: what a fork must make anew."""
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Loading a version can take seconds (a million-item index): it has its own lock, so queries never
        # wait for it.
        self._load_lock = threading.Lock()
        self._staged: dict[int, ServingModel] = getattr(self, "_staged", {})
        self._wanted = 0  # the newest staged version asked for
        self._topn_ready: set[int] = getattr(self, "_topn_ready", set())
        self._threads: list[threading.Thread] = []
        self._refused: set[int] = getattr(self, "_refused", set())
        self._last_problem = ""

    def _start_threads(self) -> None:
        if self.listen:
            self._start(self._listen, "ea-client-listen")
        if self.refresh_interval > 0:
            self._start(self._poll, "ea-client-poll")
        self._start(self._preloader, "ea-client-preload")

    def _start(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _after_fork(self) -> None:
        if self._stop.is_set():
            return
        self._leases.after_fork()
        self._init_runtime()
        self._start_threads()

    def close(self) -> None:
        """Stop the background threads."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._leases.release()

    # -- versions ------------------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Switch to the active version if it differs from the one serving; ``True`` if it switched.

        A version preloaded when it was staged switches at once; otherwise it is loaded now, beside the
        serving one. A version that fails to load (corrupt, unsigned) is refused and the current one keeps
        serving (logged once per version, not at every check).
        """
        active = self.registry.active_version(self.name)
        if active is None or active == self.model.version:
            return False
        with self._load_lock:
            if active == self.model.version:
                return False
            new = self._staged.pop(active, None)
            if new is None:
                try:
                    new = self._load(active)
                except (VectorStoreError, ModelUnavailable) as exc:
                    level = logging.DEBUG if active in self._refused else logging.ERROR
                    self._refused.add(active)
                    log.log(level, "refusing %s v%s, still serving v%s: %s", self.name, active, self.model.version,
                            exc)
                    self._leases.hold(self.held_versions())  # the lease taken to load it is given up
                    return False
            self.model = new  # the swap: one reference assignment
            self._staged = {v: m for v, m in self._staged.items() if v > new.version}
            self._leases.hold(self.held_versions())  # the previous version's lease is given up
        log.info("%s: now serving v%s", self.name, new.version)
        self.check_precomputed()
        return True

    def preload(self, version: int) -> bool:
        """Load a staged (published, not yet active) version now, so that its activation is instant.

        Returns:
            Whether the version is now held ready.
        """
        if version <= self.model.version:
            return False
        with self._load_lock:
            if version in self._staged:
                return True
            try:
                self._staged[version] = self._load(version)
            except (VectorStoreError, ModelUnavailable) as exc:
                log.warning("cannot preload %s v%s: %s", self.name, version, exc)
                self._leases.hold(self.held_versions())
                return False
        log.info("%s: v%s preloaded, ready to switch", self.name, version)
        return True

    def held_versions(self) -> set[int]:
        """The versions this client holds: the one serving and those loaded ahead."""
        model = getattr(self, "model", None)
        return ({model.version} if model is not None else set()) | set(getattr(self, "_staged", {}))

    def _load(self, version: int | None) -> ServingModel:
        """Lease a version (default: the active one), then load it with its delta log replayed (a log Redis
        cannot give now is caught up later)."""
        if version is None:
            version = self.registry.active_version(self.name)
        if version is not None:
            self._leases.hold(self.held_versions() | {version})
        model = ServingModel.load(self.registry, self.name, version)
        follower = DeltaFollower(self.registry, model)
        try:
            follower.catch_up()
        except (RedisUnavailable, redis.RedisError) as exc:
            log.warning("%s v%s: delta log not replayed yet (%s)", self.name, model.version, type(exc).__name__)
        return model

    def catch_up(self) -> int:
        """Apply the serving version's delta log entries not applied yet; returns how many."""
        live = self.model.live
        return live.catch_up() if live is not None else 0

    @property
    def staged(self) -> set[int]:
        """Versions loaded ahead of their activation."""
        return set(self._staged)

    def check_precomputed(self) -> None:
        """Note whether a precompute job has written top-N lists for the serving version."""
        version = self.model.version
        if version not in self._topn_ready and self.registry.client.exists(self.model.topn_key):
            self._topn_ready.add(version)

    def topn_ready(self, version: int) -> bool:
        """Whether precomputed top-N lists exist for ``version``."""
        return version in self._topn_ready

    # -- threads -------------------------------------------------------------------------------------------
    def _safe_refresh(self) -> None:
        try:
            self.refresh()
            self.catch_up()
            self.check_precomputed()
            self._leases.renew_if_due(self.held_versions())
        except (RedisUnavailable, redis.RedisError) as exc:
            log.debug("refresh skipped: %s", type(exc).__name__)
        except VectorStoreError as exc:  # refused (credentials, memory) or a corrupt pointer: said once, kept on
            level = logging.DEBUG if str(exc) == self._last_problem else logging.WARNING
            self._last_problem = str(exc)
            log.log(level, "%s: cannot check for new versions (%s: %s); still serving v%s", self.name,
                    type(exc).__name__, exc, self.model.version)

    def on_notices(self, burst: list[Any]) -> None:
        """Act on notices read together: the serving version's delta log is caught up once for all of them."""
        deltas = []
        for data in burst:
            notice = ModelNotice.decode(data)
            if notice is not None and notice.event == ModelNotice.DELTA:
                deltas.append(data)
            else:
                self.on_notice(data)
        if deltas:
            self.on_notice(deltas[-1])  # the newest: catching up with it applies every earlier one

    def on_notice(self, data: Any) -> None:
        """Act on one message of the notice channel; never raises (a bad message means "look again")."""
        notice = ModelNotice.decode(data)
        if notice is not None and notice.event == ModelNotice.DELTA and notice.version == self.model.version:
            live = self.model.live
            if live is None or live.seen_id(notice.entry):
                return
            try:
                live.catch_up()
            except (RedisUnavailable, redis.RedisError) as exc:
                log.debug("delta catch-up skipped: %s", type(exc).__name__)
        elif notice is not None and notice.event == ModelNotice.DELTA:
            return  # a delta of a version not served here (old, or staged: replayed when it loads)
        elif notice is not None and notice.event == ModelNotice.STAGED and notice.version > self.model.version:
            self._wanted = max(self._wanted, notice.version)
            self._wake.set()
        else:
            self._safe_refresh()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.registry.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.registry.channel(self.name))
                self._safe_refresh()  # notices sent while we were not subscribed are lost: look now
                checked = time.monotonic()
                backoff = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if time.monotonic() - checked >= LISTENER_RECHECK_S:
                        self._safe_refresh()
                        checked = time.monotonic()
                    if message:
                        # A burst (a stream of deltas): read what is buffered, then act once per kind.
                        burst = [message.get("data")]
                        while len(burst) < NOTICE_BURST and (more := pubsub.get_message(timeout=0)):
                            burst.append(more.get("data"))
                        self.on_notices(burst)
                    self._leases.renew_if_due(self.held_versions())
            except (redis.RedisError, OSError, *UNAVAILABLE_ERRORS) as exc:  # a cluster may be failing over
                log.debug("listener lost Redis (%s); retrying in %.1fs", type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a bug must not end the thread: swaps would stop for good
                log.exception("%s: notice listener failed; listening again", self.name)
                self._stop.wait(backoff)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()

    def _poll(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                self._safe_refresh()
            except Exception:  # a bug must not end the thread: new versions would never be seen
                log.exception("%s: version check failed; checking again", self.name)

    def _preloader(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            wanted = self._wanted
            if wanted > self.model.version and not self._stop.is_set():
                try:
                    self.preload(wanted)
                except Exception:  # keep the thread for the next staged version
                    log.exception("%s: preloading v%s failed", self.name, wanted)

