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


def test_every_figure_the_pages_link_exists():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    figure = r"!\[[^\]]*\]\(([^)]+)\)"
    assert "docs/figures/photo.png" in re.findall(figure, readme)
    assert {"figures/sumnet_vs_rcn.png", "figures/ced.png"} <= set(re.findall(figure, results))
    for page in (ROOT / "README.md", ROOT / "docs" / "results.md"):
        for link in re.findall(figure, page.read_text()):
            assert (page.parent / link).is_file(), link
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


PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "datasets").glob("*.md")), ROOT / "rcn_keras" / "weights" / "MODEL_CARD.md"]
# inline mentions written as patterns, not commands (`rcn train ... [--set ...]`)
PATTERN_MARKS = ("...", "[", "|", "COMMAND", "CMD")


def shown_commands(text: str) -> list[str]:
    """The ``rcn`` commands a page shows: every line of its code blocks (continuations joined, ``$ `` prompts
    dropped), and the inline code spans that give options (``--``) and are not patterns."""
    found = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("rcn "):
                found.append(line)
    for span in re.findall(r"`(rcn [^`]+)`", text):
        if " --" in span and not any(mark in span for mark in PATTERN_MARKS):
            found.append(" ".join(span.split()))
    return found


def parse_error(command: str) -> str | None:
    """What the CLI's own parser says of ``command`` (``None``: it parses)."""
    import contextlib
    import io
    import shlex

    from rcn_keras.app.cli.main import build_parser

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(shlex.split(command, comments=True)[1:])
    except SystemExit as stop:
        return said.getvalue().strip() or "exit" if stop.code else None
    return None


def test_every_command_the_pages_show_parses():
    shown = {page.relative_to(ROOT): shown_commands(page.read_text()) for page in PAGES}
    assert sum(map(len, shown.values())) > 60 and shown[pathlib.Path("README.md")]
    wrong = [f"{page}: {c} -> {error}" for page, commands in shown.items() for c in commands
             if (error := parse_error(c))]
    assert not wrong, "\n".join(wrong)
    assert parse_error("rcn predict photo.jpg --modle rcn-300w")  # the check itself can fail
    assert shown_commands("```bash\nrcn train --epochs 2 \\\n    --out x   # note\n```\n`rcn evaluate --x ...`") \
        == ["rcn train --epochs 2  --out x   # note"]


def test_every_file_the_pages_link_exists():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+://", path) and not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_user_facing_text_names_no_issue_numbers():
    from rcn_keras.app.cli.main import build_parser
    from rcn_keras.app.experiments.definitions import EXPERIMENTS
    from rcn_keras.presets import PRESETS

    issue = re.compile(r"\bissues? \d+", re.I)
    texts = {str(page.relative_to(ROOT)): page.read_text() for page in PAGES}
    texts.update({f"preset {p.name}": p.description for p in PRESETS.values()})
    texts.update({f"experiment {name}": repr(experiment) for name, experiment in EXPERIMENTS.items()})
    parser = build_parser()
    texts["rcn --help"] = parser.format_help()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        texts[f"rcn {name} --help"] = sub.format_help()
        for action in sub._actions:
            choices = getattr(action, "choices", None)
            for subname, subsub in (choices.items() if isinstance(choices, dict) else ()):
                if hasattr(subsub, "format_help"):
                    texts[f"rcn {name} {subname} --help"] = subsub.format_help()
    named = {where: issue.findall(text) for where, text in texts.items() if issue.search(text)}
    assert not named, named
