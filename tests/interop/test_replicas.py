"""authlib's code + PKCE flow against three baton-idp replicas sharing a PostgreSQL store, every
request on a different replica (a round robin in front is the issuer, one connection per
request). The PostgreSQL cluster is a throwaway one made with initdb/pg_ctl (as `nobody` under
root); without PostgreSQL the test is skipped unless BATON_REQUIRE_POSTGRES is set."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest
import requests

from conftest import BIN, ROOT, Process, free_port, wait_ready
import test_idp
from test_idp import A, SECRET_A, new_session, verify_pyjwt


class OneConnectionPerRequest(requests.Session):
    """A browser that closes its connection after each request: the next lands elsewhere."""

    def __init__(self):
        super().__init__()
        self.headers["Connection"] = "close"


def authorize(idp, session):
    """test_idp.authorize with a browser that opens one connection per request."""
    real = test_idp.requests.Session
    test_idp.requests.Session = OneConnectionPerRequest
    try:
        return test_idp.authorize(idp, session)
    finally:
        test_idp.requests.Session = real


def pg_bin():
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def as_postgres(argv):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + argv
    return argv


class RoundRobin:
    """Each accepted connection goes to the next backend; `seen` records which one."""

    def __init__(self, backends):
        self.backends = backends
        self.seen = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        n = 0
        while self.running:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            backend = self.backends[n % len(self.backends)]
            self.seen.append(backend)
            n += 1
            threading.Thread(target=self._pipe, args=(client, backend), daemon=True).start()

    def _pipe(self, client, backend):
        try:
            upstream = socket.create_connection(("127.0.0.1", backend), timeout=10)
        except OSError:
            client.close()
            return

        def copy(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=copy, args=(upstream, client), daemon=True)
        t.start()
        copy(client, upstream)
        t.join(timeout=10)
        client.close()
        upstream.close()

    def stop(self):
        self.running = False
        self.sock.close()


class Cluster:
    def __init__(self, issuer, front, procs):
        self.issuer = issuer
        self.front = front
        self.procs = procs
        self.discovery = requests.get(
            f"{issuer}/.well-known/openid-configuration", headers={"Connection": "close"}, timeout=5
        ).json()

    @property
    def token_endpoint(self):
        return self.discovery["token_endpoint"]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("BATON_REQUIRE_POSTGRES"):
            pytest.fail("BATON_REQUIRE_POSTGRES is set but PostgreSQL is not installed")
        pytest.skip("PostgreSQL not installed (Debian: postgresql)")
    pgdir = tempfile.mkdtemp(prefix="baton-interop-pg-")
    if os.geteuid() == 0:
        os.chown(pgdir, 65534, 65534)
    data, port = os.path.join(pgdir, "data"), free_port()
    subprocess.run(
        as_postgres([f"{bindir}/initdb", "-D", data, "-U", "baton", "--auth=trust", "--no-sync"]),
        check=True, cwd=pgdir, capture_output=True,
    )
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {pgdir} -c fsync=off"
    pg_ctl = [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(pgdir, "log"), "-o", opts, "-w"]
    subprocess.run(as_postgres(pg_ctl + ["start"]), check=True, cwd=pgdir, capture_output=True)
    tmp = tmp_path_factory.mktemp("replicas")
    (tmp / "db-url").write_text(f"postgres://baton@127.0.0.1:{port}/postgres\n")
    ports = [free_port() for _ in range(3)]
    front = RoundRobin(ports)
    issuer = f"http://127.0.0.1:{front.port}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SECRET")}
    procs = []
    try:
        for i, p in enumerate(ports):
            text = (ROOT / "deploy" / "idp.yaml").read_text()
            text = text.replace("issuer: http://127.0.0.1:9000", f"issuer: {issuer}")
            text = text.replace("listen: 127.0.0.1:9000", f"listen: 127.0.0.1:{p}")
            text = text.replace("dir: idp-keys", f"dir: {tmp / 'keys'}")
            text = text.replace("admin_listen: 127.0.0.1:9001", "admin_listen: 127.0.0.1:0")
            text += f"\nstore:\n  kind: postgres\n  url_file: {tmp / 'db-url'}\n"
            cfg = tmp / f"idp-{i}.yaml"
            cfg.write_text(text)
            argv = [str(BIN / "baton-idp"), "--allow-inline-secrets", "-c", str(cfg)]
            proc = Process(argv, tmp / f"idp-{i}.log", env)
            procs.append(proc)
            # One at a time: the first makes the shared key directory.
            wait_ready(f"http://127.0.0.1:{p}/readyz", proc.proc, proc.log)
        yield Cluster(issuer, front, procs)
    finally:
        for proc in procs:
            proc.stop()
        front.stop()
        subprocess.run(as_postgres(pg_ctl + ["-m", "immediate", "stop"]), cwd=pgdir, capture_output=True)
        shutil.rmtree(pgdir, ignore_errors=True)


def test_authlib_code_flow_with_every_request_on_another_replica(replicas):
    session = new_session()
    session.headers["Connection"] = "close"
    before = len(replicas.front.seen)
    location, verifier, nonce, state = authorize(replicas, session)
    token = session.fetch_token(
        replicas.token_endpoint, authorization_response=location, code_verifier=verifier, state=state
    )
    # /authorize, /login and /token: three connections, three replicas.
    assert len(set(replicas.front.seen[before:])) == 3, replicas.front.seen[before:]
    claims = verify_pyjwt(replicas, token["access_token"], A)
    assert claims["sub"] == "alice"
    # Rotation at one replica, reuse of the old token at the next: the family is revoked, and
    # the newest token is refused at the third.
    old = token["refresh_token"]
    fresh = session.refresh_token(replicas.token_endpoint, refresh_token=old)
    def refresh(rt):
        return requests.post(
            replicas.token_endpoint,
            data={"grant_type": "refresh_token", "refresh_token": rt},
            auth=(A, SECRET_A),
            headers={"Connection": "close"},
            timeout=5,
        )
    replay = refresh(old)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    dead = refresh(fresh["refresh_token"])
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    for proc in replicas.procs:
        assert proc.proc.poll() is None, proc.log.read_text()
