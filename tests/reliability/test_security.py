"""Security: what the service refuses to trust, and what it refuses to leak.

* No code path unpickles data (static check over the package sources), model state is loaded with
  ``torch.load(weights_only=True)``, and a pickled Celery message carrying a payload is never executed.
* Redis with a password and an ACL user, and Redis over TLS (``rediss://`` with a CA made by the test with
  the ``openssl`` CLI), work for the registry, the serving client and a Celery worker *process*; the ACL
  really confines the service's user to its key prefix.
* Credentials never appear in logs, error messages or CLI output (wrong password, stopped server).
* Signed versions: a client with ``EA_SIGNING_KEY`` refuses to switch to an unsigned or tampered version.
* Webhooks: secrets and basic-auth passwords are never logged or stored; signatures are compared in
  constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from _reliability import FAST_NODE2VEC, ROOT, copy_version, deployment_for, redis_answers, wait_for
from click.testing import CliRunner
from kombu import Connection

from recsys import RecommendationClient
from recsys.exceptions import ModelUnavailable
from recsys.training import train_and_publish
from vectorstore import (
    ModelRegistry,
    RedisAuthFailed,
    RedisUnavailable,
    Settings,
    SignatureError,
    find_redis_server,
    start_redis_server,
)
from vectorstore.platform.embedded import RedisProcess
from workers.app import app
from workers.cli import main as cli
from workers.jobs import JobHandle, submit

PACKAGES = ("vectorstore", "recsys", "anomaly", "workers")


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


# -- nothing is unpickled -------------------------------------------------------------------------------
def test_no_code_path_unpickles_data() -> None:
    """Static: no pickle/dill/joblib/shelve loads, no ``np.load(allow_pickle=True)``, no pickle import."""
    offenders = []
    forbidden_calls = {"pickle.load", "pickle.loads", "cPickle.loads", "dill.load", "dill.loads", "joblib.load",
                       "shelve.open", "pickle.Unpickler", "marshal.loads", "cloudpickle.loads"}
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in {"pickle", "cPickle", "dill", "cloudpickle", "shelve"} for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports a pickle module")
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in forbidden_calls:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
                if name.endswith(("np.load", "numpy.load")) and any(
                        k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                        for k in node.keywords):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} np.load with allow_pickle")
    assert not offenders, offenders


def test_model_state_is_loaded_with_weights_only() -> None:
    """Static: every ``torch.load`` passes ``weights_only=True`` (no arbitrary objects from Redis)."""
    calls, bad = 0, []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func).endswith("torch.load"):
                calls += 1
                ok = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                         for k in node.keywords)
                if not ok:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls >= 1, "no torch.load found: the check looks in the wrong place"
    assert not bad, f"torch.load without weights_only=True at {bad}"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_message_with_a_payload_is_never_executed(celery_worker, tmp_path: Path, settings: Settings) -> None:
    marker = tmp_path / "pwned"
    task_id = str(uuid.uuid4())
    body = pickle.dumps([[_Payload(marker)], {}, {}])
    assert not marker.exists()
    with Connection(app.conf.broker_url, transport_options=app.conf.broker_transport_options) as conn:
        conn.Producer().publish(
            body, routing_key="score", exchange="", content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"lang": "py", "task": "ea.score_series", "id": task_id, "root_id": task_id, "parent_id": None,
                     "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test"}, declare=[])
    # A JSON job on the same queue after it: once it has run, the pickled one has been seen and refused.
    follow = submit("ea.train_selfcheck", queue="score", model=f"m{uuid.uuid4().hex[:8]}", items=10, dim=2, steps=1)
    follow.wait(timeout=120)
    assert not marker.exists(), "a pickled message was deserialised: its payload ran"
    assert JobHandle(task_id).state == "PENDING"
    assert redis.Redis.from_url(settings.redis_url).llen(f"{settings.key_prefix}celery:score") == 0


# -- Redis with a password and an ACL user --------------------------------------------------------------
ADMIN_PW = "adm1n-" + uuid.uuid4().hex[:12]
USER_PW = "us3r-" + uuid.uuid4().hex[:12]


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[RedisProcess, str]]:
    """A redis-server with ``requirepass`` and an ACL user ``ea`` confined to the ``rel*`` key prefix."""
    server = start_redis_server(tmp_path / "acl", extra_args=["--requirepass", ADMIN_PW])
    try:
        admin = redis.Redis(port=server.port, password=ADMIN_PW)
        admin.acl_setuser("ea", enabled=True, passwords=[f"+{USER_PW}"], keys=["rel*"], channels=["*"],
                          commands=["+@all", "-@dangerous", "+info", "+client"])
        admin.set("secret:other-team", "not yours")
        yield server, f"redis://ea:{USER_PW}@127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def _round_trip(url: str, tmp: Path, interactions_csv: str) -> None:
    """Registry, serving client and a Celery job through a worker *process*, all on ``url``."""
    deployment = deployment_for(url, tmp)
    registry = deployment.registry
    trained = train_and_publish(interactions_csv, name="shop", algorithm="node2vec", params=FAST_NODE2VEC,
                                registry=registry)
    with RecommendationClient(settings=deployment.settings, model="shop", refresh_interval=0.5) as client:
        assert client.recommend("u0", k=3).model_version == trained.version
        worker = deployment.start_worker("secure", queues="train,score")
        try:
            out = deployment.send("ea.train_selfcheck", model="selfcheck", items=200, dim=8, steps=2).get(timeout=120)
            assert registry.active_version("selfcheck") == out["version"]
            second = copy_version(registry, "shop", "shop")
            wait_for(lambda: client.model_version == second, 30, what="the client to switch over the secured Redis")
            assert client.recommend("u0", k=3).model_version == second
        finally:
            worker.stop()
    log = worker.output()
    for secret in (ADMIN_PW, USER_PW):
        assert secret not in log, "a password appears in the worker's log"


def test_password_and_acl_user_work_for_registry_client_and_celery(acl_redis, tmp_path, interactions_csv) -> None:
    server, url = acl_redis
    _round_trip(url, tmp_path, interactions_csv)
    user = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.get("secret:other-team")  # the ACL confines the service to its prefix
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.flushall()
    assert not redis_answers(f"redis://127.0.0.1:{server.port}/0")  # no anonymous access


def _assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"credential leaked in: {text[:300]}"


def test_credentials_never_appear_in_errors_logs_or_cli_output(acl_redis, tmp_path, caplog, interactions_csv) -> None:
    server, url = acl_redis
    wrong = f"redis://ea:wr0ng-{USER_PW}@127.0.0.1:{server.port}/0"
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    settings = Settings(redis_url=wrong, key_prefix="relx:", data_dir=tmp_path, socket_timeout=2.0)
    with pytest.raises(RedisAuthFailed) as err:  # told apart from "did not answer" (issue 18, item 6)
        ModelRegistry(settings).active_version("shop")
    seen += [str(err.value), repr(err.value)]
    with pytest.raises(ModelUnavailable) as err2:
        RecommendationClient(settings=settings, model="shop")
    seen += [str(err2.value), repr(err2.value)]
    runner = CliRunner()
    for env_url in (wrong, url):
        out = runner.invoke(cli, ["models"], env={"EA_REDIS_URL": env_url, "EA_KEY_PREFIX": "relx:"})
        seen.append(out.output)
        if env_url == wrong:
            assert out.exit_code == 2 and "error:" in out.output
    out = runner.invoke(cli, ["version"], env={"EA_REDIS_URL": url})
    assert "***" in out.output
    seen.append(out.output)
    server.stop()  # and a stopped server
    wait_for(lambda: not redis_answers(f"redis://127.0.0.1:{server.port}"), 15, what="Redis to stop")
    for bad_url in (url, wrong):
        with pytest.raises(RedisUnavailable) as err3:
            submit("ea.train_selfcheck", settings=Settings(redis_url=bad_url, key_prefix="relx:", data_dir=tmp_path))
        seen += [str(err3.value)]
        out = subprocess.run([sys.executable, "-c", "from workers.cli import main; main()", "-vv", "models"], cwd=ROOT,
                             env={**os.environ, "EA_REDIS_URL": bad_url, "EA_KEY_PREFIX": "relx:"},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        seen += [out.stdout, out.stderr]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    _assert_no_secret(seen, USER_PW, ADMIN_PW)


# -- TLS ------------------------------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server listening on TLS only, with a certificate signed by a CA made here."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed: cannot make a test certificate")
    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=ea-test-ca", cwd=certs)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=certs)
    (certs / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=certs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
         "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ca = certs / "ca.crt"
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    try:
        if proc.poll() is not None:
            pytest.skip("this redis-server was built without TLS support")
        wait_for(lambda: redis_answers(url) or proc.poll() is not None, 30, what="the TLS redis-server")
        if proc.poll() is not None:
            pytest.skip("this redis-server was built without TLS support")
        yield url, ca
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_tls_works_for_registry_client_and_celery(tls_redis, tmp_path, interactions_csv) -> None:
    url, ca = tls_redis
    port = url.split(":")[2].split("/")[0]
    assert not redis_answers(f"redis://127.0.0.1:{port}/0"), "the server also answers in clear text"
    # A certificate the client does not trust is refused.
    with pytest.raises(RedisUnavailable):
        untrusting = Settings(redis_url=f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required", key_prefix="relt:",
                              data_dir=tmp_path, socket_timeout=3.0)
        ModelRegistry(untrusting).active_version("shop")
    _round_trip(url, tmp_path, interactions_csv)


# -- signed versions ------------------------------------------------------------------------------------
def test_signing_key_client_refuses_unsigned_or_tampered_versions(trained_model, model_name, settings) -> None:
    key = ("k3y-" + uuid.uuid4().hex).encode()
    plain = ModelRegistry(settings)
    signed = ModelRegistry(settings.with_(signing_key=key))
    v1 = copy_version(signed, trained_model, model_name, reader=plain)
    client = RecommendationClient(settings=settings.with_(signing_key=key), model=model_name, listen=False,
                                  refresh_interval=0)
    try:
        assert client.model_version == v1
        v2 = copy_version(plain, trained_model, model_name)  # unsigned, but newer: it becomes active
        assert plain.active_version(model_name) == v2
        assert client.refresh() is False and client.model_version == v1
        with pytest.raises(SignatureError, match="unsigned"):
            signed.load(model_name, v2)
        v3 = copy_version(signed, trained_model, model_name, reader=plain)
        manifest_key = signed.keys.manifest(model_name, v3)
        manifest = json.loads(signed.client.get(manifest_key))
        manifest["meta"]["algorithm"] = "tampered"
        signed.client.set(manifest_key, json.dumps(manifest))
        assert client.refresh() is False and client.model_version == v1
        with pytest.raises(SignatureError, match="does not verify"):
            signed.manifest(model_name, v3)
        assert client.recommend("u0", k=3).model_version == v1
        # A fresh client with the key will not start on a tampered active version.
        with pytest.raises(ModelUnavailable, match="signature"):
            RecommendationClient(settings=settings.with_(signing_key=key), model=model_name)
        # Nor with a different key (a forged signature).
        with pytest.raises(ModelUnavailable):
            RecommendationClient(settings=settings.with_(signing_key=b"other"), model=model_name)
    finally:
        client.close()
    assert key.decode() not in repr(settings.with_(signing_key=key))


# -- webhooks -------------------------------------------------------------------------------------------
def test_webhook_signatures_use_constant_time_comparison() -> None:
    tree = ast.parse((ROOT / "alerts" / "webhook.py").read_text())
    verify = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "verify_signature")
    calls = [_dotted(n.func) for n in ast.walk(verify) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    # No signature compared with == / != (a timing oracle).
    for node in ast.walk(verify):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            text = ast.unparse(node).lower()
            assert "sig" not in text and "digest" not in text and "expected" not in text, text


def test_webhook_secret_and_password_are_never_logged(settings, caplog) -> None:
    from alerts import Deliverer, IncidentPolicy, WebhookHook, observe
    from vectorstore import connect

    secret = "whs3cret-" + uuid.uuid4().hex
    password = "bas1cpw-" + uuid.uuid4().hex

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500 if "first" not in self.path else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    alert_settings = settings.with_(key_prefix=f"{settings.key_prefix}wh{uuid.uuid4().hex[:6]}:")
    client = connect(alert_settings)
    caplog.set_level(logging.DEBUG)
    try:
        port = server.server_address[1]
        hooks = [WebhookHook(f"http://ops:{password}@127.0.0.1:{port}/hook", secret),
                 WebhookHook(f"http://ops:{password}@127.0.0.1:{port}/first", secret, name="first"),
                 WebhookHook(f"http://ops:{password}@127.0.0.1:1/refused", secret, name="refused")]
        observe("m", "cpu", [1, 2], [5.0, 0.0], 1.0, model_version="1", settings=alert_settings, client=client,
                policy=IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0))
        stats = Deliverer(hooks, settings=alert_settings, client=client, max_attempts=2, backoff=0.01,
                          backoff_max=0.02).drain(20)
        assert stats.dead >= 1  # failures happened, and were logged
        texts = [caplog.text] + [repr(h) for h in hooks]
        for key in client.scan_iter(f"{alert_settings.key_prefix}*"):
            kind = client.type(key)
            if kind == b"stream":
                texts += [repr(e) for e in client.xrange(key)]
            elif kind == b"hash":
                texts.append(repr(client.hgetall(key)))
            elif kind == b"string":
                texts.append(repr(client.get(key)))
        _assert_no_secret(texts, secret, password)
    finally:
        server.shutdown()
        server.server_close()
        client.close()
