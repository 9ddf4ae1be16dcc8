"""Measured ANN recall: an item index that serves each of a model's query paths at the recall asked for.

HNSW recall is a property of the data and of the queries, not of the parameters alone. At M=32, ef=200 the
augmented-L2 inner-product graph reaches recall@10 0.9998 on Node2Vec vectors of ml-1m but 0.48 on 100k
clustered vectors whose norms vary 0.3-3x, where hnswlib's native ``ip`` space reaches 1.0 (and only 0.90
on the Node2Vec vectors). And on one catalogue of 1M clustered items, users' vectors were answered at
0.994 while the means of 20 random items' vectors (fold-in queries) were answered at 0.51: such a query
points at the middle of the catalogue, where the graph has no short path to the best items.

So :func:`tune_index` measures, at build time, recall@k of the answers a client will get (single queries,
exclusions applied, as ``RecommendationClient`` asks them) against exact search on sample queries of every
path, and settles each path on its own:

1. the augmented graph at ``ef``, ``2 ef``, ``4 ef``: each path gets the smallest ef at which it reaches
   the target (a wider beam is asked per query, :meth:`ItemIndex.query`'s ``ef``: no rebuild, no race);
2. unless every path reached it at the first ef, the native ``ip`` graph too (one more build); the graph
   that needs exact search for fewer paths, then smaller efs, is kept;
3. a path that no graph serves at the target is answered by exact search (recall 1 by construction).

Spaces other than ``"ip"`` have one graph kind, so step 2 does not apply. Why augmented first: every model
shipped so far reaches the target with it at the first ef, so they pay no second build (``bench/serving.py``
has the varied-norm table that needs the second).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...exceptions import InvalidModelData
from .item_index import MIPS, ItemIndex, as_vectors

__all__ = ["DEFAULT_TARGET", "Probe", "measure_recall", "tune_index"]

log = logging.getLogger(__name__)

#: the recall@k every published index must reach
DEFAULT_TARGET = 0.99
#: relative tolerance under which a served item's exact score ties the k-th best (float noise, equal scores)
_TIE = 1e-5


@dataclass(frozen=True)
class Probe:
    """Sample queries of one serving path and the ids each of them may not return.

    Attributes:
        queries: ``m x d`` query vectors.
        exclude: one array of excluded ids per query (e.g. the user's seen items), or ``None``.
    """

    queries: np.ndarray
    exclude: Sequence[np.ndarray] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", as_vectors(self.queries, name="probe queries"))
        if self.exclude is not None and len(self.exclude) != len(self.queries):
            raise InvalidModelData(f"probe has {len(self.queries)} queries and {len(self.exclude)} exclusion rows")

    def row_exclusion(self, row: int) -> np.ndarray | None:
        """The ids query ``row`` may not return (``None``: no exclusion)."""
        if self.exclude is None:
            return None
        ex = np.asarray(self.exclude[row], dtype=np.int64)
        return ex if ex.size else None


@dataclass(frozen=True)
class _Truth:
    kth: np.ndarray  # per query: the exact k-th best score (higher is better), NaN when nothing is left
    wanted: np.ndarray  # per query: how many results exist (k, or fewer after exclusions)


def _exact_truth(index: ItemIndex, probe: Probe, k: int) -> _Truth:
    ids, scores = index.query(probe.queries, k, exclude=probe.exclude, exact=True)
    sign = -1.0 if index.space == "l2" else 1.0
    wanted = (ids >= 0).sum(axis=1)
    kth = np.full(len(ids), np.nan)
    has = wanted > 0
    kth[has] = sign * scores[has, wanted[has] - 1]
    return _Truth(kth, wanted)


def _exact_scores(index: ItemIndex, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact scores of ``ids`` for ``query``, higher is better (l2: negative squared distance)."""
    vectors = index.get_vectors(ids.tolist())
    if index.space == "l2":
        return -np.square(vectors - query).sum(axis=1)
    if index.space == "cosine":
        query = query / max(float(np.linalg.norm(query)), 1e-12)
    return vectors @ query


def measure_recall(index: ItemIndex, probe: Probe, k: int = 10, *, truth: _Truth | None = None,
                   **search: Any) -> tuple[float, float]:
    """Recall@k of ``index``'s single-query answers against exact search, and their mean latency.

    A served item counts as a hit when its exact score reaches the k-th best exact score (so ties at the
    cut-off are not misses). Queries are asked one at a time, as a serving client asks them, with the
    index's own choice of graph or exact search.

    Args:
        index: the index to measure.
        probe: sample queries and their exclusions.
        k: cut-off.
        truth: the exact answers, when already computed for this probe (they do not depend on the graph).
        search: :meth:`ItemIndex.query` arguments of the path (``ef``, ``exact``).

    Returns:
        ``(recall, seconds per query)``; recall is 1.0 for a probe whose queries have nothing left to return.

    Raises:
        InvalidModelData: k < 1 or queries of the wrong dimension.
    """
    truth = truth or _exact_truth(index, probe, k)
    hits = wanted = 0
    elapsed = 0.0
    for row, query in enumerate(probe.queries):
        if not truth.wanted[row]:
            continue
        exclude = probe.row_exclusion(row)
        t = time.perf_counter()
        ids, _ = index.query(query, k, exclude=exclude, **search)
        elapsed += time.perf_counter() - t
        ids = ids[ids >= 0]
        if ids.size:
            kth = truth.kth[row]
            scores = _exact_scores(index, query, ids)
            hits += min(int((scores >= kth - _TIE * max(1.0, abs(kth))).sum()), int(truth.wanted[row]))
        wanted += int(truth.wanted[row])
    return (hits / wanted if wanted else 1.0), elapsed / max(len(probe.queries), 1)


def tune_index(
    vectors: Any,
    probes: Mapping[str, Probe],
    *,
    space: str = "ip",
    target: float = DEFAULT_TARGET,
    k: int = 10,
    M: int = 32,
    ef_construction: int = 200,
    ef: int = 200,
    ef_steps: int = 3,
    num_threads: int = -1,
) -> tuple[ItemIndex, dict[str, Any]]:
    """Build an index over ``vectors`` and settle how each probe's path searches it at recall@k >= ``target``.

    Args:
        vectors: ``n x d`` item vectors (ids ``0..n-1``).
        probes: sample queries per serving path, e.g. ``{"recommend": ..., "history": ...}``.
        space: the index space (``"ip"``, ``"cosine"`` or ``"l2"``).
        target: the recall@k to reach on every probe.
        k: the cut-off of the recall.
        M, ef_construction, ef: HNSW parameters; ef (the index's own) is doubled up to ``ef_steps - 1``
            times for the paths that need it.
        num_threads: build threads (-1: all cores).

    Returns:
        ``(index, report)``: report = ``{"k", "target", "mips", "ef", "recall": {path: r}, "search": {path:
        {} | {"ef": e} | {"exact": True}}, "query_ms": {path: ms}, "tried": [{"mips", "ef", "path",
        "recall", "query_ms"}...]}``; ``search`` holds the :meth:`ItemIndex.query` arguments each path
        must be asked with (``{}``: the index's own ef).

    Raises:
        InvalidModelData: bad vectors or probes, no probe, or a target outside (0, 1].
    """
    if not probes:
        raise InvalidModelData("tune_index needs at least one probe")
    if not 0 < target <= 1:
        raise InvalidModelData(f"target={target!r} must be in (0, 1]")
    kinds: Sequence[str] = MIPS if space == "ip" else ("augmented",)  # mips is ignored outside "ip"
    efs = [ef * 2**i for i in range(max(1, ef_steps))]
    tried: list[dict[str, Any]] = []
    truths: dict[str, _Truth] = {}
    best: tuple[ItemIndex, dict[str, tuple[int, float, float]]] | None = None
    for kind in kinds:
        if best is not None and _cost(best[1], probes) <= (0, efs[0]):
            break  # every path is served at the index's own ef: no graph can do better
        index = ItemIndex.build(vectors, space=space, M=M, ef_construction=ef_construction, ef=efs[0], mips=kind,
                                num_threads=num_threads)
        truths = truths or {name: _exact_truth(index, probe, k) for name, probe in probes.items()}
        plan: dict[str, tuple[int, float, float]] = {}  # path -> (ef, recall, seconds per query)
        for value in efs:
            for name in [n for n in probes if n not in plan]:
                recall, seconds = measure_recall(index, probes[name], k, truth=truths[name], ef=value)
                tried.append({"mips": kind if space == "ip" else None, "ef": value, "path": name, "recall": recall,
                              "query_ms": seconds * 1e3})
                log.info("index %s mips=%s ef=%d %s: recall@%d %.4f", space, kind, value, name, k, recall)
                if recall >= target:
                    plan[name] = (value, recall, seconds)
        if best is None or _cost(plan, probes) < _cost(best[1], probes):
            best = (index, plan)
    assert best is not None
    index, plan = best
    report: dict[str, Any] = {"k": k, "target": target, "mips": index.params.get("mips"), "ef": index.ef,
                              "recall": {}, "search": {}, "query_ms": {}, "tried": tried}
    for name, probe in probes.items():
        if name in plan:
            value, recall, seconds = plan[name]
            search: dict[str, Any] = {"ef": value} if value > index.ef else {}
        else:  # no graph reached the target for this path: it is answered by exact search
            search = {"exact": True}
            recall, seconds = measure_recall(index, probe, k, truth=truths[name], **search)
            log.warning("no %s graph reached recall@%d %.3f on %s queries: they are answered by exact search",
                        space, k, target, name)
        report["recall"][name], report["search"][name], report["query_ms"][name] = recall, search, seconds * 1e3
    if all(search.get("exact") for search in report["search"].values()):
        index.set_exact(True)
    return index, report


def _cost(plan: Mapping[str, tuple[int, float, float]], probes: Mapping[str, Probe]) -> tuple[int, int]:
    """Paths left to exact search, then the widest ef: lower is a faster way to serve every path."""
    return len(probes) - len(plan), max((value for value, _, _ in plan.values()), default=0)
