import pytest

from evolens.encoders import ENV_WEIGHTS, WeightsNotFoundError, resolve_weights
from evolens.encoders.weights import weights_hash


def test_explicit_path_then_env_then_package(tmp_path, monkeypatch):
    explicit = tmp_path / "a" / "w.pth"
    env_file = tmp_path / "env" / "w.pth"
    shipped = tmp_path / "pkg" / "w.pth"
    for f in (explicit, env_file, shipped):
        f.parent.mkdir()
        f.write_bytes(b"x")
    monkeypatch.setenv(ENV_WEIGHTS, str(env_file.parent))
    kwargs = dict(package=lambda: shipped, how_to_get="Get it.")
    assert resolve_weights("w.pth", path=explicit, **kwargs) == explicit
    assert resolve_weights("w.pth", path=explicit.parent, **kwargs) == explicit  # a directory holding it
    assert resolve_weights("w.pth", **kwargs) == env_file
    monkeypatch.delenv(ENV_WEIGHTS)
    assert resolve_weights("w.pth", **kwargs) == shipped


def test_missing_weights_name_the_file_the_places_and_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path))

    def no_package():
        raise ImportError(name="some_weights_pkg")

    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(("w.pth", "alt.pth"), package=no_package, how_to_get="Download w.pth from X.")
    message = str(info.value)
    assert "'w.pth'" in message and "'alt.pth'" in message and str(tmp_path / "w.pth") in message
    assert "some_weights_pkg not installed" in message and "Download w.pth from X." in message
    with pytest.raises(WeightsNotFoundError, match=r"path: expected the weights file 'w.pth' at .*nope"):
        resolve_weights("w.pth", path=tmp_path / "nope", how_to_get="")
    assert isinstance(info.value, FileNotFoundError)


def test_directories(tmp_path, monkeypatch):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text("{}")
    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path))
    assert resolve_weights("clip", directory=True, how_to_get="") == tmp_path / "clip"
    with pytest.raises(WeightsNotFoundError, match="expected directory 'dinov2'"):
        resolve_weights("dinov2", directory=True, how_to_get="")


def test_weights_hash_of_file_and_directory(tmp_path):
    import hashlib

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"abc")
    assert weights_hash(tmp_path / "d" / "a.bin") == hashlib.sha256(b"abc").hexdigest()
    before = weights_hash(tmp_path / "d")
    (tmp_path / "d" / "b.bin").write_bytes(b"")
    assert weights_hash(tmp_path / "d") != before
