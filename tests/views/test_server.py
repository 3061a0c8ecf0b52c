"""The dashboard's JSON API, in process (no port): every endpoint, bad input, and no path traversal."""

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from evolens import open_run
from evolens.errors import InputError
from evolens.views.server import create_app, run_ids


@pytest.fixture(scope="module")
def client(view_root):
    # a secret next to the served folder: nothing may ever read it through the app
    (view_root.parent / "secret.txt").write_text("do not serve")
    return TestClient(create_app(view_root), base_url="http://127.0.0.1")


def test_runs_and_summary(client, view_root):
    runs = client.get("/api/runs").json()
    assert {r["id"] for r in runs} == {"demo-like", "group~other"}
    demo = next(r for r in runs if r["id"] == "demo-like")
    assert demo["n_snapshots"] == 6 and demo["last_step"] == 5
    summary = client.get("/api/runs/demo-like").json()
    assert summary["name"] == "demo-like" and summary["config"]["lr"] == 1e-3
    assert summary["n_alerts"] == 1 and summary["has_projection"]
    assert summary["references"] == [{"name": "train", "n": 300}]
    assert client.get("/api/runs/group~other").json()["n_snapshots"] == 4


def test_scalars_events_steps(client, view_run):
    scalars = client.get("/api/runs/demo-like/scalars").json()
    with open_run(view_run) as run:
        steps, values = run.scalars("quality/fid")
        (fid_name,) = [n for n in run.scalar_names() if n.startswith("quality/fid@")]
    assert fid_name == "quality/fid@pixels@native-cnative~train"
    assert scalars[fid_name]["steps"] == steps.tolist()
    np.testing.assert_allclose(scalars[fid_name]["values"], values)
    some = client.get("/api/runs/demo-like/scalars", params={"names": "loss/train"}).json()
    assert list(some) == ["loss/train"] and len(some["loss/train"]["steps"]) == 6
    assert client.get("/api/runs/demo-like/scalars", params={"names": "nope"}).status_code == 404
    events = client.get("/api/runs/demo-like/events").json()
    assert {"alert", "intervention", "projection"} <= {e["kind"] for e in events}
    assert client.get("/api/runs/demo-like/steps").json() == [0, 1, 2, 3, 4, 5]


def test_samples_png_and_points(client):
    response = client.get("/api/runs/demo-like/samples/3.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/runs/demo-like/samples/99.png").status_code == 404
    assert client.get("/api/runs/demo-like/samples/abc.png").status_code in (404, 422)
    assert client.get("/api/runs/demo-like/points/3").status_code == 404  # images are not 1-D/2-D points


def test_projection_endpoints(client, view_run):
    meta = client.get("/api/runs/demo-like/projection").json()
    assert meta["steps"] == [0, 1, 2, 3, 4, 5] and len(meta["bounds"]) == 4
    assert len(meta["reference"]["x"]) == 120 and len(meta["reference"]["labels"]) == 120
    frame = client.get("/api/runs/demo-like/projection/2").json()
    assert len(frame["x"]) == len(frame["y"]) == len(frame["labels"]) == 30
    from evolens.analyses import load_projection

    with open_run(view_run) as run:
        stored = load_projection(run)
    np.testing.assert_allclose(frame["x"], stored.coords[2][:, 0], atol=1e-3)
    assert client.get("/api/runs/demo-like/projection/2", params={"max_points": 5}).json()["x"].__len__() == 5
    assert client.get("/api/runs/demo-like/projection/77").status_code == 404


def test_unknown_runs_and_steps_are_404(client):
    for url in ("/api/runs/nope", "/api/runs/nope/scalars", "/api/runs/nope/events", "/api/runs/nope/steps",
                "/api/runs/nope/samples/0.png", "/api/runs/nope/projection", "/api/runs/nope/projection/0",
                "/api/runs/nope/files/runs.sqlite"):
        assert client.get(url).status_code == 404, url


def test_files_are_served_only_from_inside_the_run(client, view_root):
    (view_root / "demo-like" / "notes.txt").write_text("a note")
    ok = client.get("/api/runs/demo-like/files/notes.txt")
    assert ok.status_code == 200 and ok.content == b"a note"
    attempts = [
        "/api/runs/demo-like/files/../../secret.txt",
        "/api/runs/demo-like/files/..%2F..%2Fsecret.txt",
        "/api/runs/demo-like/files/%2E%2E/%2E%2E/secret.txt",
        "/api/runs/demo-like/files/" + str(view_root.parent / "secret.txt"),
        "/api/runs/demo-like/files//etc/passwd",
        "/api/runs/demo-like/files/../group/other/runs.sqlite",
        "/api/runs/..%2F..%2F/steps",
        "/api/runs/demo-like/files/",
    ]
    for url in attempts:
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"do not serve" not in response.content and b"root:" not in response.content


def test_symlink_out_of_the_run_is_not_followed(view_root, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    link = view_root / "group" / "other" / "link.txt"
    link.symlink_to(outside)
    try:
        response = TestClient(create_app(view_root), base_url="http://127.0.0.1").get("/api/runs/group~other/files/link.txt")
        assert response.status_code == 404 and b"outside" not in response.content
    finally:
        link.unlink()


def test_page_and_plotly_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/plotly.min.js" in page.text and "http" not in page.text.split("<script")[1][:40]
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_the_app_is_read_only_and_needs_a_directory(client, view_run, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in Path(view_run).rglob("*") if p.is_file()}
    for url in ("/api/runs", "/api/runs/demo-like", "/api/runs/demo-like/projection/1", "/api/runs/demo-like/samples/1.png"):
        client.get(url)
    assert client.post("/api/runs/demo-like").status_code == 405
    after = {p: p.stat().st_mtime_ns for p in Path(view_run).rglob("*") if p.is_file() and not p.name.endswith("-shm")}
    assert {p: t for p, t in before.items() if not p.name.endswith("-shm")} == after
    with pytest.raises(InputError, match="run_dir"):
        create_app(tmp_path / "missing")
    assert run_ids(tmp_path) == {}


def test_dashboard_payload_for_5000_points_is_under_1_mb(tmp_path):
    from evolens.store.derived import PROJECTION_COORDS
    from evolens.store.writer import RunWriter

    rng = np.random.default_rng(0)
    with RunWriter(tmp_path / "big") as writer:
        for step in range(3):
            writer.write_snapshot(step, {"samples": rng.random((5000, 2), dtype=np.float32),
                                         "probe_ids": np.array([f"p{i}" for i in range(5000)]),
                                         "labels": rng.integers(0, 10, 5000)}, wall_time=0.0, capture_seconds=0.0)
    with open_run(tmp_path / "big") as run:
        for step in range(3):
            run.add_derived(PROJECTION_COORDS, rng.normal(0, 30, (5000, 2)).astype(np.float32), encoder_id="enc",
                            source="p1", step=step)
        run.add_event("projection", "synthetic", data={"projection_id": "p1", "encoder_id": "enc", "layout": "free",
                                                     "steps": [0, 1, 2], "scores": {}})
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1")
    response = client.get("/api/runs/big/projection/1")
    assert response.status_code == 200
    assert len(response.json()["x"]) == 5000
    assert len(response.content) < 1_000_000, len(response.content)


def test_a_foreign_host_is_refused(view_root):
    app = create_app(view_root, allowed_hosts=["gpu-box.lan"])
    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.1:8765", "LOCALHOST:1", "gpu-box.lan:8765"):
        response = TestClient(app, base_url=f"http://{host}").get("/api/runs")
        assert response.status_code == 200, host
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser still sends it as Host
    for host in ("attacker.example", "127.0.0.1.attacker.example", "localhost.evil:8765", "gpu-box.lan.evil"):
        for url in ("/api/runs", "/api/runs/demo-like/files/runs.sqlite", "/"):
            response = TestClient(app, base_url=f"http://{host}").get(url)
            assert response.status_code == 400, (host, url)
            assert b"SQLite" not in response.content and b"demo-like" not in response.content
    with pytest.raises(InputError, match="allowed_hosts"):
        create_app(view_root, allowed_hosts="gpu-box.lan")


def test_security_headers_on_every_answer(client):
    for url in ("/", "/api/runs", "/api/runs/demo-like/samples/1.png", "/api/runs/missing", "/static/plotly.min.js"):
        headers = client.get(url).headers
        assert headers["x-content-type-options"] == "nosniff", url
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in \
            csp.split("script-src")[1].split(";")[0], url
    # the page's inline scripts are allowed by hash, nothing else inline
    import base64
    import hashlib
    import re

    page = client.get("/")
    for body in re.findall(r"<script>(.*?)</script>", page.text, flags=re.S):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in page.headers["content-security-policy"]


def test_files_images_inline_everything_else_attachment(client, view_root):
    run = view_root / "demo-like"
    (run / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (run / "evil.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>')
    (run / "evil.html").write_text("<script>alert(1)</script>")
    picture = client.get("/api/runs/demo-like/files/picture.png")
    assert picture.headers["content-type"] == "image/png" and picture.headers["content-disposition"].startswith("inline")
    for name in ("evil.svg", "evil.html"):
        response = client.get(f"/api/runs/demo-like/files/{name}")
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith("attachment"), name
        assert response.headers["content-type"] == "application/octet-stream"
        assert "sandbox" in response.headers["content-security-policy"]
    # the store's database, its journal and unknown types are not served at all
    for name in ("runs.sqlite", "runs.sqlite-wal", "arrays"):
        assert client.get(f"/api/runs/demo-like/files/{name}").status_code == 404, name


def test_a_symlinked_run_outside_the_root_breaks_nothing(view_root, tmp_path):
    from evolens.store.writer import RunWriter

    def make_run(path):
        with RunWriter(path, name=path.name) as writer:
            writer.write_snapshot(0, {"samples": np.zeros((4, 2), np.float32)})
        return path

    outside = make_run(tmp_path / "elsewhere" / "outside")
    served = tmp_path / "served"
    served.mkdir()
    (served / "own").symlink_to(view_root / "demo-like")  # links inside the tree to runs outside it
    (served / "escape").symlink_to(outside)
    make_run(served / "inside")
    client = TestClient(create_app(served), base_url="http://127.0.0.1")
    runs = client.get("/api/runs")
    assert runs.status_code == 200 and [r["id"] for r in runs.json()] == ["inside"]
    for url in ("/api/runs/inside", "/api/runs/inside/steps", "/api/runs/inside/events", "/"):
        assert client.get(url).status_code == 200, url
    assert client.get("/api/runs/escape").status_code == 404


def test_projection_track_of_one_probe(client):
    meta = client.get("/api/runs/demo-like/projection").json()
    frame = client.get(f"/api/runs/demo-like/projection/{meta['steps'][0]}").json()
    probe = frame["ids"][3]
    track = client.get("/api/runs/demo-like/projection/track", params={"probe": probe}).json()
    assert track["id"] == probe and track["steps"] == meta["steps"]
    assert (track["x"][0], track["y"][0]) == (frame["x"][3], frame["y"][3])
    assert client.get("/api/runs/demo-like/projection/track", params={"probe": "nope"}).status_code == 404


def test_memorisation_is_null_without_evidence_and_a_gallery_with_it(client, view_root, tmp_path):
    import shutil

    from evolens import analyses

    assert client.get("/api/runs/demo-like/memorisation").json() is None
    run_dir = tmp_path / "runs" / "r"
    shutil.copytree(view_root / "demo-like", run_dir)
    analyses.proximity(run_dir, encoder="pixels", heldout=None)
    local = TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1")
    gallery = local.get("/api/runs/r/memorisation").json()
    distances = [item["neighbours"][0]["distance"] for item in gallery["items"]]
    assert gallery["step"] == 5 and distances == sorted(distances) and len(gallery["items"][0]["neighbours"]) == 3
    assert local.get("/api/runs/r/memorisation", params={"step": 2}).json()["step"] == 2
    assert local.get("/api/runs/r/memorisation", params={"step": 99}).status_code == 404


def test_a_probe_thumbnail(client):
    frame = client.get("/api/runs/demo-like/projection/2").json()
    answer = client.get("/api/runs/demo-like/samples/2/probe.png", params={"probe": frame["ids"][0]})
    assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/runs/demo-like/samples/2/probe.png", params={"probe": "nope"}).status_code == 404


def test_incremental_reads_return_exactly_what_is_new(client, view_run):
    """``since`` cursors: the page appends what each answer adds to what it has and gets the full answer."""
    summary = client.get("/api/runs/demo-like").json()
    cursor = summary["cursor"]
    assert cursor["step"] == summary["last_step"] == 5 and cursor["session"] is not None
    full = client.get("/api/runs/demo-like/scalars").json()
    assert cursor["scalars"] == {name: s["steps"][-1] for name, s in full.items()}
    for since in (-1, 0, 2, 5):
        part = client.get(f"/api/runs/demo-like/scalars?since={since}").json()
        expected = {n: {"steps": [t for t in s["steps"] if t > since],
                        "values": [v for t, v in zip(s["steps"], s["values"]) if t > since]} for n, s in full.items()}
        assert part == {n: s for n, s in expected.items() if s["steps"]}
    events = client.get("/api/runs/demo-like/events").json()
    assert cursor["event"] == events[-1]["id"]
    assert client.get(f"/api/runs/demo-like/events?since={events[1]['id']}").json() == events[2:]
    assert client.get("/api/runs/demo-like/steps?since=3").json() == [4, 5]
    assert client.get("/api/runs/demo-like/steps?since=x").status_code == 422
    runs = {r["id"]: r for r in client.get("/api/runs").json()}
    assert runs["demo-like"]["group"] == "." and runs["group~other"]["group"] == "group"


def test_map_frames_carry_attributes_and_reference_points_their_images(client, view_run):
    from evolens.analyses.projection import reference_subsample
    from evolens.views.grid import images_to_grid, png_bytes
    from evolens.views.data import samples_as_images

    frame = client.get("/api/runs/demo-like/projection/2").json()
    with open_run(view_run) as run:
        stroke = run.array(2, "stroke")
        reference = run.reference("train")
    assert frame["attributes"] == {"stroke": stroke.tolist()}  # the per-sample attribute logged with the samples
    meta = client.get("/api/runs/demo-like/projection").json()
    assert (meta["reference_name"], meta["max_reference"], meta["seed"]) == ("train", 120, 0)
    # the image behind reference point 7 is the item the map's subsample drew, upscaled like the probe thumbnails
    item = int(reference_subsample(300, 120, 0)[7])
    answer = client.get("/api/runs/demo-like/projection/reference.png?point=7")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    image = samples_as_images(reference.images[item:item + 1])
    assert answer.content == png_bytes(images_to_grid(image, pad=0), 84 // 8)
    # the subsample is the one the map was fitted with: its labels are the stored reference labels
    assert meta["reference"]["labels"] == reference.labels[reference_subsample(300, 120, 0)].tolist()
    assert client.get("/api/runs/demo-like/projection/reference.png?point=120").status_code == 404
    assert client.get("/api/runs/demo-like/projection/reference.png?point=-1").status_code == 422
