"""The shape of the code: who may import whom, no import circles, no private names across packages, and
each package's public surface pinned (a change to it is a decision, made here)."""

from __future__ import annotations

import ast
import importlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vectorstore", "recsys", "anomaly", "alerts", "workers")
#: package -> the other packages it may import (workers composes; the middle three never meet).
ALLOWED = {"vectorstore": set(), "recsys": {"vectorstore"}, "anomaly": {"vectorstore"}, "alerts": {"vectorstore"},
           "workers": {"vectorstore", "recsys", "anomaly", "alerts"}}

PUBLIC = {
    "vectorstore": ["AllowedIds", "broker_kind", "by_exact_search", "celery_broker_config", "celery_broker_url",
                    "celery_transport_options", "ChecksumError", "ConfigurationError", "connect", "CorruptManifest",
                    "CorruptRow", "DEFAULT_TARGET", "EmbeddedRedis", "EmbeddedRedisError", "env_choice", "env_float",
                    "env_int", "env_url", "excerpt", "EXCERPT_CHARS", "excerpt_values", "find_redis_server",
                    "get_settings", "Hits", "index_backend", "INDEX_BACKENDS", "IndexBackend", "IndexItems",
                    "input_path", "InputNotAllowed", "IntegrityError", "InvalidModelData", "is_cluster", "ItemIndex",
                    "measure_recall", "MilvusRefused", "MilvusStore",
                    "MilvusUnavailable", "ModelNotFound", "ModelNotice", "ModelRegistry", "ModelVersion", "NulGuard",
                    "open_decompressed", "plain_header", "Probe", "QUEUES", "redact_url", "redis_server_version",
                    "RedisAuthFailed", "RedisFull", "RedisRefused", "RedisUnavailable", "resolve_redis_url", "RowSeal",
                    "search_allowed", "Settings", "SignatureError", "sniff_compression", "SPACES", "start_redis_server",
                    "tune_index", "UNAVAILABLE_ERRORS", "varied_norm_vectors", "VectorStoreError", "version_backend",
                    "VersionInfo", "VersionNotFound"],
    "recsys": ["CatalogueWriter", "DEFAULT_MODEL", "entity_vectors", "GraphEmbeddings", "GraphModel", "Interactions",
               "InvalidDelta", "InvalidFilter", "InvalidInteractions", "InvalidParameter", "InvalidRequest",
               "LightGCN", "make_model", "MODELS", "ModelUnavailable", "Node2Vec", "precompute_top_n",
               "ProgressCallback", "publish_embeddings", "ranking_metrics", "RecommendationClient", "Recommendations",
               "RecsysError", "SimilarUsers", "synthetic_interactions", "top_k", "train_and_publish", "TrainingError",
               "UnknownItem", "UnknownUser", "UnsupportedDelta", "user_rows", "user_table_keys", "VersionGone"],
    "anomaly": ["Label", "label_missed", "label_normal", "last_point", "series_labels", "undo_label",  # issue 29
                "AnomalyError", "choose_window", "CorruptState", "Decide", "DEFAULT_EMBEDDING", "Embedder",
                "EMBEDDINGS", "InvalidParameter", "InvalidSeries", "knn_outliers", "KnnDetector", "load_detector",
                "NotFitted", "PaaContext", "plot_detection", "publish_detector", "RawWindow", "read_one_series",
                "read_series", "Readings", "ReadOptions", "RecurrentEmbedder", "reset_stream", "score_points",
                "Scored", "scores_frame", "Series", "SeriesTooShort", "StreamScorer", "synthetic_metrics",
                "THRESHOLD", "train_detector", "WindowEncoder"],
    "alerts": ["add_hook", "AlertError", "AlertKeys", "alertmanager_body", "AlertSettings", "backoff_delay",
               "CallableHook", "CeleryTaskHook", "CorruptRecord", "dead_letters", "DeadLetter", "DeadLetterNotFound",
               "Decisions", "Delivered", "Deliverer", "DeliveryError", "DeliveryStats", "disabled_hooks",
               "enable_hook", "forget", "get_alert_settings", "Hook", "HookDisabled", "HookError", "HookNotFound",
               "Incident", "IncidentMachine", "IncidentPolicy", "IncidentSession", "InvalidAlertSetting",
               "JsonLinesHook", "Notification", "observe", "open_incidents", "outbox_status", "register",
               "registered_hooks", "remove_hook", "requeue", "send_test", "shared_hooks", "SharedHook", "sign",
               "tail", "unregister", "verify_signature", "WebhookHook",
               # the on-call's: incidents, evidence, silences, acknowledgements (issue 29)
               "acknowledge", "add_silence", "evidence_text", "expire_silence", "incident", "IncidentNotFound",
               "incidents", "IncidentView", "Matcher", "parse_matcher", "plot_evidence", "Silence", "silences",
               "SilenceNotFound"],
    "workers": ["app", "detection", "jobs", "scoring"],
}


def _modules(folders: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in folders:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path]) -> list[tuple[str, str, list[str], bool]]:
    """``(importer, target module, names, is_from)`` for every import, module level or lazy."""
    out = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                out.append((name, target, [a.name for a in node.names], True))
            elif isinstance(node, ast.Import):
                out.extend((name, a.name, [], False) for a in node.names)
    return out


def test_packages_import_only_downwards_and_never_each_others_privates():
    problems = []
    for importer, target, names, is_from in _imports(_modules()):
        src, dst = importer.split(".")[0], target.split(".")[0]
        if dst not in PACKAGES or dst == src:
            continue
        if dst not in ALLOWED[src]:
            problems.append(f"{importer} imports {target}: {src} may not import {dst}")
        if any(part.startswith("_") for part in target.split(".")[1:]):
            problems.append(f"{importer} imports the private module {target}")
        if is_from and any(n.startswith("_") for n in names):
            problems.append(f"{importer} imports private names {[n for n in names if n.startswith('_')]} "
                            f"from {target}")
    assert not problems, "\n".join(problems)


def test_no_import_circles_between_modules():
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for importer, target, names, is_from in _imports(modules):
        subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules] if is_from else []
        for dst in subs if subs and len(subs) == len(names) else [target, *subs]:
            # A package's __init__ re-exports its modules: importing the package is not a circle by itself.
            if dst in modules and dst != importer and modules[dst].name != "__init__.py":
                edges[importer].add(dst)
    circles = set()
    for start in modules:
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    circles.add(tuple(sorted(path)))
                elif nxt not in path:
                    stack.append((nxt, (*path, nxt)))
    assert not circles, f"import circles: {sorted(circles)}"


def test_other_packages_and_bench_import_only_a_package_s_public_surface():
    """``from recsys import X``, never ``from recsys.serving.client import X``: a package's modules are its own to move.
    ``workers`` is the composer and exports modules (``workers.jobs``) as its surface."""
    problems = []
    for importer, target, _names, _is_from in _imports(_modules((*PACKAGES, "bench"))):
        src, dst = importer.split(".")[0], target.split(".")[0]
        if dst in PACKAGES and dst != src and dst != "workers" and target != dst:
            problems.append(f"{importer} imports {target}: import from {dst} itself")
    assert not problems, "\n".join(problems)


def test_recsys_rooms_keep_their_private_modules():
    """recsys is split into rooms (``data``, ``models``, ``publish``, ``serving``, ``live``): a module whose name
    starts with an underscore is imported only from inside the package that holds it (``recsys.live._fold_in``
    by ``recsys.live.*``), so a room's other modules are all the rest of recsys may use of it."""
    modules = _modules(("recsys",))
    problems = []
    for importer, target, names, is_from in _imports(modules):
        for name in [target, *(f"{target}.{n}" for n in names if is_from)]:
            parts = name.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_") and i), None)
            if name not in modules or private is None:
                continue
            holder = ".".join(parts[:private])
            if importer != holder and not importer.startswith(holder + "."):
                problems.append(f"{importer} imports {name}, private to {holder}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", PACKAGES)
def test_public_surface_is_pinned(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name} is exported but missing"


#: the modules behind the index-backend seam (issue 25, item 2): the interfaces (``vectorstore.IndexBackend``,
#: ``recsys.serving.version_index.VersionIndex``), their implementations and the factories that choose one
INDEX_BACKEND_MODULES = {"vectorstore.store.index.backend", "vectorstore.store.milvus",
                         "vectorstore.store.backends", "recsys.serving.version_index", "recsys.serving._milvus_index",
                         "recsys.serving.index_backends"}
#: the seam's callers: every other module of recsys and workers, and the registry (vectorstore's settings, errors
#: and exports name Milvus as what they are)
INDEX_BACKEND_CALLERS = ("recsys", "workers", "vectorstore.store.registry")
IMPLEMENTATIONS = {"ItemIndex", "InProcessIndex", "MilvusIndex", "MilvusStore", "HnswlibBackend", "MilvusBackend"}


def _backend_words(node: ast.AST) -> list[str]:
    """The identifiers a node names (imports, names, attributes, arguments, definitions)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [*(a.name for a in node.names), getattr(node, "module", None) or ""]
    for kind, attr in ((ast.Name, "id"), (ast.Attribute, "attr"), (ast.arg, "arg"), (ast.keyword, "arg"),
                       (ast.FunctionDef, "name"), (ast.ClassDef, "name")):
        if isinstance(node, kind):
            return [getattr(node, attr) or ""]
    return []


def _keys_and_comparands(node: ast.AST) -> list[ast.AST]:
    """What a node compares, indexes with or looks up: where a test of a backend's name would be."""
    if isinstance(node, ast.Compare):
        found = [node.left, *node.comparators]
        return [*found, *(e for f in found if isinstance(f, ast.Tuple | ast.List | ast.Set) for e in f.elts)]
    if isinstance(node, ast.Subscript):
        return [node.slice]
    if isinstance(node, ast.Dict):
        return [k for k in node.keys if k is not None]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop"):
        return node.args[:1]
    if isinstance(node, ast.MatchValue):
        return [node.value]
    return []


def test_callers_of_the_index_backends_never_ask_which_backend_it_is():
    """Client, writer, follower, publication, registry and workers hold a backend (``vectorstore.IndexBackend``,
    ``model.backend``) and never branch on it: outside the seam's own modules no module of theirs imports or
    names a Milvus module or class (docstrings and messages may say Milvus), tests a backend's name or reads a
    backend's record by its key (``meta["milvus"]``), or asks whether an index is one implementation or another
    (``isinstance(index, ItemIndex)``)."""
    from vectorstore import INDEX_BACKENDS

    callers = {name: path for name, path in _modules().items()
               if name.startswith(INDEX_BACKEND_CALLERS) and name not in INDEX_BACKEND_MODULES}
    assert "recsys.serving.client" in callers and "vectorstore.store.registry.publishing" in callers
    problems = []
    for name, path in callers.items():
        for node in ast.walk(ast.parse(path.read_text())):
            line = f"{name}:{getattr(node, 'lineno', '?')}"
            problems += [f"{line} names {word!r}" for word in _backend_words(node) if "milvus" in word.lower()]
            problems += [f"{line} tests or reads the backend name {key.value!r}"
                         for key in _keys_and_comparands(node)
                         if isinstance(key, ast.Constant) and str(key.value).lower() in INDEX_BACKENDS]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                kinds = node.args[1:]
                named = {getattr(k, "id", getattr(k, "attr", None)) for k in kinds}
                named |= {getattr(e, "id", None) for k in kinds if isinstance(k, ast.Tuple) for e in k.elts}
                problems += [f"{line} asks whether an index is a {kind}" for kind in named & IMPLEMENTATIONS]
    assert not problems, "\n".join(problems)


def test_no_code_names_the_shared_data_by_an_absolute_path():
    """The evaluation data is ``../shared`` beside the repository: a clone elsewhere has no ``/work/shared``."""
    found = []
    for folder in (*PACKAGES, "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(
                        r"/[\w.-]+/(.+/)?shared/", node.value):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]}")
    assert not found, "absolute paths to the shared data (find it as ROOT.parent / 'shared'):\n" + "\n".join(found)
