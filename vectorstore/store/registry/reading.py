"""Reading the registry: models, versions, manifests (signature checked) and parts (sha256 checked), tables.

Readers go through a version's manifest, which exists only for complete versions, so they never see a
half-written one; a version collected while being read is read again (the active one) or reported gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...exceptions import (
    ChecksumError,
    CorruptManifest,
    IntegrityError,
    InvalidModelData,
    ModelNotFound,
    VersionNotFound,
)
from ._core import RegistryCore
from ._manifest import created_at, parse_manifest, rows_tagged
from ._parts import chunk_fields, decode_part, table_digest
from .keys import check_name, derived_label, table_label
from .rows import RowSeal

__all__ = ["ModelVersion", "RegistryReads", "VersionInfo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """Summary of one stored version (from its manifest, without loading any data)."""

    model: str
    version: int
    created_at: float
    active: bool
    nbytes: int
    parts: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the version cannot be read (a corrupt manifest), else None


@dataclass(frozen=True)
class ModelVersion:
    """A loaded, checksum-verified model version.

    Attributes:
        model, version: which model and version this is.
        arrays: named numpy arrays (read-only views of the stored bytes).
        blobs: named byte strings (e.g. a serialised index or a torch state_dict).
        meta: the JSON metadata given at publication.
        tables: names of per-key tables (read with :meth:`ModelRegistry.table_get`).
        created_at: publication time (unix seconds).
    """

    model: str
    version: int
    arrays: dict[str, np.ndarray]
    blobs: dict[str, bytes]
    meta: dict[str, Any]
    tables: tuple[str, ...]
    created_at: float


class RegistryReads(RegistryCore):
    """The reading half of :class:`~vectorstore.ModelRegistry` (see there)."""

    def version_for_token(self, model: str, token: str) -> int | None:
        """The version committed with publication ``token``, if any (see :meth:`publish`)."""
        raw = self._redis(self.client.hget, self.keys.tokens(check_name("model", model)), token)
        try:
            return int(raw) if raw else None
        except ValueError:
            raise CorruptManifest(f"{model!r}: publication token {token[:40]!r} maps to no version number") from None

    def models(self) -> list[str]:
        """Names of all models ever published under this prefix (sorted)."""
        names = self._redis(self.client.smembers, self.keys.models())
        return sorted(n.decode() for n in names)

    def active_version(self, model: str) -> int | None:
        """The active version of ``model``, or ``None`` if it has none."""
        raw = self._redis(self.client.get, self.keys.active(check_name("model", model)))
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise CorruptManifest(f"the active pointer of {model!r} is not a version number") from None

    def manifest(self, model: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of ``version`` (default: active) with its signature verified when a key is set.

        Raises:
            ModelNotFound: no active version. VersionNotFound: no such version.
            SignatureError: a signing key is set and the manifest is unsigned or tampered.
        """
        check_name("model", model)
        if version is None:
            version = self.active_version(model)
            if version is None:
                raise ModelNotFound(f"model {model!r} has no active version")
        raw = self._redis(self.client.get, self.keys.manifest(model, version))
        if raw is None:
            if not self._redis(self.client.exists, self.keys.seq(model), self.keys.versions(model)):
                raise ModelNotFound(f"model {model!r} does not exist")
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return parse_manifest(raw, model, int(version), self.settings.signing_key)

    def versions(self, model: str) -> list[VersionInfo]:
        """Stored versions of ``model``, newest first.

        Raises:
            ModelNotFound: the model was never published.
        """
        check_name("model", model)
        numbers = self._version_numbers(model)
        if not numbers and not self._redis(self.client.exists, self.keys.seq(model)):
            raise ModelNotFound(f"model {model!r} does not exist")
        active = self.active_version(model)
        keys = [self.keys.manifest(model, n) for n in numbers]
        raws = self._redis(self.client.mget, keys) if keys else []
        out = []
        for number, raw in zip(numbers, raws):
            if raw is None:
                continue
            try:
                m = parse_manifest(raw, model, number, self.settings.signing_key)
            except IntegrityError as exc:  # listed, so that an operator sees it and can roll back past it
                out.append(VersionInfo(model, number, 0.0, number == active, 0, (), {}, problem=str(exc)))
                continue
            nbytes = sum(p["nbytes"] for p in m["parts"].values())
            out.append(VersionInfo(model, number, created_at(m), number == active, nbytes,
                                   tuple(m["parts"]) + tuple(m.get("tables", {})), m.get("meta", {})))
        return out

    def _version_numbers(self, model: str) -> list[int]:
        """Stored version numbers, newest first (a member that is not a number is skipped, with a warning)."""
        out = []
        for raw in self._redis(self.client.zrevrange, self.keys.versions(model), 0, -1):
            try:
                out.append(int(raw))
            except ValueError:
                log.warning("%s: the versions set holds a member that is not a version number", model)
        return out

    def load(self, model: str, version: int | None = None, parts: Iterable[str] | None = None) -> ModelVersion:
        """Load ``version`` (default: active) of ``model``, verifying every part's sha256.

        Args:
            parts: names of arrays/blobs to load (default: all). Tables are read with :meth:`table_get`.

        Raises:
            ModelNotFound, VersionNotFound: nothing to load, or the version asked for was deleted while
                being read (the active version is then read again).
            ChecksumError: a part is missing, truncated or altered (the version is refused as a whole).
            SignatureError: see :meth:`manifest`.
        """
        # A newer version became active and the one being read was collected meanwhile: read the active
        # version again. A version asked for by number is simply gone.
        for _ in range(1 if version is not None else 3):
            try:
                return self._load(model, version, parts)
            except _Collected as exc:
                gone = exc.version
        raise VersionNotFound(f"model {model!r} v{gone} was deleted while being read")

    def _load(self, model: str, version: int | None, parts: Iterable[str] | None) -> ModelVersion:
        manifest = self.manifest(model, version)
        version = int(manifest["version"])
        wanted = list(manifest["parts"]) if parts is None else list(parts)
        unknown = [p for p in wanted if p not in manifest["parts"]]
        if unknown:
            raise InvalidModelData(f"{model!r} v{version} has no part {unknown[0]!r}; it has {list(manifest['parts'])}")
        fields = [f for name in wanted for f in chunk_fields(name, manifest["parts"][name])]
        values = self._redis(self.client.hmget, self.keys.data(model, version), fields) if fields else []
        chunks = dict(zip(fields, values))
        arrays: dict[str, np.ndarray] = {}
        blobs: dict[str, bytes] = {}
        for name in wanted:
            spec = manifest["parts"][name]
            pieces = [chunks[f] for f in chunk_fields(name, spec)]
            if any(p is None for p in pieces):
                if not self._redis(self.client.exists, self.keys.manifest(model, version)):
                    raise _Collected(version)
                raise ChecksumError(f"{model!r} v{version}: part {name!r} is missing chunks")
            part = decode_part(f"{model!r} v{version}", name, spec, b"".join(pieces))
            if isinstance(part, np.ndarray):
                arrays[name] = part
            else:
                blobs[name] = part
        return ModelVersion(model, version, arrays, blobs, manifest.get("meta", {}),
                            tuple(manifest.get("tables", {})), created_at(manifest))

    def table_get(self, model: str, version: int, table: str, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in a per-key table of a version (``None`` for a missing key), one round trip."""
        if not keys:
            return []
        seal = self.row_seal(model, version, table)
        raws = self._redis(self.client.hmget, self.table_key(model, version, table), list(keys))
        return [None if raw is None else seal.open(key, raw) for key, raw in zip(keys, raws)]

    def table_key(self, model: str, version: int, table: str) -> str:
        """The Redis hash holding a version's per-key table (for readers that batch their own commands)."""
        return self.keys.table(check_name("model", model), version, table)

    def read_table(self, model: str, version: int, table: str) -> dict[str, bytes]:
        """A whole per-key table of a version (all rows in one HGETALL: for copies, audits, batch jobs).

        Raises:
            InvalidModelData: the version has no such table.
        """
        manifest = self.manifest(model, version)
        spec = manifest.get("tables", {}).get(table)
        if spec is None:
            raise InvalidModelData(f"{model!r} v{version} has no table {table!r}")
        seal = self.row_seal(model, version, table, manifest=manifest)
        raw = self._redis(self.client.hgetall, self.table_key(model, version, table))
        # An empty table is stored as one placeholder field "_".
        rows = {k.decode(): v for k, v in raw.items() if not (k == b"_" and spec["rows"] == 0)}
        return {key: seal.open(key, value) for key, value in rows.items()}

    def verify_table(self, model: str, version: int, table: str) -> None:
        """Check a whole table against its sha256 (reads all of it; for audits and tests).

        Raises:
            ChecksumError: rows missing, extra or altered.
        """
        spec = self.manifest(model, version)["tables"].get(table)
        if table_digest(table, self.read_table(model, version, table)) != spec:
            raise ChecksumError(f"{model!r} v{version}: table {table!r} fails its sha256 check")

    def row_seal(self, model: str, version: int, name: str, *, derived: bool = False,
                 manifest: Mapping[str, Any] | None = None) -> RowSeal:
        """The :class:`~vectorstore.RowSeal` of a version's table ``name`` (or, with ``derived``, of the data
        derived from it under :meth:`derived_key` ``name``): readers open rows with it, writers of derived data
        seal them. ``manifest``: the version's (verified) manifest, when the caller has it already.

        Raises:
            as :meth:`manifest`.
        """
        if manifest is None:
            manifest = self.manifest(model, version)
        label = derived_label(check_name("derived", name)) if derived else table_label(check_name("table", name))
        return RowSeal(self.settings.signing_key, model, int(version), label,
                       tagged=rows_tagged(manifest))


class _Collected(Exception):
    """Internal: the version being loaded was deleted (collected) between its manifest and its data."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version
