"""A run exported to W&B in offline mode, read back from the offline run's record file with W&B's own protobuf
records (the file is a LevelDB-style log: 32 KiB blocks of checksummed records after a 7-byte W&B header)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from evolens import InputError, open_run
from evolens.cli import main

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

from evolens.integrations.wandb import export_wandb  # noqa: E402

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    """Every record of a ``.wandb`` file, decoded with W&B's protobuf."""
    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1
    records, pending, offset = [], b"", 7
    while offset + 7 <= len(data):
        if BLOCK - offset % BLOCK < 7:  # the rest of a block is padding
            offset += BLOCK - offset % BLOCK
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        if length == 0 and kind == 0:
            break
        payload = data[offset + 7:offset + 7 + length]
        offset += 7 + length
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def history(records) -> list[tuple[int, dict]]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row: dict = {}
            for item in record.history.item:
                path = [item.key] if item.key else list(item.nested_key)
                *parents, leaf = path  # media are nested: samples/_type, samples/height, ...
                node = row
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = json.loads(item.value_json)
            rows.append((record.history.step.num, row))
    return rows


def test_export_reads_back_as_a_wandb_offline_run(view_run, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    path = export_wandb(view_run, tmp_path / "wb")
    assert path.name.startswith("offline-run-") and path.is_relative_to(tmp_path / "wb")
    (record_file,) = path.glob("run-*.wandb")
    rows = history(read_records(record_file))
    with open_run(view_run) as run:
        fid = next(n for n in run.scalar_names() if n.startswith("quality/fid@"))
        steps, values = run.scalars(fid)
        snapshot_steps = run.steps().tolist()
        n_events = len(run.events())
        name = run.name
    logged = [(step, row[fid]) for step, row in rows if fid in row]
    assert [s for s, _ in logged] == steps.tolist()
    np.testing.assert_allclose([v for _, v in logged], values, rtol=1e-12)
    assert [step for step, row in rows if "samples" in row] == snapshot_steps
    assert all(row["samples"]["_type"] == "image-file" for _, row in rows if "samples" in row)
    (events,) = [row["events"] for _, row in rows if "events" in row]
    assert events["_type"] == "table-file" and events["nrows"] == n_events
    runs = [r.run for r in read_records(record_file) if r.WhichOneof("record_type") == "run"]
    assert runs and runs[0].display_name == name


def test_cli_export_wandb_and_bad_input(view_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["export", "wandb", str(view_run), "--dir", str(tmp_path / "wb")]) == 0
    assert "wandb sync" in capsys.readouterr().out
    assert main(["export", "wandb", str(view_run)]) != 0
    assert "--dir" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="directory"):
        export_wandb(view_run, tmp_path / "file")
    with pytest.raises(InputError, match="max_images"):
        export_wandb(view_run, tmp_path / "wb2", max_images=0)
