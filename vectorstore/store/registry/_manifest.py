"""A version's manifest, its one owner: written (:func:`new_manifest`), and read back parsed, signature checked,
and its shape validated before anything trusts it (:func:`parse_manifest`).

A manifest is ``{"model", "version", "created_at", "parts", "tables", "meta"}`` and, when the version is
signed, ``row_tag`` (its rows carry tags of that many bytes, :mod:`.rows`) and ``signature`` (an HMAC of the
rest). Readers other than the registry get it parsed, through :meth:`~vectorstore.ModelRegistry.manifest`.

A manifest is the only way into a version, so everything read from it (part names, chunk counts, sizes,
dtypes, shapes) must be sane before a reader builds Redis fields, allocates or reshapes from it: ``{}``,
``[]``, a manifest of another model or version copied under this key, or a chunk count of 10**12 are each a
:class:`CorruptManifest` naming the model, version and what is wrong, never a ``KeyError`` or a huge
allocation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...exceptions import CorruptManifest, SignatureError
from .rows import TAG_BYTES

__all__ = ["DTYPES", "canonical", "created_at", "new_manifest", "parse_manifest", "rows_tagged", "sign",
           "unchecked_contents"]

DTYPES = {"float32", "float64", "int32", "int64", "uint32", "uint8", "int8", "bool"}
_HEX = set("0123456789abcdef")


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a manifest's signature covers (everything but the signature)."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, manifest: Mapping[str, Any]) -> str:
    """The HMAC-SHA256 of a manifest (hex)."""
    return hmac.new(key, canonical(manifest), hashlib.sha256).hexdigest()


def new_manifest(model: str, version: int, parts: Mapping[str, Any], tables: Mapping[str, Any],
                 meta: Mapping[str, Any], signing_key: bytes | None) -> dict[str, Any]:
    """The manifest of a version being published (signed, its rows marked as tagged, with ``signing_key``)."""
    manifest: dict[str, Any] = {"model": model, "version": version, "created_at": time.time(), "parts": dict(parts),
                                "tables": dict(tables), "meta": meta}
    if signing_key:
        manifest["row_tag"] = TAG_BYTES
        manifest["signature"] = sign(signing_key, manifest)
    return manifest


def created_at(manifest: Mapping[str, Any]) -> float:
    """When a (parsed) manifest's version was published (Unix seconds)."""
    return float(manifest["created_at"])


def rows_tagged(manifest: Mapping[str, Any]) -> bool:
    """Whether a (parsed) manifest's rows carry tags."""
    return manifest.get("row_tag") == TAG_BYTES


def unchecked_contents(raw: bytes | None) -> tuple[list[str], dict[str, Any]] | None:
    """The table names and meta of a stored manifest, unchecked (for deleting what it names), or ``None`` when
    it is not a JSON object."""
    try:
        manifest = json.loads(raw) if raw else None
        tables, meta = [str(t) for t in manifest.get("tables", {})], manifest.get("meta", {})
    except (ValueError, AttributeError, TypeError):
        return None
    return tables, meta if isinstance(meta, dict) else {}


def parse_manifest(raw: bytes, model: str, version: int, signing_key: bytes | None) -> dict[str, Any]:
    """The manifest stored for ``model`` v``version``, checked.

    Raises:
        CorruptManifest: not JSON, not a manifest, or one of another model or version.
        SignatureError: a signing key is set and the manifest is unsigned, tampered, or its rows carry no tags.
    """
    where = f"{model!r} v{version}"
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CorruptManifest(f"manifest of {where} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise CorruptManifest(f"manifest of {where} is a JSON {type(manifest).__name__}, not an object")
    if signing_key:
        signature = manifest.get("signature")
        if not signature:
            raise SignatureError(f"{where} is unsigned and EA_SIGNING_KEY is set")
        if not isinstance(signature, str) or not hmac.compare_digest(signature, sign(signing_key, manifest)):
            raise SignatureError(f"{where}: manifest signature does not verify")
    _check_shape(manifest, where)
    # A signed manifest stored under another model's or version's key (copied there) is refused: the
    # signature covers the model and version it was published as.
    if manifest["model"] != model or manifest["version"] != version:
        raise CorruptManifest(f"manifest stored as {where} is the manifest of {manifest['model']!r} "
                              f"v{manifest['version']}")
    if signing_key and manifest.get("row_tag") != TAG_BYTES:
        raise SignatureError(f"{where} was signed before its rows were (no row signatures): publish it again")
    return manifest


def _check_shape(m: dict[str, Any], where: str) -> None:
    def bad(what: str) -> CorruptManifest:
        return CorruptManifest(f"manifest of {where}: {what}")

    missing = [k for k in ("model", "version", "created_at", "parts") if k not in m]
    if missing:
        raise bad(f"missing {missing}")
    if not isinstance(m["model"], str) or not _is_int(m["version"]) or not _is_number(m["created_at"]):
        raise bad("model, version or created_at has the wrong type")
    for key in ("parts", "tables", "meta"):
        if not isinstance(m.get(key, {}), dict):
            raise bad(f"{key!r} is not an object")
    if m.get("row_tag") not in (None, TAG_BYTES):
        raise bad(f"row_tag {m.get('row_tag')!r} is not {TAG_BYTES}")
    for name, spec in m["parts"].items():
        _check_part(name, spec, bad)
    for name, spec in m.get("tables", {}).items():
        if (not isinstance(spec, dict) or not _is_int(spec.get("rows")) or spec["rows"] < 0
                or not _is_sha256(spec.get("sha256"))):
            raise bad(f"table {str(name)[:40]!r} has no valid rows and sha256")


def _check_part(name: Any, spec: Any, bad: Any) -> None:
    label = f"part {str(name)[:40]!r}"
    if not isinstance(spec, dict) or spec.get("kind") not in ("array", "blob"):
        raise bad(f"{label} is not an array or blob")
    nbytes, chunks = spec.get("nbytes"), spec.get("chunks")
    if not isinstance(nbytes, int) or not isinstance(chunks, int) or isinstance(nbytes, bool) or nbytes < 0 \
            or not 1 <= chunks <= max(1, nbytes):
        raise bad(f"{label} has impossible sizes (nbytes {nbytes!r}, chunks {chunks!r})")
    if not _is_sha256(spec.get("sha256")):
        raise bad(f"{label} has no valid sha256")
    if spec["kind"] == "array":
        shape, dtype = spec.get("shape"), spec.get("dtype")
        if dtype not in DTYPES or not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise bad(f"{label} has no valid dtype and shape")
        if math.prod(shape) * np.dtype(dtype).itemsize != nbytes:
            raise bad(f"{label}: shape {shape} of {dtype} is not {nbytes} bytes")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_sha256(x: Any) -> bool:
    return isinstance(x, str) and len(x) == 64 and set(x) <= _HEX
