"""Reading ``EA_*`` environment variables: typed values, checked, with errors that name the variable.

Shared by every package's settings object (:class:`vectorstore.Settings`, :class:`alerts.AlertSettings`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError

__all__ = ["env_choice", "env_directory", "env_float", "env_int", "env_switch", "env_url"]


def _number(env: dict[str, str], name: str, default: float, minimum: float, kind: type, positive: bool = False):
    """``name`` parsed by ``kind`` (int or float): finite, ``>= minimum`` (``> minimum`` if ``positive``)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value) or value < minimum or (positive and value <= minimum):
        raise ConfigurationError(f"{name}={raw.strip()} must be a finite number {'>' if positive else '>='} "
                                 f"{minimum:g}")
    return value


def env_int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    """``name`` as an integer ``>= minimum`` (``default`` when unset).

    Raises:
        ConfigurationError: not an integer, or out of range (the message names the variable).
    """
    return _number(env, name, default, minimum, int)


def env_float(env: dict[str, str], name: str, default: float, minimum: float, *, positive: bool = False) -> float:
    """``name`` as a finite number ``>= minimum`` (``> minimum`` if ``positive``; ``default`` when unset).

    Raises:
        ConfigurationError: not a number, or out of range (the message names the variable).
    """
    return _number(env, name, default, minimum, float, positive)


def env_choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """``name``, one of ``choices`` (``default`` when unset).

    Raises:
        ConfigurationError: another value (the message names the variable and the choices).
    """
    value = (env.get(name) or "").strip() or default
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_switch(env: dict[str, str], name: str) -> bool | None:
    """``name`` as on/off (``1 true yes on`` / ``0 false no off``, any case), or None when unset.

    Raises:
        ConfigurationError: another value (the message names the variable).
    """
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r} must be 1 or 0 (true/false, yes/no, on/off)")


def env_url(env: dict[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme is one of ``schemes``; the error shows it with credentials redacted."""
    value = (env.get(name) or "").strip() or None
    if value is None:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        starts = " or ".join(f"{s}://" for s in schemes)
        raise ConfigurationError(f"{name}={_redacted(value)!r} must be a URL starting with {starts}")
    for one in value.split(";"):  # kombu takes a list of failover URLs separated by ';'
        parts = urlsplit(one.strip())
        try:
            port = parts.port
        except ValueError:  # not a number, or out of 0..65535
            port = -1
        if parts.scheme.lower() not in schemes or port == -1 or (parts.scheme.lower() in ("amqp", "amqps", "pyamqp")
                                                                  and not parts.hostname):
            raise ConfigurationError(f"{name}={_redacted(value)!r} is not a valid URL: it needs a host and a port "
                                     f"number (quote special characters of the user or password with %XX)")
    return value


def _redacted(url: str) -> str:
    """``url`` with everything before the last ``@`` of its authority shown as ``***`` (a password may hold
    ``/`` or ``@``: never show any part of it)."""
    if ";" in url:
        return ";".join(_redacted(one) for one in url.split(";"))
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url if sep else re.sub(r"[^@]*@", "***@", url, count=1)
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


def env_directory(env: dict[str, str], name: str) -> Path | None:
    """An absolute directory path (``~`` expanded), or None when unset; it need not exist yet."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigurationError(f"{name}={raw!r} must be an absolute directory path")
    return path
