"""Render the pictures a visitor sees without running anything (issue 20).

* ``docs/notebooks/<name>.md`` + PNGs: every notebook executed top to bottom (full mode; ``--fast`` for the
  test suite's tiny configuration), its outputs written as Markdown; ``notebooks/`` stays cleared.
* ``docs/figures/``: the README's figures:
  ``photo.png`` (a photo with every detected face and its 68 points, `rcn-300w`),
  ``sumnet_vs_rcn.png`` (pre-softmax maps of the shipped `sumnet-afw5` and `rcn-afw5` on the same faces),
  ``ced.png`` (CED curves of the shipped 68-point models next to dlib on the same validation faces, read
  from ``benchmarks/results/peer_dlib.json``, which ``benchmarks/peer_dlib.py`` writes),
  ``align_pose.png`` (head pose and aligned crops of the astronaut's face, as photographed, mirrored, tilted).

Only the public-domain astronaut photo of scikit-image is drawn (``RCN_DOCS=1`` keeps the notebooks off
the research-only 300W images), so the rendered files can be committed.

    python tools/render_docs.py                       # all, full notebooks (about 10 min on 2 cores)
    python tools/render_docs.py --only figures        # the README figures
    python tools/render_docs.py --fast --out /tmp/d   # tiny configuration
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEER_RESULTS = ROOT / "benchmarks" / "results" / "peer_dlib.json"
# CED curves drawn from peer_dlib.json: its method label -> the legend.
CED_METHODS = {"RCN rcn-300w-hr": "rcn-300w-hr", "RCN rcn-300w": "rcn-300w", "RCN rcn-300w-fast": "rcn-300w-fast",
               "dlib ERT, same box as RCN": "dlib ERT (the same box as RCN)",
               "dlib ERT, its HOG detector's box": "dlib ERT (its detector's box)"}


def notebook_markdown(book, stem: str, out_dir: pathlib.Path) -> str:
    """An executed notebook as Markdown: text cells as they are, code in ``python`` blocks, text outputs
    in plain blocks, images written beside it as ``<stem>_<n>.png``."""
    lines, n = [], 0
    for cell in book.cells:
        if cell.cell_type == "markdown":
            lines += [cell.source, ""]
            continue
        if cell.cell_type != "code":
            continue
        lines += ["```python", cell.source, "```", ""]
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                if output.name == "stdout":  # stderr holds TensorFlow's start-up log lines
                    lines += ["```", output.text.rstrip(), "```", ""]
            elif output.output_type in ("execute_result", "display_data"):
                data = output.get("data", {})
                if "image/png" in data:
                    n += 1
                    name = f"{stem}_{n}.png"
                    (out_dir / name).write_bytes(base64.b64decode(data["image/png"]))
                    lines += [f"![{stem} figure {n}]({name})", ""]
                elif "text/plain" in data:
                    lines += ["```", data["text/plain"].rstrip(), "```", ""]
            elif output.output_type == "error":
                raise RuntimeError(f"{stem}: {output.ename}: {output.evalue}")
    return "\n".join(lines).rstrip() + "\n"


def render_notebooks(out: pathlib.Path, fast: bool, names: list[str] | None = None) -> list[pathlib.Path]:
    """Execute each notebook (in a scratch folder: its runs/ stay out of the repository) and write it
    as Markdown under ``out/notebooks``."""
    import nbclient
    import nbformat

    from rcn_keras.files import atomic_write_text

    folder = out / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    env = {"RCN_DOCS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if fast:
        env["RCN_NOTEBOOK_FAST"] = "1"
    else:
        os.environ.pop("RCN_NOTEBOOK_FAST", None)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend turns figures into images
    os.environ.update(env)
    written = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if names and path.stem not in names:
            continue
        book = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as scratch:
            nbclient.NotebookClient(book, timeout=1800, kernel_name="python3",
                                    resources={"metadata": {"path": scratch}}).execute()
        md = folder / f"{path.stem}.md"
        header = (f"<!-- rendered by tools/render_docs.py{' --fast' if fast else ''} from "
                  f"notebooks/{path.name}; do not edit -->\n\n")
        atomic_write_text(md, header + notebook_markdown(book, path.stem, folder))
        print(f"wrote {md}")
        written.append(md)
    return written


def photo_figure() -> bytes:
    """The astronaut photo beside its mirror: every detected face, its box and 68 points (`rcn-300w`)."""
    import numpy as np
    from skimage import data as skdata

    import rcn_keras
    from rcn_keras.prediction_files import overlay_image

    photo = skdata.astronaut()
    group = np.concatenate([photo, photo[:, ::-1]], axis=1)
    result = rcn_keras.Landmarker.from_preset("rcn-300w", detector="auto").predict(group)[0]
    image = overlay_image(result, group)
    image.thumbnail((900, 900))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def maps_figure() -> bytes:
    """Pre-softmax maps of the nose tip: `sumnet-afw5` vs `rcn-afw5` on three crops of the photo."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    import rcn_keras
    from rcn_keras import visualize
    from rcn_keras.keypoints import FACE_5

    models = {name: rcn_keras.load_landmarker(name) for name in ("sumnet-afw5", "rcn-afw5")}
    photo = skdata.astronaut()
    tilted = np.asarray(Image.fromarray(photo).rotate(15))
    found = models["rcn-afw5"].predict([photo, photo[:, ::-1], tilted], detector="auto", level=False)
    crops = np.stack([r["faces"][0]["crop"] for r in found])[..., None].astype(np.float32)
    maps = {name: m.backbone.predict(crops, verbose=0) for name, m in models.items()}
    points = {name: np.asarray(m(crops)["keypoints"]) for name, m in models.items()}
    fig = visualize.maps_side_by_side(crops, maps, 2, points, FACE_5.names[2])
    return visualize.figure_to_png(fig, dpi=90)


def ced_figure(results: pathlib.Path = PEER_RESULTS) -> bytes:
    """CED curves of the 68-point rows of ``results`` that carry per-face errors, each labelled with its
    mean NME (%)."""
    import numpy as np

    from rcn_keras import visualize
    from rcn_keras.evaluation.nme import ced

    payload = json.loads(results.read_text())
    curves = {}
    for row in payload["68pt"]:
        label = CED_METHODS.get(row["method"].split(" (")[0])  # the method, its read-out in brackets dropped
        if label is None or "errors" not in row:
            continue
        errors = np.asarray(row["errors"]) / 100.0
        name = f"{label}: NME {100 * errors.mean():.2f} %"
        curves[name] = ced(errors, 0.10)
    if not curves:
        raise ValueError(f"{results}: no 68-point rows with per-face errors (run benchmarks/peer_dlib.py)")
    fig = visualize.ced_figure(curves, 0.10)
    fig.axes[0].set_title(f"300W validation faces ({payload['faces']['68']}), corner-midpoint NME", fontsize=9)
    return visualize.figure_to_png(fig, dpi=90)


def align_pose_figure() -> bytes:
    """The astronaut's face as photographed, mirrored and tilted: its head pose (the face's axes drawn at the
    nose, yaw / pitch / roll) and its 112 x 112 aligned crop (InsightFace's template), from `rcn-300w`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    import rcn_keras
    from rcn_keras import visualize

    photo = skdata.astronaut()
    views = {"as photographed": photo, "mirrored": photo[:, ::-1].copy(),
             "tilted 20 degrees": np.asarray(Image.fromarray(photo).rotate(-20, resample=Image.BILINEAR))}
    model = rcn_keras.Landmarker.from_preset("rcn-300w", detector="auto")
    fig, axes = plt.subplots(2, len(views), figsize=(2.6 * len(views), 5.4))
    for column, (name, image) in enumerate(views.items()):
        face = model.predict(image, align=112, pose=True)[0]["faces"][0]
        points, pose = np.asarray(face["keypoints"]), face["pose"]
        x, y, side = face["rect"]
        top = axes[0, column]
        top.imshow(image)
        top.set_xlim(x, x + side)
        top.set_ylim(y + side, y)
        top.scatter(points[:, 0], points[:, 1], s=3, c="red")
        from rcn_keras.pose import pose_rotation

        axes_3d = pose_rotation(pose["yaw"], pose["pitch"], pose["roll"])  # columns: the face's x, y, z
        for axis, colour in zip(axes_3d.T, ("tab:blue", "tab:green", "gold")):
            direction = axis if colour != "gold" else -axis  # z drawn out of the face, towards the viewer
            top.annotate("", xy=points[30] + 0.35 * side * direction[:2], xytext=points[30],
                         arrowprops=dict(arrowstyle="->", color=colour, lw=2))
        top.set_title(f"{name}\nyaw {pose['yaw']:+.0f}, pitch {pose['pitch']:+.0f}, roll {pose['roll']:+.0f}",
                      fontsize=8)
        axes[1, column].imshow(face["aligned"])
        axes[1, column].set_title("aligned, 112 x 112", fontsize=8)
        for ax in axes[:, column]:
            ax.axis("off")
    fig.tight_layout()
    return visualize.figure_to_png(fig, dpi=90)


FIGURES = {"photo.png": photo_figure, "sumnet_vs_rcn.png": maps_figure, "ced.png": ced_figure,
           "align_pose.png": align_pose_figure}


def render_figures(out: pathlib.Path) -> list[pathlib.Path]:
    """Write the README figures under ``out/figures`` (each atomically)."""
    from rcn_keras.files import atomic_write_bytes

    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        atomic_write_bytes(folder / name, draw())
        print(f"wrote {folder / name}")
        written.append(folder / name)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--only", choices=("figures", "notebooks"), help="render one part")
    p.add_argument("--notebooks", nargs="*", help="notebook names (stems) to render (default: all)")
    p.add_argument("--fast", action="store_true", help="the notebooks' tiny configuration (RCN_NOTEBOOK_FAST=1)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.only in (None, "figures"):
        render_figures(out)
    if args.only in (None, "notebooks"):
        render_notebooks(out, args.fast, args.notebooks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
