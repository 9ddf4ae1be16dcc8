"""Milvus as a model version's item index, for catalogues that outgrow a serving process's memory.

A version published with ``index_backend="milvus"`` keeps its item vectors and metadata in a Milvus
collection of its own (HNSW index, inner product), named from the key prefix, the model and the version
(:func:`collection_names`). An alias per model points at the active version's collection: activation and
rollback move it (:class:`~vectorstore.ModelRegistry` calls :meth:`MilvusStore.point_alias`). A serving
client searches the collection of the version it serves, never the alias: its user vectors come from that
version's Redis tables, and a search against another version's items would mix two spaces during a swap.

Collection schema: ``pos`` (INT64 primary key: the dense item id of the version), ``item`` (VARCHAR: the
external id), ``vector`` (FLOAT_VECTOR), then one nullable field per metadata column (INT64, DOUBLE, BOOL or
VARCHAR by its values). ``EA_MILVUS_URI`` names the server (``http://host:19530``) or a milvus-lite data
path (embedded, one process at a time). pymilvus is imported here only, when a Milvus-backed model is
published or served: a deployment on hnswlib never loads it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, InvalidModelData, MilvusRefused, MilvusUnavailable
from ..platform.connection import redact_url
from ..platform.settings import Settings

__all__ = ["Hits", "MilvusItems", "MilvusStore", "collection_names", "drop_collection", "follow_activation",
           "publish_collection"]

log = logging.getLogger(__name__)

#: HNSW build parameters of every collection (the ones the hnswlib index is built with, recsys.publish._indexing)
HNSW = {"M": 32, "efConstruction": 200}
#: fields every collection has; metadata columns may not take these names
RESERVED = ("pos", "item", "vector")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_BATCH = 2000  # rows per insert: one gRPC message stays well under Milvus' 64 MB limit at any dim
_ID_LENGTH = 1024  # the client refuses longer ids (recsys.data.ids.check_id)


@dataclass(frozen=True)
class MilvusItems:
    """What a version writes into its collection.

    Attributes:
        vectors: float32 ``n_items x d`` scoring vectors (row ``i`` is dense item ``i``).
        ids: the external item id of each row.
        fields: metadata columns ``{name: [value per item]}`` (``None`` where unknown), returned with hits.
    """

    vectors: np.ndarray
    ids: Sequence[str]
    fields: Mapping[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Hits:
    """One query's results: dense item ids, inner-product scores and the asked-for fields, best first."""

    ids: np.ndarray
    scores: np.ndarray
    fields: dict[str, list]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def collection_names(settings: Settings, model: str, version: int) -> tuple[str, str]:
    """``(collection, alias)`` of ``model`` v``version``: Milvus names (letters, digits, ``_``).

    ``-`` and ``.`` of model names become ``_``; a short hash of the exact prefix and name keeps ``a-b`` and
    ``a_b`` (or two deployments' prefixes) apart.
    """
    digest = hashlib.sha256(f"{settings.key_prefix}\0{model}".encode()).hexdigest()[:8]
    alias = f"ea_{_safe(settings.key_prefix)[:40]}_{_safe(model)[:150]}_{digest}"
    return f"{alias}_v{int(version)}", alias


def _field_type(name: str, values: list) -> str:
    """The Milvus type of a metadata column: INT64, DOUBLE, BOOL or VARCHAR (mixed or text values)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return "BOOL"
    if present and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present):
        return "INT64"
    if present and all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        return "DOUBLE"
    return "VARCHAR"


def _cell(value: Any, kind: str) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return {"BOOL": bool, "INT64": int, "DOUBLE": float}.get(kind, str)(value)


class MilvusStore:
    """One connection to the Milvus at ``settings.milvus_uri`` (:meth:`get` shares one per process).

    Raises:
        ConfigurationError: ``EA_MILVUS_URI`` is not set, or pymilvus is not installed.
        MilvusUnavailable: Milvus did not answer.
    """

    _shared: dict[tuple[int, str], MilvusStore] = {}
    _shared_lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        uri = settings.milvus_uri
        if not uri:
            raise ConfigurationError("EA_MILVUS_URI is not set: a model with index_backend='milvus' needs a Milvus "
                                     "server (http://host:19530) or a milvus-lite data path")
        try:
            import pymilvus
        except ImportError:
            raise ConfigurationError("index_backend='milvus' needs pymilvus: pip install "
                                     "'embedding-analytics[milvus]'") from None
        self._pymilvus = pymilvus
        self.where = redact_url(uri)
        self.timeout = settings.socket_timeout
        self.client = self._call("connect", lambda: pymilvus.MilvusClient(uri=uri, timeout=self.timeout))

    @classmethod
    def get(cls, settings: Settings) -> MilvusStore:
        """The process's store for ``settings.milvus_uri`` (made anew in a forked child: gRPC channels do not
        survive a fork)."""
        key = (os.getpid(), settings.milvus_uri or "")
        with cls._shared_lock:
            store = cls._shared.get(key)
            if store is None:
                store = cls._shared[key] = cls(settings)
            return store

    def _call(self, what: str, fn: Any) -> Any:
        """Run one pymilvus call, its failures mapped onto this package's errors."""
        try:
            return fn()
        except self._pymilvus.exceptions.MilvusException as exc:
            code = getattr(exc, "code", None)
            # code 2 (connect), gRPC UNAVAILABLE / DEADLINE_EXCEEDED surface as these
            if code in (2, 1, -1) or isinstance(exc, self._pymilvus.exceptions.ConnectError) or \
                    "unavailable" in str(exc).lower() or "deadline" in str(exc).lower():
                raise MilvusUnavailable(f"Milvus at {self.where} did not answer ({what})") from None
            message = str(getattr(exc, "message", exc)).splitlines()[0][:300]
            raise MilvusRefused(f"Milvus at {self.where} refused {what}: {message}") from None

    # -- publication --------------------------------------------------------------------------------------
    def create(self, settings: Settings, model: str, version: int, items: MilvusItems) -> dict[str, Any]:
        """Write ``items`` into a new collection for ``model`` v``version`` and load it.

        Returns:
            The spec kept in the version's manifest: ``{"collection", "alias", "dim", "fields": {name: type},
            "index": {...}}``.

        Raises:
            InvalidModelData: a metadata column's name is not a Milvus field name, or is reserved.
            MilvusUnavailable, MilvusRefused: Milvus failed; the half-written collection is dropped.
        """
        vectors = np.ascontiguousarray(items.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(items.ids):
            raise InvalidModelData(f"{vectors.shape} vectors for {len(items.ids)} item ids")
        for name in items.fields:
            if not _FIELD.match(str(name)) or name in RESERVED:
                raise InvalidModelData(f"item metadata column {str(name)[:40]!r} cannot be a Milvus field: letters, "
                                       f"digits and '_' only, not starting with a digit, none of {RESERVED}")
        kinds = {str(name): _field_type(name, list(values)) for name, values in items.fields.items()}
        collection, alias = collection_names(settings, model, version)
        dtype = self._pymilvus.DataType
        schema = self._pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pos", dtype.INT64, is_primary=True)
        schema.add_field("item", dtype.VARCHAR, max_length=_ID_LENGTH * 4)
        schema.add_field("vector", dtype.FLOAT_VECTOR, dim=int(vectors.shape[1]))
        for name, kind in kinds.items():
            extra = {"max_length": 65535} if kind == "VARCHAR" else {}
            schema.add_field(name, getattr(dtype, kind), nullable=True, **extra)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params=dict(HNSW))
        self._call("create_collection", lambda: self.client.drop_collection(collection))  # debris of a failed try
        self._call("create_collection", lambda: self.client.create_collection(collection, schema=schema,
                                                                               index_params=index))
        try:
            columns = {name: list(values) for name, values in items.fields.items()}
            for start in range(0, len(items.ids), _BATCH):
                stop = min(start + _BATCH, len(items.ids))
                rows = [{"pos": i, "item": str(items.ids[i]), "vector": vectors[i].tolist(),
                         **{n: _cell(columns[n][i], kinds[n]) for n in kinds}} for i in range(start, stop)]
                self._call("insert", lambda rows=rows: self.client.insert(collection, rows))
            # Sealed segments are the indexed ones: unflushed rows are searched by brute force (milvus-lite:
            # 20x slower on 5,000 items), and a standalone server indexes only what it has sealed.
            self._call("flush", lambda: self.client.flush(collection))
            self._call("load_collection", lambda: self.client.load_collection(collection))
        except BaseException:
            self.drop({"collection": collection})
            raise
        log.info("wrote %d items into Milvus collection %s at %s", len(items.ids), collection, self.where)
        return {"collection": collection, "alias": alias, "dim": int(vectors.shape[1]), "fields": kinds,
                "index": {"type": "HNSW", "metric": "IP", **HNSW}}

    def point_alias(self, spec: Mapping[str, Any]) -> None:
        """Point the model's alias at the collection of ``spec`` (created when missing)."""
        alias, collection = spec["alias"], spec["collection"]
        current = self.alias_target(alias)
        if current == collection:
            return
        if current is None:
            self._call("create_alias", lambda: self.client.create_alias(collection, alias))
        else:
            self._call("alter_alias", lambda: self.client.alter_alias(collection, alias))
        log.info("Milvus alias %s -> %s", alias, collection)

    def alias_target(self, alias: str) -> str | None:
        """The collection ``alias`` points at, or ``None`` when there is no such alias.

        Asked of the collections named like the alias's versions (``<alias>_v<n>``): ``describe_alias`` of a
        missing alias is an error that pymilvus logs with its traceback, and a first version has none yet.
        """
        for name in self.collections():
            if name.startswith(f"{alias}_v"):
                reply = self._call("list_aliases", lambda n=name: self.client.list_aliases(n))
                if alias in (reply.get("aliases") or []):
                    return name
        return None

    def drop(self, spec: Mapping[str, Any]) -> None:
        """Drop a version's collection (nothing when it is already gone)."""
        self._call("drop_collection", lambda: self.client.drop_collection(spec["collection"]))

    def collections(self) -> list[str]:
        """Names of the collections on the server (for audits and tests)."""
        return sorted(self._call("list_collections", self.client.list_collections))

    # -- queries ------------------------------------------------------------------------------------------
    def search(self, collection: str, vectors: np.ndarray, k: int, *, filter: str = "",
               exclude: Sequence[Sequence[int]] | None = None, allowed: Sequence[int] | None = None,
               output_fields: Sequence[str] = (), ef: int = 200) -> list[Hits]:
        """The ``k`` items of highest inner product with each row of ``vectors``.

        Args:
            filter: a Milvus boolean expression over the metadata fields (``""``: none).
            exclude: per query, dense ids never to return (e.g. the user's seen items).
            allowed: if given, only these dense ids may be returned (all queries).
            output_fields: metadata fields returned with each hit.
            ef: HNSW search breadth (at least ``k``).

        Raises:
            MilvusRefused: e.g. the filter names an unknown field. MilvusUnavailable: no answer.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        fields = list(output_fields)
        if allowed is not None and not len(allowed):
            return [Hits(np.empty(0, np.int64), np.empty(0, np.float32), {n: [] for n in fields}) for _ in vectors]
        out: list[Hits] = []
        for row, vector in enumerate(vectors):
            # One request per query: the expressions differ (each user's seen items).
            terms = [f"({filter})"] if filter else []
            banned = list(exclude[row]) if exclude is not None else []
            if banned:
                terms.append(f"pos not in [{','.join(str(int(i)) for i in banned)}]")
            if allowed is not None:
                terms.append(f"pos in [{','.join(str(int(i)) for i in allowed)}]")
            expression = " and ".join(terms)
            reply = self._call("search", lambda v=vector, e=expression: self.client.search(
                collection, data=[v.tolist()], limit=int(k), filter=e, output_fields=fields, anns_field="vector",
                search_params={"metric_type": "IP", "params": {"ef": max(int(ef), int(k))}}))
            hits = list(reply[0]) if reply else []
            out.append(Hits(ids=np.array([int(h["pos"] if "pos" in h else h["id"]) for h in hits], dtype=np.int64),
                            scores=np.array([float(h["distance"]) for h in hits], dtype=np.float32),
                            fields={n: [h["entity"].get(n) for h in hits] for n in fields}))
        return out

    def delete(self, collection: str, positions: Sequence[int]) -> None:
        """Delete the items at dense ids ``positions`` (their primary keys) from ``collection``.

        Raises:
            MilvusUnavailable, MilvusRefused: Milvus failed.
        """
        wanted = [int(p) for p in positions]
        if wanted:
            self._call("delete", lambda: self.client.delete(collection, ids=wanted))

    def upsert(self, collection: str, positions: Sequence[int], ids: Sequence[str], vectors: np.ndarray,
               fields: Mapping[str, Sequence[Any]], kinds: Mapping[str, str]) -> None:
        """Write whole rows (dense id, item id, vector, every metadata field of ``kinds``, as in :meth:`create`)
        over those at ``positions``, or add them.

        Raises:
            MilvusUnavailable, MilvusRefused: Milvus failed.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [{"pos": int(p), "item": str(i), "vector": vectors[n].tolist(),
                 **{name: _cell(fields.get(name, [None] * len(ids))[n], kind) for name, kind in kinds.items()}}
                for n, (p, i) in enumerate(zip(positions, ids))]
        if rows:
            self._call("upsert", lambda: self.client.upsert(collection, rows))

    def fetch(self, collection: str, positions: Sequence[int], output_fields: Sequence[str], *,
              filter: str = "") -> dict[str, list]:
        """Fields ``output_fields`` of the items at dense ids ``positions`` (in that order; ``None`` when absent,
        or when the item does not pass ``filter``)."""
        wanted = [int(p) for p in positions]
        if not wanted or not output_fields:
            return {n: [None] * len(wanted) for n in output_fields}
        expression = f"pos in [{','.join(map(str, wanted))}]" + (f" and ({filter})" if filter else "")
        rows = self._call("query", lambda: self.client.query(
            collection, filter=expression, output_fields=["pos", *output_fields], limit=len(wanted)))
        by_pos = {int(r["pos"]): r for r in rows}
        return {n: [by_pos.get(p, {}).get(n) for p in wanted] for n in output_fields}


# -- what the registry calls (.registry): the collection follows its version's life ------------------------
def publish_collection(settings: Settings, model: str, version: int, items: MilvusItems) -> dict[str, Any]:
    """Write a version's collection before its commit; the spec returned goes into its ``meta["milvus"]``."""
    return MilvusStore.get(settings).create(settings, model, version, items)


def follow_activation(settings: Settings, meta: Mapping[str, Any], *, strict: bool = True) -> None:
    """Point the model's alias at the collection of the version whose ``meta`` this is (if it has one).

    Args:
        strict: raise when Milvus fails (an explicit activation: nothing switched yet); else log a warning (a
            publication already committed: clients search the version's own collection, only the alias lags
            until the next activation).
    """
    _with_spec(settings, meta, MilvusStore.point_alias, strict, "alias not moved to its collection")


def drop_collection(settings: Settings, meta: Mapping[str, Any]) -> None:
    """Drop the collection of a version being deleted; a failure is logged (the collection is then left over)."""
    _with_spec(settings, meta, MilvusStore.drop, False, "collection of a deleted version not dropped")


def _with_spec(settings: Settings, meta: Mapping[str, Any], action: Any, strict: bool, failed: str) -> None:
    spec = meta.get("milvus") if isinstance(meta, Mapping) else None
    if not spec:
        return  # an hnswlib version: pymilvus is never imported
    try:
        action(MilvusStore.get(settings), spec)
    except (MilvusUnavailable, MilvusRefused, ConfigurationError) as exc:
        if strict:
            raise
        log.warning("Milvus %s (%s): %s", failed, spec.get("collection"), exc)
