"""HTTP webhooks: signed JSON bodies, native or Alertmanager v4, and the receiver-side signature check.

Every request is a ``POST`` with these headers:

``Content-Type: application/json``
``Idempotency-Key``     the notification id (``<incident id>:<firing|resolved>``), the same on every retry:
                        receivers deduplicate on it (delivery is at-least-once)
``X-EA-Event``          ``firing`` or ``resolved``
``X-EA-Timestamp``      the send time, integer epoch seconds (on the receiver's clock, see below)
``X-EA-Signature``      ``t=<timestamp>,v2=<hex HMAC-SHA256(secret, signed content)>``: signature scheme 2
``X-Signature-256``     ``sha256=<hex HMAC-SHA256(secret, raw body)>`` (GitHub's scheme): the body only, for
                        tools that speak nothing else; it does not bind the key, the event or the time

**Signature scheme 2** (:data:`SCHEME`) signs, as bytes, ``v2`` ``\n`` timestamp ``\n`` Idempotency-Key
``\n`` X-EA-Event ``\n`` raw body (:func:`signed_content`; header values never hold a line break). A
captured request replayed with another ``Idempotency-Key`` or event, or later than the receiver's
tolerance, fails :func:`verify_signature`; within the tolerance, the same key is a duplicate the receiver
drops. Scheme 1 (``v1``: timestamp and body only) is no longer sent nor accepted. The signature headers
are sent only when a secret is configured.

Answers: 2xx is success; 5xx, 408, 429, timeouts and connection errors are retried, and so is 401 (a
signature refused while a secret is being rotated); 410 disables the hook
(:class:`~alerts.exceptions.HookDisabled`); other 4xx and redirects are permanent failures. **Clocks:** a
401 or 403 whose ``Date`` header shows the receiver's clock more than :data:`CLOCK_STEP_S` seconds from
ours is a timestamp refused for being outside the receiver's window: the hook adopts the receiver's clock
for its timestamps (logged) and sends again at once, freshly signed, so a sender whose clock is ahead or
behind (by 10 minutes, say) delivers instead of dead-lettering.
Credentials in the URL (``https://user:pass@host/...``) are sent as HTTP Basic auth and never logged.
Each consumer thread keeps its connection alive between alerts; when the environment names an HTTP proxy
for the URL (``https_proxy``...), requests go through urllib and the proxy instead.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from vectorstore import redact_url

from .exceptions import DeliveryError, HookDisabled, HookError
from .hooks import Hook
from .notification import Notification

__all__ = ["CLOCK_STEP_S", "SCHEME", "WebhookHook", "alertmanager_body", "sign", "signed_content",
           "verify_signature"]

log = logging.getLogger(__name__)

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end" for firing alerts
#: The signature scheme of ``X-EA-Signature`` (its field name, and the first line of the signed content).
SCHEME = "v2"
#: A receiver's ``Date`` this many seconds from our clock, on a 401/403, is a clock difference to adopt.
CLOCK_STEP_S = 2.0
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a body-less GET: treat a redirect as a misconfiguration.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class WebhookHook(Hook):
    """POSTs each notification as JSON to ``url``.

    Args:
        url: the endpoint (http or https); user info in it becomes Basic auth.
        secret: HMAC key of the signature headers; ``None`` sends unsigned requests.
        format: ``"native"`` (:meth:`Notification.to_dict`) or ``"alertmanager"`` (v4 webhook body).
        timeout: seconds for connect and for the answer; a timeout is retried.
        receiver: the ``receiver`` field of Alertmanager bodies.
        name: the hook's name; by default ``webhook:<host>:<hash of the url>`` (no credentials).
    """

    def __init__(self, url: str, secret: str | None = None, *, format: Literal["native", "alertmanager"] = "native",
                 timeout: float = 5.0, receiver: str = "ea", name: str | None = None) -> None:
        if format not in ("native", "alertmanager"):
            raise ValueError(f"format={format!r} must be 'native' or 'alertmanager'")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url {redact_url(url)!r} must be http(s)://host/...")
        self._auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self._auth = "Basic " + b64encode(f"{user}:{password}".encode()).decode()
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self.url = url
        self._secret = secret.encode() if secret else None
        self.format = format
        self.timeout = timeout
        self.receiver = receiver
        https = parts.scheme == "https"
        self._conn_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        self._host, self._port = parts.hostname, parts.port or (443 if https else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._proxied = bool(urllib.request.getproxies().get(parts.scheme)) and not urllib.request.proxy_bypass(
            parts.hostname)
        self._local = threading.local()
        self._clock_offset = 0.0
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        self.name = name or f"webhook:{parts.hostname}:{parts.port or parts.scheme}:{digest}"

    def __repr__(self) -> str:
        return f"<WebhookHook {self.name} {redact_url(self.url)} format={self.format}>"

    def body(self, notification: Notification) -> bytes:
        """The exact bytes sent (and signed) for ``notification``."""
        data = notification.to_dict() if self.format == "native" else alertmanager_body(notification, self.receiver)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    def headers(self, notification: Notification, body: bytes, now: float | None = None) -> dict[str, str]:
        """The request headers for ``body`` (signed with the current time unless ``now`` is given)."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ea-alerts/1",
            "Idempotency-Key": notification.idempotency_key,
            "X-EA-Event": notification.state,
        }
        if self._auth:
            headers["Authorization"] = self._auth
        if self._secret:
            stamp = time.time() + self._clock_offset if now is None else now
            headers.update(sign(body, self._secret, stamp, idempotency_key=notification.idempotency_key,
                                event=notification.state))
        return headers

    def deliver(self, notification: Notification) -> None:
        """POST the notification; raises ``HookError`` (retry), ``DeliveryError`` or ``HookDisabled``.

        A 401/403 that shows the receiver's clock away from ours is sent again at once on its clock (see the
        module docstring); a 401 after that is retried with backoff, a 403 is not.
        """
        body = self.body(notification)
        status, date = self._send(body, self.headers(notification, body))
        if status in (401, 403) and self._secret and self._adopt_clock(date):
            status, date = self._send(body, self.headers(notification, body))
        if 200 <= status < 300:
            return
        if status == 410:
            raise HookDisabled(f"{self.name}: endpoint answered 410 Gone", status=status)
        if status >= 500 or status in (401, 408, 429):
            raise HookError(f"{self.name}: HTTP {status}", status=status)
        raise DeliveryError(f"{self.name}: HTTP {status} (not retried)", status=status)

    @property
    def clock_offset(self) -> float:
        """Seconds added to our clock for signature timestamps: the receiver's clock minus ours, as learnt
        from its ``Date`` header on a refused signature (0 until then)."""
        return self._clock_offset

    def _adopt_clock(self, date: str | None) -> bool:
        """Take the receiver's clock from its ``Date`` header when it differs from the one we sign with;
        whether it did (then a fresh signature may pass)."""
        try:
            theirs = parsedate_to_datetime(date).timestamp() if date else math.nan
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        offset = theirs - time.time()
        if not math.isfinite(offset) or abs(offset - self._clock_offset) < CLOCK_STEP_S:
            return False
        log.warning("%s: the receiver's clock is %+.0f s from ours (its Date header, on HTTP 401/403): "
                    "signing with its time from now on", self.name, offset)
        self._clock_offset = round(offset)
        return True

    def _send(self, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        return self._post_via_proxy(body, headers) if self._proxied else self._post(body, headers)

    def close(self) -> None:
        """Close this thread's kept-alive connection (one is kept per thread, see ``_post``)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        # A kept-alive connection per thread: no TCP (and TLS) handshake per alert. A server may close an
        # idle connection at any time; a request that fails on a reused connection before any answer is
        # sent again once on a fresh one (safe: the receiver deduplicates on the Idempotency-Key).
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._conn_class(self._host, self._port, timeout=self.timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", self._target, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status, response.getheader("Date")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue
                raise HookError(f"{self.name}: {type(exc).__name__}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, garbage answer
                self.close()
                raise HookError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def _post_via_proxy(self, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        # The environment names an HTTP proxy for this URL: urllib knows how to go through it.
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.status, response.headers.get("Date")
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code, exc.headers.get("Date") if exc.headers else None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
            reason = getattr(exc, "reason", exc)
            raise HookError(f"{self.name}: {type(reason).__name__}: {reason}") from None


def signed_content(timestamp: str, idempotency_key: str, event: str, body: bytes) -> bytes:
    """What signature scheme 2 signs: ``b"v2\\n<timestamp>\\n<Idempotency-Key>\\n<X-EA-Event>\\n" + body``.

    Raises:
        ValueError: a field holds a line break (no HTTP header value can).
    """
    fields = (SCHEME, timestamp, idempotency_key, event)
    if any("\n" in f or "\r" in f for f in fields):
        raise ValueError("signed header values cannot hold a line break")
    return "\n".join(fields).encode() + b"\n" + body


def sign(body: bytes, secret: str | bytes, now: float | None = None, *, idempotency_key: str = "",
         event: str = "") -> dict[str, str]:
    """The signature headers of a request: ``X-EA-Timestamp``, ``X-EA-Signature`` (scheme 2, binding the
    timestamp, ``idempotency_key``, ``event`` and ``body``) and ``X-Signature-256`` (the body alone).

    Args:
        body: the raw request body.
        secret: the shared HMAC key.
        now: the timestamp to sign (default: the current time).
        idempotency_key, event: the ``Idempotency-Key`` and ``X-EA-Event`` headers sent with it.

    Raises:
        ValueError: a header value holds a line break.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    ts = str(int(time.time() if now is None else now))
    plain = hmac.new(key, body, hashlib.sha256).hexdigest()
    stamped = hmac.new(key, signed_content(ts, idempotency_key, event, body), hashlib.sha256).hexdigest()
    return {"X-EA-Timestamp": ts, "X-Signature-256": f"sha256={plain}", "X-EA-Signature": f"t={ts},{SCHEME}={stamped}"}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | bytes,
                     tolerance_s: float | None = 300, *, now: float | None = None) -> bool:
    """Whether a received webhook is authentic and fresh (for receivers). Never raises: anything that is
    not a well-formed, correctly signed request (a ``str`` body, a ``None`` or empty secret, ``None`` or odd
    headers, a malformed signature) gives False.

    Checks ``X-EA-Signature`` (scheme 2: the timestamp, ``Idempotency-Key``, ``X-EA-Event`` and the raw
    ``body``, see :func:`signed_content`) with a constant-time comparison, and, unless ``tolerance_s`` is
    None, that its timestamp is within ``tolerance_s`` seconds of ``now`` on either side (a symmetric window:
    a sender ahead or behind by less passes). A request that passes may still be a duplicate within the
    window: deduplicate on ``Idempotency-Key`` (which the signature covers, so a replay cannot change it).

    Args:
        body: the raw request body, as bytes (not decoded text: pass ``request.body`` / ``get_data()``).
        headers: the request headers, any mapping (names matched case-insensitively).
        secret: the shared secret.
        tolerance_s: seconds of clock difference accepted (None: the timestamp is not checked).
        now: the receiver's time (default: the current time).
    """
    if not isinstance(body, bytes | bytearray | memoryview) or not isinstance(secret, str | bytes) or not secret:
        return False
    h = _header_map(headers)
    if h is None or not _window_ok(tolerance_s, now):
        return False
    fields = _signature_fields(h.get("x-ea-signature", ""))
    ts, given = fields.get("t", ""), fields.get(SCHEME, "")
    key_header, event = h.get("idempotency-key", ""), h.get("x-ea-event", "")
    if not (_TIMESTAMP.fullmatch(ts) and _HEX_DIGEST.fullmatch(given) and key_header and event):
        return False
    if h.get("x-ea-timestamp", ts) != ts:
        return False
    try:
        content = signed_content(ts, key_header, event, bytes(body))
    except ValueError:
        return False
    key = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    expected = hmac.new(key, content, hashlib.sha256).hexdigest()
    authentic = hmac.compare_digest(expected.encode(), given.encode())
    if tolerance_s is None:
        return authentic
    fresh = abs((time.time() if now is None else float(now)) - int(ts)) <= tolerance_s
    return authentic and fresh


def _header_map(headers: object) -> dict[str, str] | None:
    """``headers`` as lower-cased name -> value (bytes decoded as latin-1), or None when they are not a
    mapping of single text values (a repeated signature header is refused, not guessed at)."""
    items = getattr(headers, "items", None)
    if not callable(items):
        return None
    out: dict[str, str] = {}
    try:
        for name, value in items():
            name = name.decode("latin-1") if isinstance(name, bytes) else name
            value = value.decode("latin-1") if isinstance(value, bytes) else value
            if not isinstance(name, str) or not isinstance(value, str) or name.lower() in out:
                return None
            out[name.lower()] = value
    except Exception:  # a mapping whose items() fails: not headers we can trust
        return None
    return out


def _signature_fields(value: str) -> dict[str, str]:
    """``t=...,v2=...`` as a dict; a field given twice empties it (a forged header is not guessed at)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, field = part.strip().partition("=")
        if sep:
            fields[name] = "" if name in fields else field
    return fields


def _window_ok(tolerance_s: object, now: object) -> bool:
    numbers = [v for v in (tolerance_s, now) if v is not None]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) and (
        tolerance_s is None or (isinstance(tolerance_s, int | float) and tolerance_s >= 0))


def alertmanager_body(notification: Notification, receiver: str = "ea") -> dict[str, Any]:
    """An Alertmanager v4 webhook body for ``notification`` (one alert; ``groupKey`` from the incident)."""
    inc = notification.incident
    labels = {"alertname": "EmbeddingAnomaly", inc.kind: inc.key, **inc.labels}
    if inc.model:
        labels["model"] = inc.model
    annotations = {
        "summary": f"anomaly on {inc.kind} {inc.key}: peak score {inc.peak_score:.4g} > {inc.threshold:.4g}",
        "peak_score": repr(inc.peak_score), "peak_at": inc.peak_at, "threshold": repr(inc.threshold),
        "model_version": inc.model_version or "", "incident_id": inc.id,
        "evidence": json.dumps(inc.evidence, separators=(",", ":")),
    }
    group_labels = {k: v for k, v in (p.split("=", 1) for p in inc.group_key.split(",") if "=" in p)}
    return {
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
        "truncatedAlerts": 0,
        "status": notification.state,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": notification.state, "labels": labels, "annotations": annotations,
            "startsAt": inc.start, "endsAt": inc.end or _ZERO_TIME, "generatorURL": "",
            "fingerprint": inc.fingerprint,
        }],
    }
