"""Fixtures for the search tests: a tiny space and lookup table, and a throwaway PostgreSQL server.

The PostgreSQL fixture starts Debian's server binaries (``/usr/lib/postgresql/*/bin``; package ``postgresql``) on
127.0.0.1 with a password-protected role, in a temporary data directory, and stops it afterwards. As root it runs
them as the ``postgres`` user (initdb refuses root). Without the binaries the tests FAIL, so that CI cannot
silently skip them; set ``PATSEARCH_SKIP_POSTGRES=1`` to skip them on a machine without PostgreSQL.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from search_helpers import PG_DB, PG_PASSWORD, PG_USER, make_profile  # noqa: E402


@pytest.fixture(scope="session")
def tiny_space():
    from patsearch.space import load_space

    return load_space("tiny")


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory, tiny_space) -> Path:
    """A CPU latency table for every layer of the tiny space (made-up but monotone costs)."""
    return make_profile(tmp_path_factory.mktemp("profiles") / "cpu-tiny.json", tiny_space)


@pytest.fixture(scope="session")
def tiny_gpu_profile(tmp_path_factory, tiny_space) -> Path:
    """A throughput table of the same layers, as if measured on a GPU at batch 256."""
    return make_profile(tmp_path_factory.mktemp("profiles") / "cuda-tiny.json", tiny_space, device="cuda",
                        scale=0.05)


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql://nas:<password>@127.0.0.1:<port>/nas`` on a fresh server, torn down after the session."""
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("PATSEARCH_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL binaries not installed (PATSEARCH_SKIP_POSTGRES=1)")
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; install Debian's "
                    "package (apt-get install -y postgresql) or set PATSEARCH_SKIP_POSTGRES=1 to skip")
    root = Path(tempfile.mkdtemp(prefix="patsearch-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        user = pwd.getpwnam("postgres")
        for path in (root, sock, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o700)
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
    port = _free_port()

    def run(args: list[str]) -> subprocess.CompletedProcess:
        cmd = prefix + args if prefix[:1] != ["su"] else prefix + [" ".join(args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    init = run([str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"])
    assert init.returncode == 0, f"initdb failed: {init.stderr[-2000:]}"
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=100"
    start = run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"])
    assert start.returncode == 0, f"pg_ctl start failed: {start.stderr[-2000:]}"
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres")
        con.autocommit = True
        con.cursor().execute(f"CREATE DATABASE {PG_DB}")
        con.close()
        yield f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{PG_DB}"
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        for _ in range(20):
            try:
                shutil.rmtree(root)
                break
            except OSError:
                time.sleep(0.2)
