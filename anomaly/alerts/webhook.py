"""HTTP webhooks: signed JSON bodies, native or Alertmanager v4, and the receiver-side signature check.

Every request is a ``POST`` with these headers:

``Content-Type: application/json``
``Idempotency-Key``     the notification id (``<incident id>:<firing|resolved>``), the same on every retry:
                        receivers deduplicate on it (delivery is at-least-once)
``X-EA-Event``          ``firing`` or ``resolved``
``X-EA-Timestamp``      the send time, integer epoch seconds
``X-Signature-256``     ``sha256=<hex HMAC-SHA256(secret, raw body)>`` (GitHub's scheme)
``X-EA-Signature``      ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>``: binds the
                        timestamp, so a captured request cannot be replayed later than ``tolerance_s``

The signature headers are sent only when a secret is configured. :func:`verify_signature` checks both.

Answers: 2xx is success; 5xx, 408, 429, timeouts and connection errors are retried; 410 disables the
hook (:class:`~anomaly.exceptions.HookDisabled`); other 4xx and redirects are permanent failures.
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
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from typing import Any, Literal

from vectorstore.connection import redact_url

from ..exceptions import DeliveryError, HookDisabled, HookError
from .hooks import Hook
from .incidents import Notification

__all__ = ["WebhookHook", "alertmanager_body", "sign", "verify_signature"]

log = logging.getLogger(__name__)

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end" for firing alerts


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
            headers.update(sign(body, self._secret, now))
        return headers

    def deliver(self, notification: Notification) -> None:
        """POST the notification; raises ``HookError`` (retry), ``DeliveryError`` or ``HookDisabled``."""
        body = self.body(notification)
        headers = self.headers(notification, body)
        status = self._post_via_proxy(body, headers) if self._proxied else self._post(body, headers)
        if 200 <= status < 300:
            return
        if status == 410:
            raise HookDisabled(f"{self.name}: endpoint answered 410 Gone", status=status)
        if status >= 500 or status in (408, 429):
            raise HookError(f"{self.name}: HTTP {status}", status=status)
        raise DeliveryError(f"{self.name}: HTTP {status} (not retried)", status=status)

    def close(self) -> None:
        """Close this thread's kept-alive connection (one is kept per thread, see ``_post``)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
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
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if reused and attempt == 0:
                    continue
                raise HookError(f"{self.name}: {type(exc).__name__}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, garbage answer
                self.close()
                raise HookError(f"{self.name}: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    def _post_via_proxy(self, body: bytes, headers: dict[str, str]) -> int:
        # The environment names an HTTP proxy for this URL: urllib knows how to go through it.
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
            reason = getattr(exc, "reason", exc)
            raise HookError(f"{self.name}: {type(reason).__name__}: {reason}") from None


def sign(body: bytes, secret: str | bytes, now: float | None = None) -> dict[str, str]:
    """The signature headers for ``body``: ``X-EA-Timestamp``, ``X-Signature-256``, ``X-EA-Signature``."""
    key = secret.encode() if isinstance(secret, str) else secret
    ts = str(int(time.time() if now is None else now))
    plain = hmac.new(key, body, hashlib.sha256).hexdigest()
    stamped = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-EA-Timestamp": ts, "X-Signature-256": f"sha256={plain}", "X-EA-Signature": f"t={ts},v1={stamped}"}


def verify_signature(body: bytes, headers: Mapping[str, str], secret: str | bytes,
                     tolerance_s: float | None = 300, *, now: float | None = None) -> bool:
    """Whether a received webhook is authentic (for receivers).

    Checks ``X-Signature-256`` against the raw ``body``; unless ``tolerance_s`` is ``None``, also requires
    ``X-EA-Signature`` (which signs the timestamp with the body) to match and its timestamp to be within
    ``tolerance_s`` seconds of ``now``: a replayed old request fails. All comparisons are constant-time.
    ``headers`` may be any mapping (names are matched case-insensitively). Never raises on bad input.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected.encode(), h.get("x-signature-256", "").encode())
    if tolerance_s is None:
        return ok
    fields = dict(p.split("=", 1) for p in h.get("x-ea-signature", "").split(",") if "=" in p)
    ts, given = fields.get("t", ""), fields.get("v1", "")
    if not ts.isdigit() or ts != h.get("x-ea-timestamp", ts):
        return False
    stamped = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs((time.time() if now is None else now) - int(ts)) <= tolerance_s
    return hmac.compare_digest(stamped.encode(), given.encode()) and ok and fresh


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
