"""What ``ea`` prints instead of a traceback: one line per failure, naming what to do about it.

:func:`one_line` turns an exception raised by a command into ``error: <Type>: <message>`` (or ``None`` when
it is a bug, which keeps its traceback): the service's typed errors, an unreachable or refusing Redis, a
missing optional part (the ``train`` extra), a model that does not exist (the message lists those that do).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click
import redis
from kombu.exceptions import OperationalError

from vectorstore import ModelNotFound, VectorStoreError, get_settings, redact_url

from .exceptions import WorkerError

__all__ = ["EXTRA_MODULES", "one_line"]

#: Top-level modules that only the ``train`` extra installs.
EXTRA_MODULES = frozenset({"torch", "torch_geometric", "gensim", "node2vec", "numba", "pyarrow", "matplotlib"})
#: What to do instead, when the command line asked for what needs the module.
_INSTEAD = {"torch": ("--embedding", "use the default embedding (drop --embedding, or --embedding raw+paa)"),
            "matplotlib": ("--plot", "drop --plot")}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _service_errors() -> tuple[type[BaseException], ...]:
    """The typed errors reported as one line: the serving layer's, the job API's, and (without importing
    them: a raised one is already loaded) those of :mod:`recsys` and :mod:`anomaly`, e.g. ModelUnavailable."""
    errors: list[type[BaseException]] = [VectorStoreError, WorkerError, ValueError, LookupError, OSError]
    for module, name in (("recsys.exceptions", "RecsysError"), ("anomaly.exceptions", "AnomalyError")):
        loaded = sys.modules.get(module)
        if loaded is not None:
            errors.append(getattr(loaded, name))
    return tuple(errors)


def _where() -> str:
    try:
        url = get_settings().redis_url
    except ValueError:
        return "Redis"
    return f"Redis at {redact_url(url)}" if url else "the embedded Redis"


def _missing_extra(exc: ModuleNotFoundError, ctx: click.Context) -> str:
    module = (exc.name or "").split(".")[0]
    option, instead = _INSTEAD.get(module, ("", ""))
    words = [*sys.argv, *ctx.args]
    hint = f"; or {instead}" if option and any(w == option or w.startswith(f"{option}=") for w in words) else ""
    return (f"MissingExtra: {module} is not installed: this needs the 'train' extra "
            f"(pip install -c constraints.txt 'embedding-analytics[train]'){hint}")


def _published_models() -> str:
    try:
        from vectorstore import ModelRegistry

        names = ModelRegistry().models()
    except Exception:  # the hint is a courtesy: never let it hide the error itself
        return ""
    return f"; published models: {', '.join(names)}" if names else "; no model is published yet"


def one_line(exc: Exception, ctx: click.Context) -> str | None:
    """The one-line message for ``exc`` raised under ``ctx``, or ``None`` if it should keep its traceback."""
    if isinstance(exc, click.ClickException):
        return None
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRA_MODULES:
        return f"error: {_missing_extra(exc, ctx)}"
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return f"error: RedisUnavailable: {_where()} refused the credentials ({type(exc).__name__}: {exc})"
    if isinstance(exc, redis.exceptions.OutOfMemoryError | redis.exceptions.ReadOnlyError):
        return f"error: RedisUnavailable: {_where()} refused to write ({type(exc).__name__}: {exc})"
    if isinstance(exc, redis.RedisError | OperationalError) and not isinstance(exc, redis.ResponseError):
        return (f"error: RedisUnavailable: {_where()} did not answer ({type(exc).__name__}: {exc}); "
                "is it running, and is EA_REDIS_URL right?")
    if not isinstance(exc, _service_errors()):
        return None
    extra = _published_models() if any(isinstance(e, ModelNotFound) for e in _causes(exc)) else ""
    return f"error: {type(exc).__name__}: {exc}{extra}"
