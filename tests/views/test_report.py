"""The one-file HTML report: self-contained, offline, every section filled from the run."""

import re

import pytest

from evolens.cli import main
from evolens.errors import InputError, NotARunError
from evolens.views.report import build_report, plotly_js, write_report


def page_body(text: str) -> str:
    """The report without its inlined plotly.js, which contains words such as "quality" and "loss" itself."""
    library = plotly_js()
    assert text.count(library) == 1
    return text.replace(library, "")


def test_report_is_one_self_contained_file(view_run, tmp_path):
    path = write_report(view_run, tmp_path / "report.html")
    text = path.read_text()
    # offline: plotly.js is inlined once and nothing is fetched from the network
    body = page_body(text)
    assert len(text) - len(body) > 3_000_000
    assert not re.search(r"""<script[^>]+src=["']https?://""", text)
    text = body
    for section in ("summary", "alerts", "metrics", "projection", "samples"):
        assert f'<section id="{section}">' in text
    # what the run holds shows up: its name and config, the alert, the intervention, metric groups, grids
    assert "demo-like" in text and "<th>lr</th><td><code>0.001</code>" in text  # the config as a table
    assert "class 6 preservation below 0.6" in text and "added 20 thick sixes" in text
    assert text.count('class="panel"') == 2 and "quality\\u002ffid" in text and "loss\\u002ftrain" in text
    assert text.count("-classes-0\" class=") == 1  # FID per class as a class x step heatmap
    assert text.count("data:image/png;base64,") >= 6  # one grid per snapshot
    assert 'id="projection-0"' in text and 'id="projection-slider-0"' in text and 'id="grid-slider"' in text


def test_compare_overlays_runs_and_cli_writes_files(view_root, tmp_path, capsys):
    text = page_body(build_report([view_root / "demo-like", view_root / "group" / "other"]))
    assert "demo-like vs other" in text
    # the runs overlaid in one panel per metric, one class heatmap per run
    assert '"name":"demo-like"' in text and '"name":"other"' in text
    assert text.count("-classes-0\" class=") == 1 and text.count("-classes-1\" class=") == 1  # a heatmap per run
    assert 'id="grid-0"' in text and 'id="grid-1"' in text and 'id="projection-1"' in text
    out = tmp_path / "cmp.html"
    assert main(["compare", str(view_root / "demo-like"), str(view_root / "group" / "other"), "-o", str(out)]) == 0
    assert out.stat().st_size > 1_000_000
    assert main(["report", str(view_root / "demo-like"), "-o", str(tmp_path / "one.html")]) == 0
    assert "report:" in capsys.readouterr().out


def test_report_of_low_dimensional_loop_runs(tmp_path):
    import numpy as np

    from evolens.collapse.loops import SelfConsumingLoop
    from evolens.collapse import Gaussian, MLETrainer

    real = np.random.default_rng(0).normal(size=(40, 1))
    SelfConsumingLoop(MLETrainer(Gaussian(1), steps=5, device="cpu"), real, generations=3, run_dir=tmp_path / "loop",
                      progress=False).run()
    text = page_body(build_report([tmp_path / "loop"]))
    assert 'id="samples-0"' in text  # histograms per generation instead of image grids
    assert "params\\u002fvar" in text and "quality\\u002ffid" in text


def test_report_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="at least one run"):
        build_report([])
    with pytest.raises(NotARunError):
        build_report([tmp_path])
    assert main(["report", str(tmp_path / "missing")]) == 2
