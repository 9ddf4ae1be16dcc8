"""``RecommendationClient``: recommendations from the active model version, without torch.

Each query composes a few steps, each in a module of its own:

1. its arguments are checked (:mod:`recsys.serving.recommendations`, :mod:`recsys.data.ids`) and a filter
   expression becomes the items it allows (:mod:`recsys.serving._filter_cache`), before any lookup;
2. the user's rows come from Redis in one pipelined round trip (:mod:`recsys.serving._user_rows`: vector,
   seen items, the precomputed top-N list of this version when a job wrote one, rows deltas rewrote);
3. the items are ranked on the served version (:mod:`recsys.serving._ranking`: its precomputed list, its
   index backend's search (:mod:`recsys.serving.version_index`: the in-memory hnswlib index, exact scores
   over an ``include`` list, or one search of a backend that filters and returns fields itself), or
   popularity for an unknown user) and returned as :class:`~recsys.serving.recommendations.Recommendations`.

The served version is a :class:`~recsys.serving.serving_model.ServingModel` kept current by a
:class:`~recsys.serving._watcher.VersionWatcher`: a new version is loaded beside the old one and swapped in
one reference assignment, so queries never fail mid-swap; deltas are applied to it in place
(:mod:`recsys.live.follower`). When Redis is down the client still answers what memory allows (similar items,
history fold-in, popularity, users it has cached) and raises :class:`~vectorstore.RedisUnavailable` for the
rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vectorstore import AllowedIds, ModelRegistry, Settings, get_settings

from ..data.ids import check_id, check_ids
from ._filter_cache import FilterCache
from ._items import get_items, query_items
from ._metrics import timed
from ._ranking import answer, excluded, popular, position, positions, precomputed, search
from ._rerank import ranked_rank, ranked_search
from ._user_rows import UserRows
from ._watcher import VersionWatcher
from .recommendations import Recommendations, check_k
from .serving_model import ServingModel
from .similarity import Similarity, SimilarUsers, check_metric

__all__ = ["RecommendationClient"]


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
        self._watcher = VersionWatcher(self.registry, model, listen=listen, refresh_interval=refresh_interval)
        self._rows = UserRows(self.registry, settings, self._watcher, user_cache)  # per-request reads, breaker, cache
        self._filters = FilterCache()  # filter expression -> allowed items, per metadata state
        self._similarity = Similarity()  # similar_users' and cosine similar_items' vectors, per version

    # -- lifecycle --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background threads (and give up this client's leases)."""
        self._watcher.close()
        self._rows.close()

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

    # -- queries ------------------------------------------------------------------------------------------
    @timed("recommend")
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
            filter: a boolean expression over item metadata (:mod:`recsys.serving._filter_grammar`); a
                version whose index backend evaluates filters itself is given it as is.

        Raises:
            InvalidRequest: bad ``k``, user id type or field name.
            UnknownUser: strict mode and the model does not know ``user``.
            RedisUnavailable: Redis is down and the user is not cached.
        """
        k, user = check_k(k), check_id(user, "user")
        strict = self.strict if strict is None else strict
        model = self._model
        passing = self._allowed(model, filter)  # a bad expression fails before any lookup
        # A precomputed list answers the plain request it was computed for, and a filter whose allowed items are
        # known here (one the backend evaluates in its searches: the backend answers).
        use_top = (exclude is None and include is None and exclude_seen and self._watcher.topn_ready(model.version)
                   and (filter is None or passing is not None))
        row = self._rows.fetch(model, [user], topn=use_top, strict=strict)[0]
        if row.vector is None:
            return popular(model, user, k, strict=strict, fields=fields, exclude=exclude, include=include,
                           passing=passing, expression=filter)
        if row.top is not None and (top := precomputed(model, row.top, row.vector, row.seen, k, passing)):
            return answer(model, *top, "precomputed", user, fields)
        banned = excluded(model, row.seen if exclude_seen else None, exclude)
        listed = positions(model, include) if include is not None else None
        ids, scores, found = ranked_rank(model, row.vector, k, row.seen, exclude=banned, include=listed,
                                         passing=passing, expression=filter, fields=fields)
        return answer(model, ids, scores, "index", user, fields, found)

    @timed("recommend_many")
    def recommend_many(self, users: Sequence[str | int], k: int = 10, *, exclude_seen: bool = True,
                       exclude: Iterable[str] | None = None, include: Iterable[str] | None = None,
                       fields: list[str] | None = None, filter: str | None = None) -> list[Recommendations]:
        """Top-``k`` for many users: one round trip and one batched index query.

        Unknown users get popular items (or raise in strict mode), as in :meth:`recommend`; ``exclude``,
        ``include`` and ``filter`` are :meth:`recommend`'s, for every user (with ``include``: each user's
        request is :meth:`recommend`'s, one after the other).
        """
        k = check_k(k)
        names = check_ids(users, "user")
        model = self._model
        passing = self._allowed(model, filter)
        if not names:
            return []
        exclude = None if exclude is None else check_ids(exclude, "item")  # read once, used for every user
        if include is not None:
            include = check_ids(include, "item")
            return [self.recommend(u, k, exclude_seen=exclude_seen, exclude=exclude, include=include, fields=fields,
                                   strict=self.strict, filter=filter) for u in names]
        rows = self._rows.fetch(model, names, topn=False, strict=self.strict)
        known = [i for i, row in enumerate(rows) if row.vector is not None]
        out: list[Recommendations | None] = [None] * len(names)
        if known:
            vectors = np.stack([row.vector for row in rows if row.vector is not None])  # known's, in order
            seen = [rows[i].seen for i in known] if exclude_seen else None
            if exclude is not None:  # the same items out for every user, beside each one's seen items
                seen = [excluded(model, rows[i].seen if exclude_seen else None, exclude) for i in known]
            ids, scores = ranked_search(model, "recommend", vectors, k, seen, passing, [rows[i].seen for i in known],
                                        num_threads=1, expression=filter)
            for row, i in enumerate(known):
                out[i] = answer(model, ids[row], scores[row], "index", names[i], fields)
        return [rec if rec is not None else popular(model, names[i], k, strict=self.strict, fields=fields,
                                                     exclude=exclude, passing=passing, expression=filter)
                for i, rec in enumerate(out)]

    def get(self, ids: Iterable[str | int], *, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """The items of ``ids`` the served version holds (unknown and deleted ones left out, as pymilvus'
        ``get``), each ``{"id", field: value, ...}`` with metadata ``fields`` (default: every field).

        Raises:
            InvalidRequest: a bad id or an unknown field.
        """
        return get_items(self._model, check_ids(ids, "item"), fields)

    def query(self, filter: str | None = None, *, fields: list[str] | None = None, limit: int = 100,
              offset: int = 0) -> list[dict[str, Any]]:
        """The served version's items passing ``filter`` (:meth:`recommend`'s expressions; ``None``: all), in
        the catalogue's order, from ``offset``, at most ``limit`` (as pymilvus' ``query``), each
        ``{"id", field: value, ...}`` with metadata ``fields`` (default: every field).

        Raises:
            InvalidFilter: a bad expression. InvalidRequest: a bad ``limit``/``offset`` or an unknown field.
        """
        model = self._model
        return query_items(model, self._filters.allowed(model, filter) if filter is not None else None, fields,
                           limit, offset)

    @timed("similar_items")
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
        passing = self._allowed(model, filter)
        pos = position(model, check_id(item, "item"))
        if metric == "cosine":
            ids, scores = self._similarity.items_cosine(model, pos, k, passing)
        elif model.similar_index is model.index:  # an item's fold-in: a history of one item (re-ranked if so)
            ids, scores = ranked_search(model, "similar", model.similar_vectors[pos], min(k, model.n_items - 1) or 1,
                                        [pos], passing, np.array([pos]), expression=filter)
        else:
            ids, scores = search(model, "similar", model.similar_vectors[pos], min(k, model.n_items - 1) or 1, [pos],
                                 passing, index=model.similar_index, expression=filter)
        return answer(model, ids, scores, "similar", None, fields)

    @timed("recommend_for_history")
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
        passing = self._allowed(model, filter)
        known = positions(model, check_ids(items, "item"))  # None or a str is refused, not read as none
        if not known:
            return popular(model, None, k, strict=False, fields=fields, passing=passing, expression=filter)
        vector = model.fold_in_vectors[sorted(known)].mean(axis=0)
        ids, scores = ranked_search(model, "history", vector, k, known, passing, np.fromiter(known, np.int64),
                                    expression=filter)
        return answer(model, ids, scores, "history", None, fields)

    @timed("similar_users")
    def similar_users(self, user: str | int, k: int = 10, *, metric: str = "cosine") -> SimilarUsers:
        """The ``k`` users most similar to ``user``, by the vectors the model compares users by
        (:func:`recsys.entity_vectors`), by cosine (default) or raw inner product (``"ip"``, led by users with
        long vectors). Exact search over every user of the version, whose vectors are read from Redis on the
        first call per version.

        Raises:
            UnknownUser: the version does not know ``user``.
            InvalidRequest: bad ``k``, user id or ``metric``.
            RedisUnavailable: Redis is down on the first call for this version.
        """
        k = check_k(k)
        user = check_id(user, "user")
        metric = check_metric(metric)
        model = self._model
        users, scores = self._similarity.users(self.registry, model, user, k, metric, self._rows.rewritten)
        return SimilarUsers(users=users, scores=scores, model=model.name, model_version=model.version, user=user,
                            metric=metric)

    # -- steps --------------------------------------------------------------------------------------------
    def _allowed(self, model: ServingModel, expression: str | None) -> AllowedIds | None:
        """The items ``expression`` allows (``None``: no filter, or a backend that evaluates it itself).

        Raises:
            InvalidFilter: a bad expression.
        """
        return None if expression is None else model.backend.allowed(model, expression, self._filters)
