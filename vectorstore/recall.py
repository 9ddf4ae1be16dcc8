"""Measured ANN recall: an item index that serves a model's own queries at the recall asked for.

HNSW recall is a property of the data, not of the parameters alone: at M=32, ef=200 the augmented-L2
inner-product graph reaches recall@10 0.9998 on Node2Vec vectors of ml-1m but 0.48 on 100k clustered
vectors whose norms vary 0.3-3x, where hnswlib's native ``ip`` space reaches 1.0 (and only 0.90 on the
Node2Vec vectors). So :func:`tune_index` measures, at build time, recall@k of the answers a client will
get (single queries, exclusions applied, as ``RecommendationClient`` asks) against exact search on sample
queries of every serving path, and keeps the configuration with the smallest ef (the fastest queries)
that reaches the target:

1. the augmented graph at ``ef``, then ``2 ef``, ``4 ef`` until the target is reached (raising ef costs no
   rebuild);
2. unless that happened at the first ef, the native ``ip`` graph at the efs below the one found (one
   more build);
3. if no graph reached the target, exact search (``ItemIndex.exact``), whose recall is 1 by construction.

Spaces other than ``"ip"`` have one graph kind, so only steps 1 and 3 apply. Why augmented first: every
model shipped so far reaches the target with it at the first ef, so they pay no second build
(``bench/serving.py`` has the varied-norm row that needs the second).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .exceptions import InvalidModelData
from .index import MIPS, ItemIndex, as_vectors

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


def measure_recall(index: ItemIndex, probe: Probe, k: int = 10, *, truth: _Truth | None = None) -> tuple[float, float]:
    """Recall@k of ``index``'s single-query answers against exact search, and their mean latency.

    A served item counts as a hit when its exact score reaches the k-th best exact score (so ties at the
    cut-off are not misses). Queries are asked one at a time, as a serving client asks them, with the
    index's own choice of graph or exact search.

    Args:
        index: the index to measure.
        probe: sample queries and their exclusions.
        k: cut-off.
        truth: the exact answers, when already computed for this probe (they do not depend on the graph).

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
        ids, _ = index.query(query, k, exclude=exclude)
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
    """Build an index over ``vectors`` that answers every probe at recall@k >= ``target``.

    Args:
        vectors: ``n x d`` item vectors (ids ``0..n-1``).
        probes: sample queries per serving path, e.g. ``{"recommend": ..., "history": ...}``.
        space: the index space (``"ip"``, ``"cosine"`` or ``"l2"``).
        target: the recall@k to reach on every probe.
        k: the cut-off of the recall.
        M, ef_construction, ef: HNSW parameters; ef is doubled up to ``ef_steps - 1`` times.
        num_threads: build threads (-1: all cores).

    Returns:
        ``(index, report)``: report = ``{"k", "target", "queries": {path: m}, "recall": {path: r},
        "mips", "ef", "exact", "query_ms", "tried": [{"mips", "ef", "recall": {...}, "query_ms"}...]}``.

    Raises:
        InvalidModelData: bad vectors or probes, or no probe.
    """
    if not probes:
        raise InvalidModelData("tune_index needs at least one probe")
    if not 0 < target <= 1:
        raise InvalidModelData(f"target={target!r} must be in (0, 1]")
    kinds: Sequence[str] = MIPS if space == "ip" else ("augmented",)  # mips is ignored outside "ip"
    efs = [ef * 2**i for i in range(max(1, ef_steps))]
    tried: list[dict[str, Any]] = []
    truths: dict[str, _Truth] = {}
    chosen: tuple[ItemIndex, dict[str, float], float] | None = None
    index: ItemIndex | None = None
    for kind in kinds:
        # A later graph kind is worth its build only if it can serve at a smaller ef (faster queries).
        ladder = [e for e in efs if chosen is None or e < chosen[0].ef]
        if not ladder:
            break
        index = ItemIndex.build(vectors, space=space, M=M, ef_construction=ef_construction, ef=ladder[0],
                                mips=kind, num_threads=num_threads)
        if not truths:
            truths = {name: _exact_truth(index, probe, k) for name, probe in probes.items()}
        for value in ladder:
            index.set_ef(value)
            recall, seconds = _measure_all(index, probes, k, truths)
            tried.append({"mips": kind if space == "ip" else None, "ef": value, "recall": recall,
                          "query_ms": seconds * 1e3})
            log.info("index %s mips=%s ef=%d: recall@%d %s", space, kind, value, k,
                     {n: round(r, 4) for n, r in recall.items()})
            if min(recall.values()) >= target:
                chosen = (index, recall, seconds)
                break
    if chosen is not None:
        return chosen[0], _report(chosen[0], probes, k, target, tried, chosen[1], chosen[2])
    assert index is not None
    # No graph reached the target: every query of this index is answered exactly.
    index.set_ef(efs[0])
    index.set_exact(True)
    log.warning("no %s graph reached recall@%d %.3f (best %.4f): serving exact search", space, k, target,
                max(min(t["recall"].values()) for t in tried))
    recall, seconds = _measure_all(index, probes, k, truths)
    return index, _report(index, probes, k, target, tried, recall, seconds)


def _measure_all(index: ItemIndex, probes: Mapping[str, Probe], k: int,
                 truths: Mapping[str, _Truth]) -> tuple[dict[str, float], float]:
    """Recall per probe, and the slowest probe's seconds per query."""
    measured = {name: measure_recall(index, probe, k, truth=truths[name]) for name, probe in probes.items()}
    return {name: r for name, (r, _) in measured.items()}, max(s for _, s in measured.values())


def _report(index: ItemIndex, probes: Mapping[str, Probe], k: int, target: float, tried: list[dict[str, Any]],
            recall: dict[str, float], seconds: float) -> dict[str, Any]:
    return {"k": k, "target": target, "queries": {name: len(p.queries) for name, p in probes.items()},
            "recall": recall, "mips": index.params.get("mips"), "ef": index.ef, "exact": index.exact,
            "query_ms": seconds * 1e3, "tried": tried}
