"""Local S3 servers for the tests, on loopback only: moto, and LocalStack where it can run.

``moto_server()`` starts moto's ThreadedMotoServer on 127.0.0.1 (an ephemeral port)
in this process. ``localstack_server()`` starts LocalStack (S3 only) in a child
process with ``GATEWAY_SERVER=hypercorn`` bound to 127.0.0.1: it needs Python 3.13
and ``localstack-core[runtime]``; the interpreter is ``$COWDB_LOCALSTACK_PYTHON``
(``.ci/run`` makes that venv; localstack-core 2026.3.0 needs cbor2 < 5.7 and
pyopenssl < 24.3 beside it). Each returns a ``Server`` or raises ``Unavailable``
with the reason, which the tests show when they fall back or skip.
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass


class Unavailable(Exception):
    pass


@dataclass
class Server:
    name: str
    endpoint: str
    stop: object

    def new_bucket(self) -> str:
        bucket = f"cowdb-{uuid.uuid4().hex[:12]}"
        req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=10).close()
        return bucket

    def options(self) -> dict:
        return {"endpoint": self.endpoint, "access_key_id": "test",
                "secret_access_key": "test", "region": "us-east-1"}

    def url(self, bucket: str, prefix: str = "db") -> str:
        return f"s3://{bucket}/{prefix}"


def moto_server() -> Server:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise Unavailable(f"moto is not installed ({e}); pip install 'moto[server]'") from e
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    return Server("moto", f"http://{host}:{port}", srv.stop)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localstack_server(timeout: float = 90.0) -> Server:
    python = os.environ.get("COWDB_LOCALSTACK_PYTHON")
    if not python or not os.path.exists(python):
        raise Unavailable("LocalStack needs Python 3.13 with localstack-core[runtime]; set "
                          "COWDB_LOCALSTACK_PYTHON to that interpreter")
    port = _free_port()
    data = tempfile.mkdtemp(prefix="cowdb-localstack-")
    env = dict(os.environ, GATEWAY_SERVER="hypercorn", GATEWAY_LISTEN=f"127.0.0.1:{port}",
               SERVICES="s3", LOCALSTACK_HOST=f"127.0.0.1:{port}", PERSISTENCE="0",
               SKIP_SSL_CERT_DOWNLOAD="1", DISABLE_EVENTS="1", FILESYSTEM_ROOT=data,
               LOCALSTACK_VOLUME_DIR=data, TMPDIR=data)
    log = open(os.path.join(data, "localstack.log"), "wb")
    proc = subprocess.Popen([python, "-m", "localstack.runtime.main"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as r:
                if b'"s3"' in r.read():
                    return Server("LocalStack", endpoint, stop)
        except OSError:
            time.sleep(0.5)
    stop()
    with open(os.path.join(data, "localstack.log"), "rb") as f:
        tail = f.read()[-400:].decode(errors="replace")
    raise Unavailable(f"LocalStack did not start in {timeout:.0f} s: {tail}")


try:
    import pytest
except ImportError:        # the benchmark imports this module without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def moto():
        """moto's S3 server for a test module (import this name into it); skipped, with
        the reason, where it cannot start."""
        try:
            srv = moto_server()
        except Unavailable as e:
            pytest.skip(f"no S3 server: {e}")
        yield srv
        srv.stop()
