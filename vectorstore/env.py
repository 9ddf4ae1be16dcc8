"""Reading ``EA_*`` environment variables: typed values, checked, with errors that name the variable.

Shared by every package's settings object (:class:`vectorstore.Settings`, :class:`alerts.AlertSettings`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .exceptions import ConfigurationError

__all__ = ["env_choice", "env_directory", "env_float", "env_int", "env_url"]


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


def env_url(env: dict[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme is one of ``schemes``; the error shows it with credentials redacted."""
    value = (env.get(name) or "").strip() or None
    if value is None:
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        shown = re.sub(r"//[^@/]*@", "//***@", value)
        starts = " or ".join(f"{s}://" for s in schemes)
        raise ConfigurationError(f"{name}={shown!r} must be a URL starting with {starts}")
    return value


def env_directory(env: dict[str, str], name: str) -> Path | None:
    """An absolute directory path (``~`` expanded), or None when unset; it need not exist yet."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise ConfigurationError(f"{name}={raw!r} must be an absolute directory path")
    return path
