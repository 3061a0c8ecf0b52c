"""Runs on shared storage: what SQLite does on a real network filesystem, and what a concurrent-writer store does.

Two mounts of one network share stand for two machines: each mount is its own client (its own connection, page
cache and lock handling), which is what two hosts mounting the same export are. With ``--sshfs`` the script makes
them itself: an sshd on loopback and two ``sshfs`` (FUSE/SFTP) mounts of one folder (needs root, Debian's
openssh-server and sshfs); or pass two mounts of one share (``--mounts A B``, e.g. the same NFS export on two
mount points or, better, from two machines with a shared clock-free protocol: run the writer half on each).

Measured, for each store:

1. **Two writers on two "hosts"**: each process appends 400 transactions of 10 scalar rows (what a live worker
   writes per snapshot) to one database through its own mount, at the same time. Then the database is checked
   from the export itself: rows present against rows committed, ``PRAGMA integrity_check``, and the errors the
   writers saw. Stores: SQLite in WAL mode (evolens's run format) and in rollback-journal mode on the share, SQLite
   WAL with both writers on one mount (one host: the baseline that works), and PostgreSQL (a server on loopback
   the script starts, two client processes) — the store a run's results from several machines need.
2. **A lock across hosts**: the live worker's claim (``flock`` on ``analysis.lock``) taken through mount A, tried
   through mount B.
3. **Reading a published copy on the share** while the training host republishes: ``evolens publish`` to mount
   A every 0.2 s while a reader on mount B opens the copy and reads every snapshot's arrays (``Run``), counting
   failed or inconsistent reads.

    python benchmarks/shared_storage.py --sshfs            # as root, with sshfs and openssh-server installed
    python benchmarks/shared_storage.py --mounts /mnt/a /mnt/b

Writes docs/results/shared_storage.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

TRANSACTIONS = 400
PUBLISH_SECONDS = 45.0
WRITER_DEADLINE = 120.0
ROWS = 10


def _sqlite_writer(path: str, writer: int, queue) -> None:
    errors: dict[str, int] = {}
    committed = 0
    start = time.perf_counter()
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)  # the journal mode is the file's
    except sqlite3.Error as exc:
        queue.put({"writer": writer, "committed": 0, "errors": {f"open: {exc}": 1}, "seconds": 0.0})
        return
    for t in range(TRANSACTIONS):
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO scalars(writer, tx, row, value) VALUES (?, ?, ?, ?)",
                             [(writer, t, r, float(t * ROWS + r)) for r in range(ROWS)])
            conn.execute("COMMIT")
            committed += 1
        except sqlite3.Error as exc:
            key = str(exc).split(":")[0][:60]
            errors[key] = errors.get(key, 0) + 1
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
    conn.close()
    queue.put({"writer": writer, "committed": committed, "errors": errors,
               "seconds": time.perf_counter() - start})


def _postgres_writer(url: str, writer: int, queue) -> None:
    import psycopg

    errors: dict[str, int] = {}
    committed = 0
    start = time.perf_counter()
    with psycopg.connect(url) as conn:
        for t in range(TRANSACTIONS):
            try:
                with conn.transaction():
                    conn.cursor().executemany(
                        "INSERT INTO scalars(writer, tx, row, value) VALUES (%s, %s, %s, %s)",
                        [(writer, t, r, float(t * ROWS + r)) for r in range(ROWS)])
                committed += 1
            except psycopg.Error as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
    queue.put({"writer": writer, "committed": committed, "errors": errors,
               "seconds": time.perf_counter() - start})


def _run_writers(target, args_of) -> list[dict]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args_of(w), w, queue)) for w in (0, 1)]
    for p in processes:
        p.start()
    results, deadline = [], time.monotonic() + WRITER_DEADLINE
    while len(results) < len(processes) and time.monotonic() < deadline:
        try:
            results.append(queue.get(timeout=1.0))
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting until the deadline
            continue
    for w, p in enumerate(processes):
        p.join(timeout=1.0)
        if p.is_alive():  # a writer that never finished: killed, and reported as hung
            p.kill()
            p.join()
            if not any(r["writer"] == w for r in results):
                results.append({"writer": w, "committed": 0, "seconds": WRITER_DEADLINE,
                                "errors": {f"hung: killed after {WRITER_DEADLINE:.0f} s (commits unknown)": 1}})
    return sorted(results, key=lambda r: r["writer"])


def sqlite_case(export: Path, mounts: tuple[Path, Path], journal: str, name: str) -> dict:
    """Two writers through ``mounts`` on one database created in ``export``."""
    db = f"{name}.sqlite"
    for suffix in ("", "-wal", "-shm", "-journal"):
        (export / f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(export / db)
    conn.execute(f"PRAGMA journal_mode={journal}")  # persistent in the file (WAL), as evolens creates a run
    conn.execute("CREATE TABLE scalars (writer INTEGER, tx INTEGER, row INTEGER, value REAL)")
    conn.commit()
    conn.close()
    results = _run_writers(_sqlite_writer, lambda w: (str(mounts[w] / db),))
    try:  # on the export itself, as the server sees it
        check = sqlite3.connect(f"file:{export / db}?mode=ro", uri=True, timeout=30.0)
        integrity = check.execute("PRAGMA integrity_check").fetchone()[0]
        present = check.execute("SELECT COUNT(*) FROM scalars").fetchone()[0]
        check.close()
    except sqlite3.Error as exc:
        integrity, present = f"unreadable: {exc}", 0
    print(f"{name}: {present} rows present", flush=True)
    committed = sum(r["committed"] for r in results) * ROWS
    seconds = max(r["seconds"] for r in results) or 1.0
    return {"store": name, "rows_committed": committed, "rows_present": present, "integrity": integrity,
            "errors": {k: v for r in results for k, v in r["errors"].items()},
            "transactions_per_s": round(sum(r["committed"] for r in results) / seconds, 1) if seconds else 0.0}


def postgres_case(folder: Path) -> dict:
    import psycopg

    from evolens.store.results_db import local_server

    with local_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE scalars (writer int, tx int, row int, value double precision)")
        results = _run_writers(_postgres_writer, lambda w: (url,))
        with psycopg.connect(url) as conn:
            present = conn.execute("SELECT COUNT(*) FROM scalars").fetchone()[0]
    committed = sum(r["committed"] for r in results) * ROWS
    seconds = max(r["seconds"] for r in results)
    return {"store": "PostgreSQL 2 clients (loopback)", "rows_committed": committed, "rows_present": present,
            "integrity": "ok" if present == committed else "rows lost",
            "errors": {k: v for r in results for k, v in r["errors"].items()},
            "transactions_per_s": round(sum(r["committed"] for r in results) / seconds, 1)}


def lock_case(mounts: tuple[Path, Path]) -> dict:
    import fcntl

    first = open(mounts[0] / "analysis.lock", "a+")
    fcntl.flock(first.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    second = open(mounts[1] / "analysis.lock", "a+")
    try:
        fcntl.flock(second.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        outcome = "taken on host B too: the claim does not exclude across hosts"
    except BlockingIOError:
        outcome = "refused on host B: the claim holds across hosts"
    except OSError as exc:
        outcome = f"error on host B: {exc}"
    first.close()
    second.close()
    return {"lock": outcome}


def _republish(source: str, dest: str, seconds: float) -> None:
    from evolens.store.publish import publish

    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        publish(source, dest)
        time.sleep(0.2)


def publish_case(folder: Path, mounts: tuple[Path, Path]) -> dict:
    """The training host republishes a run (which keeps growing) to the share through mount A; a reader on
    mount B reads it again and again."""
    import numpy as np

    from evolens.store.run import open_run
    from evolens.store.writer import RunWriter

    source = folder / "train-run"
    rng = np.random.default_rng(0)
    writer = RunWriter(source, name="shared")
    for step in range(20):
        writer.write_snapshot(step, {"samples": rng.normal(size=(64, 1, 16, 16)).astype(np.float32)})
    ctx = mp.get_context("spawn")
    publisher = ctx.Process(target=_republish, args=(str(source), str(mounts[0] / "published"), PUBLISH_SECONDS))
    publisher.start()
    reads = failures = inconsistent = 0
    seen_steps = []
    while not (mounts[1] / "published" / "runs.sqlite").exists():  # the first copy
        time.sleep(0.05)
    step = 20
    stop = time.monotonic() + PUBLISH_SECONDS
    lag = []  # seconds between a snapshot's write and the reader's first sight of it
    written: dict[int, float] = {}
    first_seen: dict[int, float] = {}
    while time.monotonic() < stop:
        writer.write_snapshot(step, {"samples": rng.normal(size=(64, 1, 16, 16)).astype(np.float32)})
        written[step] = time.monotonic()
        step += 1
        try:
            with open_run(mounts[1] / "published") as run:
                steps = run.steps().tolist()
                for s in steps:
                    if run.samples(s).shape != (64, 1, 16, 16):
                        inconsistent += 1
                seen_steps.append(len(steps))
                for s in steps:
                    first_seen.setdefault(s, time.monotonic())
            reads += 1
        except Exception as exc:  # noqa: BLE001 - counted: the reader must never see a broken copy
            failures += 1
            if failures <= 3:
                print("read failed:", repr(exc))
        time.sleep(0.05)
    publisher.join()
    writer.close()
    lag = sorted(first_seen[s] - written[s] for s in first_seen if s in written)
    return {"reads": reads, "failed_reads": failures, "inconsistent_snapshots": inconsistent,
            "lag_median_s": round(lag[len(lag) // 2], 1) if lag else None, "lag_max_s": round(lag[-1], 1) if lag else None,
            "snapshots_seen": f"{min(seen_steps, default=0)}..{max(seen_steps, default=0)} of {step}"}


@contextlib.contextmanager
def sshfs_mounts(folder: Path):
    """An sshd on 127.0.0.1:2222 and two sshfs mounts (``host-a``, ``host-b``) of ``folder/export``."""
    export, a, b = folder / "export", folder / "host-a", folder / "host-b"
    for path in (export, a, b, Path("/run/sshd")):
        path.mkdir(parents=True, exist_ok=True)
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-A"], check=True, capture_output=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = Path.home() / ".ssh" / "authorized_keys"
    authorized.parent.mkdir(mode=0o700, exist_ok=True)
    with open(authorized, "a") as handle:
        handle.write(key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-p", "2222", "-o", "ListenAddress=127.0.0.1",
                             "-o", "PermitRootLogin=prohibit-password"])
    time.sleep(1.0)
    try:
        for mount in (a, b):
            subprocess.run(["sshfs", "-p", "2222", "-o", f"StrictHostKeyChecking=no,IdentityFile={key}",
                            f"root@127.0.0.1:{export}", str(mount)], check=True)
        yield export, (a, b)
    finally:
        for mount in (a, b):
            subprocess.run(["fusermount", "-u", str(mount)], capture_output=True)
        sshd.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sshfs", action="store_true", help="make two loopback sshfs mounts (root)")
    parser.add_argument("--mounts", nargs=2, type=Path, help="two mounts of one share")
    parser.add_argument("--export", type=Path, help="the share's own folder (default: --mounts's first)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs/results/shared_storage.md")
    args = parser.parse_args()
    if not args.sshfs and not args.mounts:
        parser.error("pass --sshfs or --mounts A B")
    from evolens.store.publish import filesystem_type

    with tempfile.TemporaryDirectory(prefix="evolens-shared-") as tmp:
        folder = Path(tmp)
        with (sshfs_mounts(folder) if args.sshfs else contextlib.nullcontext(
                (args.export or args.mounts[0], tuple(args.mounts)))) as (export, mounts):
            local = folder / "local"
            local.mkdir()
            fs = filesystem_type(mounts[0])
            cases = [
                sqlite_case(local, (local, local), "wal", "SQLite WAL, local disk, 2 processes"),
                sqlite_case(export, (mounts[0], mounts[0]), "wal", f"SQLite WAL, {fs}, 2 processes on host A"),
                sqlite_case(export, mounts, "wal", f"SQLite WAL, {fs}, host A + host B"),
                sqlite_case(export, mounts, "delete", f"SQLite rollback journal, {fs}, host A + host B"),
            ]
            try:
                cases.append(postgres_case(folder))
            except Exception as exc:  # noqa: BLE001 - reported in the table
                cases.append({"store": "PostgreSQL", "errors": {repr(exc)[:80]: 1}})
            lock = lock_case(mounts)
            published = publish_case(folder, mounts)
    lines = ["# Runs on shared storage (`benchmarks/shared_storage.py`)", "",
             f"Network filesystem: `{fs}`, two mounts of one share standing for two hosts. Each writer appends "
             f"{TRANSACTIONS} transactions of {ROWS} rows at the same time as the other.", "",
             "| store | rows committed | rows present | integrity | errors the writers saw | transactions/s |",
             "|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c['store']} | {c.get('rows_committed', '-')} | {c.get('rows_present', '-')} | "
                     f"{c.get('integrity', '-')} | {json.dumps(c.get('errors', {})) or '{}'} | "
                     f"{c.get('transactions_per_s', '-')} |")
    lines += ["", f"Live worker's claim (`flock` on `analysis.lock`) held on host A, tried on host B: {lock['lock']}.",
              "", f"Published copy on the share, republished every 0.2 s from host A while the run grows, read from "
              f"host B: {published['reads']} reads, {published['failed_reads']} failed, "
              f"{published['inconsistent_snapshots']} inconsistent snapshots, snapshots seen "
              f"{published['snapshots_seen']}; a new snapshot reached the reader after {published['lag_median_s']} s "
              f"(median; max {published['lag_max_s']} s: the client's attribute cache, plus the republish period).",
              ""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
