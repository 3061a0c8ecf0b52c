"""Live analysis on several machines: claims and results in PostgreSQL, a store that takes concurrent writers.

A run's SQLite database takes one host's writers only (WAL's index lives in shared memory; measured on a network
filesystem in ``benchmarks/shared_storage.py``: writers on two hosts lose rows and corrupt it). When live workers
on several machines analyse one run — each on its own copy (``evolens mirror``), or the training host's worker
with helpers — they share a PostgreSQL database (started by the user; ``--results postgresql://…``):

- a worker **claims** a snapshot before analysing it: one row per (run, context, step), inserted with
  ``ON CONFLICT``: exactly one worker on any host wins; a claim not finished within ``stale_after`` seconds (its
  worker died) is taken over by the next worker that asks;
- it **finishes** the claim with the snapshot's values (every scalar its analyses wrote, JSON with NaN allowed)
  in one statement;
- every worker **imports** the values other workers finished into its own copy of the run, so each copy — the
  training host's above all, whose Monitor reads the alerts — ends with every snapshot's values, and the rules
  are checked there. What is not shared: maps (each copy places the snapshots it analyses) and feature caches
  (a named reference shares the reference side).

The run is known by ``Run.uid`` (its name and creation time, kept by its copies).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import EvolensError, InputError
from . import layout

__all__ = ["ResultsDB", "ResultsStoreError", "local_server", "postgres_binaries"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evolens_claims (
    run_uid     text NOT NULL,
    context     text NOT NULL,
    step        bigint NOT NULL,
    run_name    text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    values_json text,
    PRIMARY KEY (run_uid, context, step)
)
"""

_CLAIM = """
INSERT INTO evolens_claims (run_uid, context, step, run_name, host, pid) VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (run_uid, context, step) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, claimed_at = now()
    WHERE evolens_claims.done_at IS NULL AND evolens_claims.claimed_at < now() - make_interval(secs => %s)
RETURNING step
"""


class ResultsStoreError(EvolensError, RuntimeError):
    """The results store cannot be reached or refused a statement (the message says which and why)."""


def _me() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


class ResultsDB:
    """Claims and values of live analysis in PostgreSQL, shared by workers on any number of hosts.

    Args:
        url: a libpq connection string, ``postgresql://user@host:port/database``.
        stale_after: seconds after which an unfinished claim is taken over (its worker is presumed dead).
        connect_timeout: seconds to wait for the server.

    Needs ``psycopg`` (``pip install 'evolens[postgres]'``). Each call is one autocommitted statement, so a
    worker killed at any moment leaves either no row, a claim (taken over after ``stale_after``), or a done step.
    """

    def __init__(self, url: str, *, stale_after: float = 600.0, connect_timeout: float = 10.0) -> None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise InputError(f"results: expected a postgresql:// URL, received {url!r}")
        if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or not stale_after > 0:
            raise InputError(f"stale_after: expected seconds > 0, received {stale_after!r}")
        try:
            import psycopg
        except ImportError:
            raise InputError("results: a postgresql:// results store needs psycopg: pip install "
                             "'evolens[postgres]'") from None
        self.url, self.stale_after = url, float(stale_after)
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout)))
            self._conn.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise ResultsStoreError(f"results: cannot use the PostgreSQL store at {_redact(url)}: "
                                    f"{str(exc).strip()}") from None

    def _execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        try:
            cursor = self._conn.execute(sql, args)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise ResultsStoreError(f"results: the PostgreSQL store at {_redact(self.url)} failed: "
                                    f"{str(exc).strip()}") from None

    def claim(self, run_uid: str, run_name: str, context: Mapping[str, Any], step: int) -> bool:
        """Claim ``step`` of the run for this process; True when it is ours to analyse (new, or a stale claim
        taken over), False when another worker holds it or has finished it."""
        host, pid = _me()
        rows = self._execute(_CLAIM, (run_uid, layout.canonical_json(dict(context)), int(step), run_name, host, pid,
                                      self.stale_after))
        return bool(rows)

    def finish(self, run_uid: str, context: Mapping[str, Any], step: int, values: Mapping[str, float]) -> bool:
        """Record our claim of ``step`` as done with its ``values``; False when the claim is no longer ours (it
        went stale and another worker took it: that worker's values will count)."""
        host, pid = _me()
        text = json.dumps({str(k): float(v) for k, v in values.items()})
        rows = self._execute("UPDATE evolens_claims SET done_at = now(), values_json = %s WHERE run_uid = %s AND "
                             "context = %s AND step = %s AND host = %s AND pid = %s AND done_at IS NULL RETURNING step",
                             (text, run_uid, layout.canonical_json(dict(context)), int(step), host, pid))
        return bool(rows)

    def release(self, run_uid: str, context: Mapping[str, Any], step: int) -> None:
        """Give our unfinished claim of ``step`` back (its analysis failed here; another worker may try)."""
        host, pid = _me()
        self._execute("DELETE FROM evolens_claims WHERE run_uid = %s AND context = %s AND step = %s AND host = %s "
                      "AND pid = %s AND done_at IS NULL",
                      (run_uid, layout.canonical_json(dict(context)), int(step), host, pid))

    def finished(self, run_uid: str, context: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
        """``{step: {"values": {name: value}, "host": …, "pid": …}}`` of every finished step of the run."""
        rows = self._execute("SELECT step, values_json, host, pid FROM evolens_claims WHERE run_uid = %s AND "
                             "context = %s AND done_at IS NOT NULL ORDER BY step",
                             (run_uid, layout.canonical_json(dict(context))))
        return {int(step): {"values": json.loads(text or "{}"), "host": host, "pid": int(pid)}
                for step, text, host, pid in rows}

    def claims(self, run_uid: str) -> list[dict[str, Any]]:
        """Every claim of the run (done or not): step, host, pid, claimed_at, done_at — who analysed what."""
        rows = self._execute("SELECT step, host, pid, claimed_at, done_at FROM evolens_claims WHERE run_uid = %s "
                             "ORDER BY step", (run_uid,))
        return [{"step": int(r[0]), "host": r[1], "pid": int(r[2]), "claimed_at": r[3], "done_at": r[4]}
                for r in rows]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        user, host = rest.split("@", 1)
        return f"{scheme}//{user.split(':', 1)[0]}:***@{host}"
    return url


def postgres_binaries() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``): on PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin``; None when not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name)
    return candidates[-1].parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(*, port: int | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (for trials and tests): ``initdb`` in a new temporary folder,
    started with ``pg_ctl``, stopped and removed on exit. Yields its URL. As root, the server runs as the
    ``postgres`` user (PostgreSQL refuses root; the folder is its own, under the system's temporary folder, which
    that user can reach). Raises ResultsStoreError when PostgreSQL is not installed or does not start."""
    binaries = postgres_binaries()
    if binaries is None:
        raise ResultsStoreError("results: PostgreSQL's server programs (initdb, pg_ctl) are not installed "
                                "(Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="evolens-pg-"))
    data, port = root / "data", port or _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise ResultsStoreError("results: running as root and no 'postgres' user to run the server as") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *command], capture_output=True, text=True, cwd=root)

    try:
        done = run(str(binaries / "initdb"), "-D", str(data), "-U", "evolens", "-A", "trust", "--no-sync",
                   "-E", "UTF8")
        if done.returncode:
            raise ResultsStoreError(f"results: initdb failed: {done.stderr.strip()[-400:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w",
                   "-t", "60", "start")
        if done.returncode:
            log = (root / "server.log").read_text()[-400:] if (root / "server.log").exists() else ""
            raise ResultsStoreError(f"results: the PostgreSQL server did not start: {done.stderr.strip()} {log}")
        try:
            yield f"postgresql://evolens@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            time.sleep(0.1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
