"""Plot helpers shared by the training callback, the CLI and the notebooks: keypoints on faces and
grids of pre-softmax maps (the paper's key figure)."""

from __future__ import annotations

import io
import os

import numpy as np


def _plt():
    import matplotlib

    if not os.environ.get("DISPLAY") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_keypoints(ax, image: np.ndarray, pred: np.ndarray | None = None, gt: np.ndarray | None = None,
                   title: str | None = None) -> None:
    """Show a grey image with predicted (red x) and true (green o) keypoints given in pixel coordinates
    of that image (edge convention: pixel j spans [j, j + 1))."""
    img = np.asarray(image).squeeze()
    h, w = img.shape[:2]
    ax.imshow(img, cmap="gray", extent=(0, w, h, 0))
    if gt is not None:
        ax.scatter(gt[:, 0], gt[:, 1], s=10, facecolors="none", edgecolors="lime", linewidths=0.8, label="true")
    if pred is not None:
        ax.scatter(pred[:, 0], pred[:, 1], s=10, c="red", marker="x", linewidths=0.8, label="predicted")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


def presoftmax_grid(images: np.ndarray, maps: np.ndarray, pred: np.ndarray | None = None,
                    gt: np.ndarray | None = None, keypoints: list[int] | None = None,
                    titles: list[str] | None = None):
    """A figure: one row per sample with the image (predicted vs true points) and the pre-softmax map of
    each chosen keypoint (true point marked). ``pred``/``gt`` are normalised (N, K, 2) coordinates."""
    plt = _plt()
    images, maps = np.asarray(images), np.asarray(maps)
    n, size, k = len(images), images.shape[1], maps.shape[-1]  # points and maps drawn on the crop's pixels
    keypoints = list(range(k)) if keypoints is None else list(keypoints)
    if len(keypoints) > 8:
        keypoints = keypoints[:: max(1, len(keypoints) // 8)][:8]
    cols = 1 + len(keypoints)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i in range(n):
        plot_keypoints(axes[i, 0], images[i], None if pred is None else pred[i] * size,
                       None if gt is None else gt[i] * size, titles[i] if titles else None)
        for j, kp in enumerate(keypoints, start=1):
            ax = axes[i, j]
            ax.imshow(maps[i, :, :, kp], cmap="magma", extent=(0, size, size, 0))
            if gt is not None:
                ax.scatter([gt[i, kp, 0] * size], [gt[i, kp, 1] * size], s=12, facecolors="none",
                           edgecolors="cyan", linewidths=0.8)
            ax.axis("off")
            if i == 0:
                ax.set_title(f"kp {kp}", fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def figure_to_png(fig, path: str | os.PathLike | None = None, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes (written atomically to ``path`` if given) and close it."""
    from rcn_keras.files import atomic_write_bytes

    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, png)
    return png


def ced_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float):
    """Cumulative error distribution plot: name -> (thresholds, fraction of faces)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, (xs, ys) in curves.items():
        ax.plot(np.asarray(xs) * 100, ys, label=name)
    ax.set_xlim(0, threshold * 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of faces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sumnet_branch_maps(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each SumNet branch's contribution to the summed pre-softmax maps: level name -> (N, 80, 80, K)
    maps already multiplied by the learned branch weights (their sum is the model output)."""
    import keras

    from rcn_keras.models.config import LEVELS

    names = {layer.name for layer in model.layers}
    levels = [lvl for lvl in LEVELS if f"b{lvl.lower()}_out" in names]
    if not levels:
        raise ValueError(f"model {model.name!r} is not a SumNet (no branch output layers)")
    outputs = [model.get_layer(f"b{lvl.lower()}_up" if f"b{lvl.lower()}_up" in names else f"b{lvl.lower()}_out").output
               for lvl in levels]
    branches = keras.Model(model.input, outputs).predict(np.asarray(images, np.float32), verbose=0)
    branches = branches if isinstance(branches, list) else [branches]
    if "branch_sum" in names:
        w = keras.ops.convert_to_numpy(model.get_layer("branch_sum").branch_weights)  # (R, K) or (R, H, W, K)
        branches = [b * w[i] for i, b in enumerate(branches)]
    return dict(zip(levels, branches))


def maps_side_by_side(crops: np.ndarray, maps: dict[str, np.ndarray], keypoint: int,
                      points: dict[str, np.ndarray] | None = None, keypoint_name: str | None = None):
    """The paper's comparison: for each face (column), its crop and each model's (row) pre-softmax map of
    one ``keypoint``, with that model's prediction (``points``: name -> (N, K, 2) in [0, 1]) as a cross.

    ``crops`` (N, 80, 80[, 1]); ``maps``: model name -> (N, 80, 80, K)."""
    plt = _plt()
    n = len(crops)
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(2.1 * n, 2.1 * (1 + len(maps))), squeeze=False)
    label = keypoint_name or f"keypoint {keypoint}"
    for j in range(n):
        ax = axes[0, j]
        ax.imshow(np.asarray(crops[j]).squeeze(), cmap="gray", extent=(0, 80, 80, 0))
        ax.axis("off")
        for name, m in maps.items():
            row = 1 + list(maps).index(name)
            a = axes[row, j]
            a.imshow(m[j, :, :, keypoint], cmap="magma", extent=(0, 80, 80, 0))
            if points is not None and name in points:
                x, y = points[name][j, keypoint] * 80
                a.scatter([x], [y], marker="x", c="cyan", s=30, linewidths=1.2)
                ax.scatter([x], [y], marker="x", s=30, linewidths=1.2, label=name)
            a.set_xticks([])
            a.set_yticks([])
            if j == 0:
                a.set_ylabel(name, fontsize=9)
    axes[0, 0].set_title(label, fontsize=9, loc="left")
    if points:
        axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
