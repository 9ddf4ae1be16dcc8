"""The shape of the code: who may import whom, no import circles, no private names across packages, and
each package's public surface pinned (a change to it is a decision, made here)."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vectorstore", "recsys", "anomaly", "alerts", "workers")
#: package -> the other packages it may import (workers composes; the middle three never meet).
ALLOWED = {"vectorstore": set(), "recsys": {"vectorstore"}, "anomaly": {"vectorstore"}, "alerts": {"vectorstore"},
           "workers": {"vectorstore", "recsys", "anomaly", "alerts"}}

PUBLIC = {
    "vectorstore": ["ChecksumError", "ConfigurationError", "CorruptManifest", "CorruptRow", "EmbeddedRedis",
                    "EmbeddedRedisError", "InputNotAllowed",
                    "IntegrityError", "InvalidModelData", "ItemIndex", "MilvusRefused", "MilvusUnavailable",
                    "ModelNotFound", "ModelRegistry",
                    "ModelVersion", "RedisAuthFailed", "RedisFull", "RedisRefused", "RedisUnavailable", "RowSeal",
                    "SPACES", "Settings", "SignatureError", "VectorStoreError",
                    "VersionInfo", "VersionNotFound", "connect", "get_settings", "redact_url", "resolve_redis_url",
                    "start_redis_server"],
    "recsys": ["GraphEmbeddings", "GraphModel", "Interactions", "InvalidFilter", "InvalidInteractions",
               "InvalidParameter", "InvalidRequest", "LightGCN", "ModelUnavailable", "Node2Vec", "ProgressCallback",
               "RecommendationClient", "Recommendations", "RecsysError", "SimilarUsers",
               "CatalogueWriter", "InvalidDelta", "TrainingError", "UnknownItem",
               "UnknownUser", "UnsupportedDelta", "VersionGone", "make_model", "ranking_metrics", "top_k"],
    "anomaly": ["AnomalyError", "CorruptState", "DEFAULT_EMBEDDING", "DetectResult", "EMBEDDINGS", "Embedder",
                "InvalidParameter", "InvalidSeries", "KnnDetector", "NotFitted", "PaaContext", "RawWindow",
                "ReadOptions", "RecurrentEmbedder", "Scored", "Series", "SeriesTooShort", "StreamScorer", "THRESHOLD",
                "WindowEncoder", "choose_window", "detect_file", "knn_outliers", "read_one_series", "read_series"],
    "alerts": ["AlertError", "AlertSettings", "CallableHook", "CeleryTaskHook", "CorruptRecord", "DeadLetter",
               "DeadLetterNotFound",
               "Delivered", "Deliverer", "DeliveryError", "DeliveryStats", "Hook", "HookDisabled", "HookError",
               "HookNotFound", "Incident", "IncidentPolicy", "InvalidAlertSetting", "JsonLinesHook", "Notification",
               "SharedHook", "WebhookHook", "add_hook", "alertmanager_body", "backoff_delay", "dead_letters",
               "disabled_hooks", "enable_hook", "forget", "get_alert_settings", "observe", "open_incidents",
               "outbox_status", "register", "registered_hooks", "remove_hook", "requeue", "send_test",
               "shared_hooks", "sign", "tail", "unregister", "verify_signature"],
    "workers": ["app", "jobs", "scoring"],
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
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


@pytest.mark.parametrize("package", PACKAGES)
def test_public_surface_is_pinned(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name} is exported but missing"
