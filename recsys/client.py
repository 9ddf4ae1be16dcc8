"""``RecommendationClient``: recommendations from the active model version, without torch.

Per request: one pipelined Redis round trip fetches the user's vector, seen items and (when a job has
precomputed them for this version) the user's top-N; the in-memory hnswlib item index does the rest.
A new version is picked up without a restart (:mod:`recsys._watcher`: a pub/sub listener hears the
registry's notice and a periodic check of the ``active`` pointer covers notices lost while disconnected);
the new index is loaded beside the old one and swapped in one reference assignment, so queries never fail
mid-swap.
When Redis is down the client still answers what memory allows (similar items, history fold-in,
popularity, users it has cached) and raises :class:`~vectorstore.RedisUnavailable` for the rest; a Redis
that hangs costs one ``EA_REQUEST_TIMEOUT``, then a circuit breaker (:mod:`recsys._breaker`) answers
from memory at once until Redis answers again. Rows are opened through the version's row seals (signatures
checked with ``EA_SIGNING_KEY``) and their sizes checked: a bad row is logged and not served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import redis

from vectorstore import (
    UNAVAILABLE_ERRORS,
    AllowedIds,
    IntegrityError,
    ModelRegistry,
    RedisUnavailable,
    Settings,
    connect,
    get_settings,
    search_allowed,
)

from ._breaker import CircuitBreaker
from ._filtering import FilterCache
from ._milvus_serving import milvus_recommendations
from ._serving import ServingModel
from ._watcher import VersionWatcher
from .data.ids import check_id, check_ids
from .exceptions import UnknownItem, UnknownUser, VersionGone
from .publish.wire import decode_ids, decode_top, decode_vector, encode_top
from .recommendations import MAX_K, Recommendations, check_fields, check_k
from .similarity import Similarity, SimilarUsers, check_metric

__all__ = ["MAX_K", "RecommendationClient", "Recommendations", "encode_top"]

log = logging.getLogger(__name__)


class RecommendationClient:
    """Recommendations for users and items from a published graph model.

    Args:
        redis_url: the service's Redis (default: ``EA_REDIS_URL``, else the embedded server).
        model: model name.
        strict: unknown users raise :class:`UnknownUser` instead of getting popular items.
        refresh_interval: seconds between checks of the active pointer (0 disables the check thread).
        listen: subscribe to activation notices for immediate swaps.
        user_cache: users whose vector and seen items are kept in memory (answers during Redis outages).
        settings: full settings (overrides ``redis_url``).

    Raises:
        ModelUnavailable: no active version of ``model`` could be loaded (the message says why).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        model: str = "default",
        *,
        strict: bool = False,
        refresh_interval: float = 2.0,
        listen: bool = True,
        user_cache: int = 10_000,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or get_settings()
        if redis_url:
            settings = settings.with_(redis_url=redis_url)
        self.settings = settings
        self.name = model
        self.strict = strict
        self.registry = ModelRegistry(settings)
        self._redis = self.registry.client
        # Per-request reads wait EA_REQUEST_TIMEOUT, not the socket timeout loads need; a Redis that stops
        # answering opens the breaker, so cached users are answered at once (recsys._breaker).
        self._requests = connect(settings.with_(socket_timeout=settings.request_timeout))
        self._breaker = CircuitBreaker()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], tuple[np.ndarray | None, np.ndarray]] = OrderedDict()
        self._cache_size = user_cache
        self._watcher = VersionWatcher(self.registry, model, listen=listen, refresh_interval=refresh_interval)
        self._filters = FilterCache()  # filter expression -> allowed items, per metadata state
        self._similarity = Similarity()  # similar_users' and cosine similar_items' vectors, per version

    # -- lifecycle --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background threads (and give up this client's leases)."""
        self._watcher.close()
        self._requests.close()

    def __enter__(self) -> RecommendationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _model(self) -> ServingModel:
        return self._watcher.model

    @property
    def model_version(self) -> int:
        """The version answering queries now."""
        return self._model.version

    @property
    def model_meta(self) -> dict[str, Any]:
        """The serving version's metadata (algorithm, parameters, metrics, index parameters)."""
        return self._model.meta

    @property
    def staged_versions(self) -> set[int]:
        """Versions published but not yet active that this client has loaded ahead (instant activation)."""
        return self._watcher.staged

    def refresh(self) -> bool:
        """Switch to the active version if it differs from the one serving; ``True`` if it switched.

        A version preloaded when it was staged switches at once; otherwise it is loaded now, beside the
        serving one. A version that fails to load (corrupt, unsigned) is refused and the current one keeps
        serving.
        """
        return self._watcher.refresh()

    def preload(self, version: int) -> bool:
        """Load a staged (published, not yet active) version now, so that its activation is instant.

        Returns:
            Whether the version is now held ready.
        """
        return self._watcher.preload(version)

    # -- per-user data ----------------------------------------------------------------------------------
    def _fetch_users(self, model: ServingModel, users: Sequence[str], topn: bool, strict: bool = False) -> list[tuple]:
        """``(vector or None, seen, precomputed or None)`` per user: one pipelined round trip.

        A row that fails its signature or is malformed is logged and not served (the user is answered as
        unknown; ``strict``: the typed error is raised). Raises :class:`VersionGone` when the version's rows
        are gone from Redis (a user it lacks may be one it knew).
        """
        if not self._breaker.allow():
            return self._cached(model, users, "Redis did not answer lately (circuit open)")
        pipe = self._requests.pipeline(transaction=False)
        pipe.hmget(model.vectors_key, users)
        pipe.hmget(model.seen_key, users)
        if topn:
            pipe.hmget(model.topn_key, users)
        live = model.live if model.live is not None and model.live.users_updated else None
        if live is not None:  # rows rewritten by user-update deltas (recsys.live.delta_log) win over the published ones
            pipe.hmget(live.users_key, users)
        started = time.monotonic()
        try:
            replies = pipe.execute()
        except (redis.RedisError, *UNAVAILABLE_ERRORS) as exc:  # on a cluster also a failover under way
            error = self.registry.typed_error(exc, "cannot fetch user rows")
            if not isinstance(error, RedisUnavailable):  # refused (credentials, memory): not an outage
                raise error from None
            # Only a slow failure (a hung server, a lost network) opens the breaker: a refused connection
            # costs nothing, and the next request may already reach a promoted replica.
            if time.monotonic() - started >= self.settings.request_timeout / 2:
                self._breaker.failure()
            return self._cached(model, users, f"Redis did not answer ({type(exc).__name__})")
        self._breaker.success()
        vectors, seens = replies[0], replies[1]
        tops = replies[2] if topn else [None] * len(users)
        updated = replies[-1] if live is not None else [None] * len(users)
        out = []
        for user, vec, seen, top, row in zip(users, vectors, seens, tops, updated):
            try:
                v, s, top = self._open_rows(model, user, vec, seen, top)
            except IntegrityError as exc:
                if strict:
                    raise
                log.error("%s v%s: user %r not served from their rows: %s", model.name, model.version, user[:64], exc)
                v, s, top = None, np.empty(0, np.int32), None
            if live is not None and row is not None and (fresh := live.user_row(user, row)) is not None:
                v, s, top = fresh[0], fresh[1], None  # a precomputed list predates the update
            if v is not None and self._cache_size:
                self._remember(model.version, user, v, s)
            out.append((v, s, top))
        if any(row[0] is None for row in out) and not self._rows_exist(model):
            switched = self._watcher.refresh()
            now = f"now serving v{self._model.version}: ask again" if switched else "no other version could be loaded"
            raise VersionGone(f"{model.name!r} v{model.version}: its per-user rows are gone from Redis; {now}")
        return out

    @staticmethod
    def _open_rows(model: ServingModel, user: str, vec: bytes | None, seen: bytes | None,
                   top: bytes | None) -> tuple[np.ndarray | None, np.ndarray, bytes | None]:
        """A user's stored rows opened (signatures checked with a signing key) and decoded (sizes checked)."""
        if vec is None:
            return None, np.empty(0, np.int32), None
        opened = model.vector_seal.open(user, vec) if model.vector_seal is not None else vec
        vector = decode_vector(opened, model.dim)
        if seen is None and model.seen_seal is not None and model.seen_seal.tagged:
            raise IntegrityError(f"{model.name!r} v{model.version}: user {user[:64]!r} has a vector but no seen row")
        if seen is not None and model.seen_seal is not None:
            seen = model.seen_seal.open(user, seen)
        ids = decode_ids(seen, model.n_items)
        if top is not None and model.topn_seal is not None:
            try:  # a bad precomputed list is not served: the index answers instead
                top = model.topn_seal.open(user, top)
                decode_top(top, model.n_items)
            except IntegrityError as exc:
                log.error("%s v%s: precomputed list of %r not served: %s", model.name, model.version, user[:64], exc)
                top = None
        return vector, ids, top

    def _rows_exist(self, model: ServingModel) -> bool:
        """Whether the version's per-user rows are still in Redis (``True`` when Redis cannot say)."""
        try:
            return bool(self._requests.exists(model.vectors_key))
        except (redis.RedisError, *UNAVAILABLE_ERRORS):
            return True

    def _cached(self, model: ServingModel, users: Sequence[str], why: str) -> list[tuple]:
        """Rows of cached users when Redis cannot be asked; :class:`RedisUnavailable` if one is not cached."""
        cached = [self._cache.get((model.version, u)) for u in users]
        if all(c is not None for c in cached):
            return [(c[0], c[1], None) for c in cached if c is not None]
        raise RedisUnavailable(f"cannot fetch user vectors: {why}")

    def _remember(self, version: int, user: str, vector: np.ndarray, seen: np.ndarray) -> None:
        with self._lock:
            self._cache[(version, user)] = (vector, seen)
            self._cache.move_to_end((version, user))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # -- queries ------------------------------------------------------------------------------------
    def recommend(
        self,
        user: str | int,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
        fields: list[str] | None = None,
        strict: bool | None = None,
        filter: str | None = None,
    ) -> Recommendations:
        """Top-``k`` items for ``user``.

        Args:
            exclude_seen: leave out the user's training items.
            exclude: item ids never to return. include: if given, only these items may be returned.
            fields: item metadata columns to return with the items (e.g. ``["title"]``).
            strict: unknown user -> :class:`UnknownUser` (default: the client's ``strict``); otherwise
                the most popular items, marked ``source="popularity"``.
            filter: a boolean expression over item metadata (a subset of Milvus' syntax); on a version
                published with ``index_backend="milvus"`` it is Milvus' own ``filter``.

        Raises:
            InvalidRequest: bad ``k``, user id type or field name.
            UnknownUser: strict mode and the model does not know ``user``.
            RedisUnavailable: Redis is down and the user is not cached.
        """
        k = check_k(k)
        user = check_id(user, "user")
        model = self._model
        passing = self._allowed(model, filter)  # a bad expression fails before any lookup
        use_top = exclude is None and include is None and exclude_seen and self._watcher.topn_ready(model.version)
        use_top = use_top and not (filter is not None and model.milvus is not None)  # Milvus filters, not the list
        ((vector, seen, top),) = self._fetch_users(model, [user], topn=use_top,
                                                   strict=self.strict if strict is None else strict)
        if vector is None:
            return self._popular(model, user, k, exclude, include, fields, strict, passing=passing, expression=filter)
        if top is not None:
            ids, scores = decode_top(top, model.n_items)
            if model.live is not None:  # deleted items out, items upserted since the precompute scored in
                ids, scores = model.live.adjust_top(ids, scores, vector, seen) or (ids[:0], scores[:0])
            if passing is not None:  # the list serves a filter when k of its items pass it; else the index does
                keep = np.isin(ids, passing.ids)
                ids, scores = ids[keep], scores[keep]
            if len(ids) >= k:
                return self._result(model, ids[:k], scores[:k], "precomputed", user, fields)
        banned = seen.astype(np.int64) if exclude_seen else np.empty(0, np.int64)
        extra = self._dense(model, exclude, missing_ok=True)
        if extra:
            banned = np.concatenate([banned, np.fromiter(extra, np.int64, len(extra))])
        if model.milvus is not None:  # one Milvus search filters and returns the fields (output_fields)
            listed = self._dense(model, include, missing_ok=True) if include is not None else None
            return milvus_recommendations(model, model.milvus, vector, k, exclude=banned, allowed=listed,
                                          filter=filter, fields=fields, user=user)
        if include is not None:
            listed = self._dense(model, include, missing_ok=True) - set(banned.tolist())
            ids, scores = self._rank_subset(model, vector, {i for i in listed if passing is None or i in passing}, k)
        else:
            ids, scores = self._search(model, "recommend", vector, k, banned if banned.size else None, passing)
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
        return self._result(model, ids, scores, "index", user, fields)

    def recommend_many(self, users: Sequence[str | int], k: int = 10, *, exclude_seen: bool = True,
                       fields: list[str] | None = None, filter: str | None = None) -> list[Recommendations]:
        """Top-``k`` for many users: one round trip and one batched index query.

        Unknown users get popular items (or raise in strict mode), as in :meth:`recommend`; ``filter`` is
        :meth:`recommend`'s.
        """
        k = check_k(k)
        names = check_ids(users, "user")
        model = self._model
        allowed = self._allowed(model, filter)
        if not names:
            return []
        rows = self._fetch_users(model, names, topn=False, strict=self.strict)
        known = [i for i, (v, _, _) in enumerate(rows) if v is not None]
        out: list[Recommendations | None] = [None] * len(names)
        if known:
            vectors = np.stack([rows[i][0] for i in known])
            excl = [rows[i][1] if exclude_seen else () for i in known]
            ids, scores = self._search(model, "recommend", vectors, k, excl if exclude_seen else None, allowed,
                                       num_threads=1, expression=filter)
            for row, i in enumerate(known):
                keep = ids[row] >= 0
                out[i] = self._result(model, ids[row][keep], scores[row][keep], "index", names[i], fields)
        for i, rec in enumerate(out):
            if rec is None:
                out[i] = self._popular(model, names[i], k, None, None, fields, None, passing=allowed,
                                       expression=filter)
        return out  # type: ignore[return-value]

    def similar_items(self, item: str | int, k: int = 10, *, fields: list[str] | None = None,
                      metric: str = "ip", filter: str | None = None) -> Recommendations:
        """The ``k`` items most similar to ``item`` by the model's own similarity vectors (from memory; works
        without Redis).

        Args:
            metric: ``"ip"`` (default): the model's similarity, its raw inner product (e.g. Node2Vec:
                skip-gram's log-odds that an item occurs near ``item``, plus its prior), not comparable
                across models, and led by popular items, whose vectors are long; ``"cosine"``: the same
                vectors compared by direction only (exact search), scores in [-1, 1].
            filter: only items passing this expression on item metadata (see :meth:`recommend`).

        Raises:
            UnknownItem: the model does not know ``item``.
            InvalidRequest: another ``metric``; InvalidFilter: a bad ``filter``.
        """
        k = check_k(k)
        metric = check_metric(metric)
        model = self._model
        allowed = self._allowed(model, filter)
        pos = self._dense_one(model, check_id(item, "item"))
        if metric == "cosine":
            ids, scores = self._similarity.items_cosine(model, pos, k, allowed)
            return self._result(model, ids, scores, "similar", None, fields)
        ids, scores = self._search(model, "similar", model.similar_vectors[pos], min(k, model.n_items - 1) or 1,
                                   [pos], allowed, index=model.similar_index, expression=filter)
        keep = ids >= 0
        return self._result(model, ids[keep], scores[keep], "similar", None, fields)

    def recommend_for_history(self, items: Iterable[str | int], k: int = 10, *,
                              fields: list[str] | None = None, filter: str | None = None) -> Recommendations:
        """Recommendations for a user the model has never seen, folded in from the items they used.

        The user's vector is the mean of the known items' fold-in vectors (the model's own, e.g. Node2Vec's
        item input vectors; else its item vectors); the history is excluded. Unknown item ids are ignored;
        with none known, popular items are returned (``source="popularity"``). Needs no Redis. ``filter``
        is :meth:`recommend`'s.
        """
        k = check_k(k)
        model = self._model
        allowed = self._allowed(model, filter)
        known = self._dense(model, check_ids(items, "item"), missing_ok=True)
        if not known:
            return self._popular(model, None, k, None, None, fields, strict=False, passing=allowed,
                                 expression=filter)
        vector = model.fold_in_vectors[sorted(known)].mean(axis=0)
        ids, scores = self._search(model, "history", vector, k, known, allowed, expression=filter)
        keep = ids >= 0
        return self._result(model, ids[keep], scores[keep], "history", None, fields)

    def similar_users(self, user: str | int, k: int = 10, *, metric: str = "cosine") -> SimilarUsers:
        """The ``k`` users most similar to ``user``, by the vectors the model compares users by
        (:func:`recsys.publish.entities.entity_vectors`), by cosine (default) or raw inner product (``"ip"``, led by
        users with long vectors). Exact search over every user of the version, whose vectors are read from
        Redis on the first call per version.

        Raises:
            UnknownUser: the version does not know ``user``.
            InvalidRequest: bad ``k``, user id or ``metric``.
            RedisUnavailable: Redis is down on the first call for this version.
        """
        k = check_k(k)
        user = check_id(user, "user")
        metric = check_metric(metric)
        model = self._model
        users, scores = self._similarity.users(self.registry, model, user, k, metric)
        return SimilarUsers(users=users, scores=scores, model=model.name, model_version=model.version, user=user,
                            metric=metric)

    # -- helpers ----------------------------------------------------------------------------------------
    def _allowed(self, model: ServingModel, expression: str | None) -> AllowedIds | None:
        """The items ``expression`` allows (``None``: no filter, or a backend that evaluates it itself).

        Raises:
            InvalidFilter: a bad expression.
        """
        if expression is None or getattr(model, "milvus", None) is not None:
            return None
        return self._filters.allowed(model, expression)

    @staticmethod
    def _search(model: ServingModel, path: str, vectors: Any, k: int, exclude: Any, allowed: AllowedIds | None, *,
                index: Any = None, expression: str | None = None, **extra: Any) -> tuple[np.ndarray, np.ndarray]:
        """A path's index query with its search arguments; with ``allowed``, filtered inside the search."""
        index = model.index if index is None else index
        args = {**model.search.get(path, {}), **extra}
        if allowed is not None:
            return search_allowed(index, vectors, k, allowed, exclude=exclude, ef=args.get("ef"),
                                  exact=args.get("exact"))
        if expression is not None and getattr(model, "milvus", None) is not None:
            args["filter"] = expression  # Milvus evaluates the same expression itself
        return index.query(vectors, k=min(k, model.n_items), exclude=exclude, **args)

    def _dense_one(self, model: ServingModel, item: str) -> int:
        try:
            return model.item_pos[item]
        except KeyError:
            raise UnknownItem(f"item {item!r} is not in model {model.name!r} v{model.version}") from None

    def _dense(self, model: ServingModel, items: Iterable[Any] | None, missing_ok: bool) -> set[int]:
        if items is None:
            return set()
        out = set()
        for item in check_ids(items, "item"):
            pos = model.item_pos.get(item)
            if pos is None and not missing_ok:
                raise UnknownItem(f"item {item!r} is not in model {model.name!r} v{model.version}")
            if pos is not None:
                out.add(pos)
        return out

    @staticmethod
    def _rank_subset(model: ServingModel, vector: np.ndarray, allowed: set[int], k: int):
        # A whitelist is usually small: exact scores over it beat filtering the ANN results.
        if not allowed:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        cand = np.fromiter(allowed, np.int64, len(allowed))
        scores = model.item_vectors[cand] @ vector
        order = np.argsort(-scores, kind="stable")[:k]
        return cand[order], scores[order]

    def _popular(self, model, user, k, exclude, include, fields, strict, *, passing: AllowedIds | None = None,
                 expression: str | None = None) -> Recommendations:
        if (self.strict if strict is None else strict) and user is not None:
            raise UnknownUser(f"user {user!r} is not in model {model.name!r} v{model.version}")
        order = model.popular
        banned = self._dense(model, exclude, missing_ok=True)
        allowed = self._dense(model, include, missing_ok=True) if include is not None else None
        if banned or allowed is not None:
            order = np.array([i for i in order if i not in banned and (allowed is None or i in allowed)], np.int64)
        if passing is not None:
            order = order[np.isin(order, passing.ids)]
        if expression is not None and model.milvus is not None:  # Milvus evaluates the filter on the most popular
            order = model.milvus.passing(expression, order[: max(100 * k, 10_000)])
        ids = order[:k]
        return self._result(model, ids, model.popularity[ids], "popularity", user, fields)

    @staticmethod
    def _result(model: ServingModel, ids: np.ndarray, scores: np.ndarray, source: str, user: str | None,
                fields: list[str] | None) -> Recommendations:
        ids = np.asarray(ids, dtype=np.int64)
        return Recommendations(items=model.item_ids[ids].tolist(), scores=np.asarray(scores, dtype=np.float32),
                               model=model.name, model_version=model.version, source=source, user=user,
                               fields=model.fields(ids, check_fields(fields)))
