"""Webhooks under attack and under clock skew, through real HTTP receivers and the real outbox.

* **Replay**: a captured request replayed with another ``Idempotency-Key`` (or event, or timestamp) fails
  ``verify_signature``, with or without a tolerance; the README's receiver (verify, then deduplicate on
  the key) processes each notification once, however it is replayed. The documented scheme 2 is what a
  receiver in another language computes.
* **verify_signature never raises**: a ``str`` body, a ``None`` or empty secret, ``None``, a list, bytes or
  broken headers, malformed or repeated signature fields: False, never an exception (hypothesis).
* **Clock skew**: a sender 10 minutes ahead of (or behind) a receiver with a 300 s window delivers on its
  first attempt (it adopts the receiver's ``Date`` clock on the 401 and signs again), nothing dead-lettered;
  a receiver that refuses a signature twice (a secret being rotated) gets the alert on a retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alerts import AlertSettings, Deliverer, IncidentPolicy, WebhookHook, observe, sign, verify_signature
from alerts.keys import AlertKeys
from vectorstore import Settings, connect

#: Quick retries, so that tests of retried deliveries stay short.
RETRY = AlertSettings(max_attempts=8, backoff=0.05, backoff_max=0.1)
SECRET = "s3cret-" + uuid.uuid4().hex


@dataclass
class Receiver:
    """A webhook receiver as the README describes it: verify (300 s window, on its own clock), then
    deduplicate on the ``Idempotency-Key``. ``skew_s`` sets its clock against ours; ``refuse`` answers
    that many signed requests 401 before verifying (a receiver whose secret is being rotated)."""

    skew_s: float = 0.0
    send_date: bool = True
    refuse: int = 0
    requests: list[tuple[bytes, dict[str, str], int]] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    url: str = ""

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        if self.refuse > 0:
            self.refuse -= 1
            status = 401
        elif not verify_signature(body, headers, SECRET, now=time.time() + self.skew_s):
            status = 401
        else:
            status = 200
            if headers["Idempotency-Key"] not in self.processed:
                self.processed.append(headers["Idempotency-Key"])
        self.requests.append((body, headers, status))
        return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = state.handle(body, dict(self.headers.items()))
            self.send_response_only(status)
            if state.send_date:
                self.send_header("Date", formatdate(time.time() + state.skew_s, usegmt=True))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def outbox(settings: Settings):
    alert_settings = settings.with_(key_prefix=f"{settings.key_prefix}wr{uuid.uuid4().hex[:6]}:")
    client = connect(alert_settings)
    yield alert_settings, client
    client.close()


def _fire(alert_settings: Settings, client, key: str = "cpu") -> None:
    observe("m", key, [1, 2], [5.0, 0.0], 1.0, policy=IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0),
            model_version="1", settings=alert_settings, client=client)


def _deliver(alert_settings: Settings, client, url: str):
    return Deliverer([WebhookHook(url, SECRET)], settings=alert_settings, client=client, alert_settings=RETRY).drain(20)


def _send_again(url: str, body: bytes, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={k: v for k, v in headers.items() if k.lower() != "content-length"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# -- replay -------------------------------------------------------------------------------------------------
def test_a_replay_with_a_new_idempotency_key_is_refused(receiver: Receiver, outbox) -> None:
    alert_settings, client = outbox
    _fire(alert_settings, client)
    stats = _deliver(alert_settings, client, receiver.url)
    assert stats.delivered == 2 and len(receiver.processed) == 2
    for body, headers, status in list(receiver.requests):
        assert status == 200 and verify_signature(body, headers, SECRET)
        for name, forged in (("Idempotency-Key", f"replay-{uuid.uuid4().hex}"), ("X-EA-Event", "resolved-x"),
                             ("X-EA-Timestamp", str(int(headers["X-EA-Timestamp"]) + 1))):
            replayed = {**headers, name: forged}
            assert not verify_signature(body, replayed, SECRET), name
            assert not verify_signature(body, replayed, SECRET, tolerance_s=None), name
            assert _send_again(receiver.url, body, replayed) == 401
        assert _send_again(receiver.url, body, headers) == 200  # the same request again: a duplicate...
    assert len(receiver.processed) == 2  # ...which the receiver drops: each notification processed once
    # Beyond the window, on either side, the original fails too.
    body, headers, _ = receiver.requests[0]
    assert not verify_signature(body, headers, SECRET, now=time.time() + 302)
    assert not verify_signature(body, headers, SECRET, now=time.time() - 302)


def test_the_documented_scheme_is_what_a_receiver_computes() -> None:
    body = b'{"state":"firing"}'
    headers = sign(body, SECRET, 1_700_000_000, idempotency_key="inc_1:firing", event="firing")
    content = b"v2\n1700000000\ninc_1:firing\nfiring\n" + body
    assert headers["X-EA-Signature"] == "t=1700000000,v2=" + hmac.new(SECRET.encode(), content,
                                                                      hashlib.sha256).hexdigest()
    assert headers["X-Signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    full = {**headers, "Idempotency-Key": "inc_1:firing", "X-EA-Event": "firing"}
    assert verify_signature(body, full, SECRET, now=1_700_000_100)
    # The old scheme (timestamp and body only) is not accepted.
    v1 = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert not verify_signature(body, {**full, "X-EA-Signature": f"t=1700000000,v1={v1}"}, SECRET,
                                now=1_700_000_100)


# -- never raises -----------------------------------------------------------------------------------------
def _good() -> tuple[bytes, dict[str, str]]:
    body = b"{}"
    headers = sign(body, SECRET, time.time(), idempotency_key="k:firing", event="firing")
    return body, {**headers, "Idempotency-Key": "k:firing", "X-EA-Event": "firing"}


BAD_CALLS = {
    "str body": lambda b, h: verify_signature(b.decode(), h, SECRET),
    "None body": lambda b, h: verify_signature(None, h, SECRET),
    "None secret": lambda b, h: verify_signature(b, h, None),
    "empty secret": lambda b, h: verify_signature(b, h, ""),
    "int secret": lambda b, h: verify_signature(b, h, 42),
    "None headers": lambda b, h: verify_signature(b, None, SECRET),
    "list headers": lambda b, h: verify_signature(b, list(h.items()), SECRET),
    "str headers": lambda b, h: verify_signature(b, "X-EA-Signature: t=1", SECRET),
    "None header value": lambda b, h: verify_signature(b, {**h, "X-EA-Event": None}, SECRET),
    "list header value": lambda b, h: verify_signature(b, {**h, "Idempotency-Key": ["a", "b"]}, SECRET),
    "int header name": lambda b, h: verify_signature(b, {**h, 7: "x"}, SECRET),
    "repeated header, other case": lambda b, h: verify_signature(b, {**h, "x-ea-signature": "t=1,v2=00"}, SECRET),
    "surrogate in a header": lambda b, h: verify_signature(b, {**h, "X-EA-Signature": "t=1,v2=\ud800"}, SECRET),
    "surrogate in the secret": lambda b, h: verify_signature(b, h, "\ud800"),
    "non-ASCII digits": lambda b, h: verify_signature(b, {**h, "X-EA-Timestamp": "١٢٣",
                                                          "X-EA-Signature": "t=١٢٣,v2=" + "0" * 64}, SECRET),
    "huge timestamp": lambda b, h: verify_signature(b, {**h, "X-EA-Signature": "t=" + "9" * 5000 + ",v2=0"}, SECRET),
    "repeated field": lambda b, h: verify_signature(b, {**h, "X-EA-Signature": h["X-EA-Signature"] + ",v2=00"},
                                                    SECRET),
    "line break in the key": lambda b, h: verify_signature(b, {**h, "Idempotency-Key": "k\nfiring"}, SECRET),
    "NaN tolerance": lambda b, h: verify_signature(b, h, SECRET, tolerance_s=float("nan")),
    "negative tolerance": lambda b, h: verify_signature(b, h, SECRET, tolerance_s=-1),
    "str now": lambda b, h: verify_signature(b, h, SECRET, now="now"),
    "mapping whose items() fails": lambda b, h: verify_signature(b, _Broken(), SECRET),
}


class _Broken(dict):
    def items(self):
        raise RuntimeError("broken mapping")


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_verify_signature_returns_false_and_never_raises(case: str) -> None:
    body, headers = _good()
    assert verify_signature(body, headers, SECRET) is True
    assert verify_signature(bytearray(body), {k.encode(): v.encode() for k, v in headers.items()}, SECRET.encode())
    assert BAD_CALLS[case](body, headers) is False


_anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                      st.binary(max_size=40), st.lists(st.text(max_size=5), max_size=3))


@hsettings(max_examples=300, deadline=None, database=None)
@given(body=_anything, secret=_anything, tolerance=_anything, now=_anything,
       headers=st.one_of(_anything, st.dictionaries(st.one_of(st.text(max_size=20), st.binary(max_size=20),
                                                               st.sampled_from(["X-EA-Signature", "X-EA-Timestamp",
                                                                                "Idempotency-Key", "X-EA-Event"])),
                                                     _anything, max_size=6)))
def test_verify_signature_never_raises_on_anything(body, secret, tolerance, now, headers) -> None:
    assert verify_signature(body, headers, secret, tolerance, now=now) in (True, False)


# -- clock skew ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("skew_s", [-600, 600])
def test_a_sender_ten_minutes_off_the_receivers_clock_delivers_at_once(skew_s: float, receiver: Receiver,
                                                                       outbox) -> None:
    receiver.skew_s = skew_s  # the receiver's clock against ours: ours is 10 minutes ahead (or behind)
    alert_settings, client = outbox
    _fire(alert_settings, client)
    hook = WebhookHook(receiver.url, SECRET)
    stats = Deliverer([hook], settings=alert_settings, client=client, alert_settings=RETRY).drain(20)
    assert stats.dead == 0 and stats.delivered == 2 and len(receiver.processed) == 2, stats
    assert client.xlen(AlertKeys(alert_settings.key_prefix).dead) == 0
    assert [status for *_, status in receiver.requests] == [401, 200, 200]  # one refusal, then its clock
    assert abs(hook.clock_offset - skew_s) <= CLOCK_TOLERANCE


CLOCK_TOLERANCE = 2


def test_a_refused_signature_is_retried_not_dead_lettered(receiver: Receiver, outbox) -> None:
    receiver.refuse = 2  # a receiver that refuses the signature twice (its secret being rotated)
    alert_settings, client = outbox
    _fire(alert_settings, client)
    stats = _deliver(alert_settings, client, receiver.url)
    assert stats.dead == 0 and len(receiver.processed) == 2, stats
    assert [status for *_, status in receiver.requests][:2] == [401, 401]


def test_a_clock_within_the_window_is_not_touched(receiver: Receiver, outbox) -> None:
    receiver.skew_s = 120
    alert_settings, client = outbox
    _fire(alert_settings, client)
    hook = WebhookHook(receiver.url, SECRET)
    Deliverer([hook], settings=alert_settings, client=client, alert_settings=RETRY).drain(20)
    assert [status for *_, status in receiver.requests] == [200, 200] and hook.clock_offset == 0
    assert json.loads(receiver.requests[0][0])["state"] == "firing"
