"""The pictures a visitor sees (issue 20): every figure the README links exists, and the render script
draws the figures and writes a notebook as Markdown + PNG."""

import json
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import render_docs  # noqa: E402


def test_every_figure_the_readme_links_exists():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert {"docs/figures/photo.png", "docs/figures/sumnet_vs_rcn.png", "docs/figures/ced.png"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "![" in first_screen and "pip install" in first_screen


def test_rendered_notebooks_exist_for_every_notebook():
    for book in (ROOT / "notebooks").glob("*.ipynb"):
        md = ROOT / "docs" / "notebooks" / f"{book.stem}.md"
        assert md.is_file(), md
        for image in re.findall(r"\]\(([^)]+\.png)\)", md.read_text()):
            assert (md.parent / image).is_file(), image


def test_notebook_markdown_writes_text_code_outputs_and_images(tmp_path):
    import base64

    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    png = base64.b64encode((ROOT / "docs" / "figures" / "ced.png").read_bytes()).decode()
    book = new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("print(1)", outputs=[
        new_output("stream", name="stdout", text="1\n"), new_output("stream", name="stderr", text="noise\n"),
        new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})])])
    md = render_docs.notebook_markdown(nbformat.from_dict(book), "nb", tmp_path)
    assert md.startswith("# Title") and "```python\nprint(1)\n```" in md and "```\n1\n```" in md
    assert "![nb figure 1](nb_1.png)" in md and (tmp_path / "nb_1.png").is_file() and "noise" not in md


def test_ced_figure_reads_the_benchmark_json(tmp_path, monkeypatch):
    results = tmp_path / "peer.json"
    results.write_text(json.dumps({"faces": {"68": 3}, "68pt": [
        {"method": "RCN rcn-300w (soft_argmax)", "errors": [3.0, 5.0, 12.0]},
        {"method": "RCN rcn-300w-fast (soft_argmax)", "errors": [4.0, 6.0, 13.0]},
        {"method": "dlib ERT, same box as RCN", "errors": [2.0, 4.0, 6.0]},
        {"method": "something else", "errors": [1.0]}]}))
    from rcn_keras import visualize

    labels = []
    draw = visualize.ced_figure
    monkeypatch.setattr(visualize, "ced_figure", lambda curves, t: labels.extend(curves) or draw(curves, t))
    assert render_docs.ced_figure(results)[:8] == b"\x89PNG\r\n\x1a\n"
    assert labels == ["rcn-300w: NME 6.67 %", "rcn-300w-fast: NME 7.67 %", "dlib ERT (the same box as RCN): NME 4.00 %"]
    results.write_text(json.dumps({"faces": {"68": 3}, "68pt": [{"method": "RCN rcn-300w"}]}))
    with pytest.raises(ValueError, match="no 68-point rows with per-face errors"):
        render_docs.ced_figure(results)


def test_render_script_draws_the_figures(tmp_path):
    pytest.importorskip("skimage")
    written = render_docs.render_figures(tmp_path)
    assert [p.name for p in written] == list(render_docs.FIGURES)
    assert all(p.stat().st_size > 10_000 for p in written)


@pytest.mark.slow
def test_render_script_runs_a_notebook_in_fast_mode(tmp_path):
    pytest.importorskip("skimage")
    assert render_docs.main(["--fast", "--only", "notebooks", "--notebooks", "02_presoftmax_maps",
                             "--out", str(tmp_path)]) == 0
    md = (tmp_path / "notebooks" / "02_presoftmax_maps.md").read_text()
    assert "SumNet" in md and (tmp_path / "notebooks" / "02_presoftmax_maps_1.png").is_file()
