"""The detector interface: `Detections` (boxes, scores, optional eye points) and the `Detector` base class
that every backend fills in with one method. numpy and Pillow only; each backend imports its package
when it is first used, and a missing optional package is one `MissingExtra` line naming the extra."""

from __future__ import annotations

import dataclasses

import numpy as np

from rcn_keras.extras import require


@dataclasses.dataclass(frozen=True)
class Detections:
    """N faces of one image, most confident first. ``boxes`` (N, 4) float32 x, y, w, h in edge coordinates
    of the image (pixel j spans [j, j + 1)); ``scores`` (N,) the detector's confidence; ``eyes`` (N, 2, 2)
    eye centres (the one on the image's left first), or ``None`` when the detector gives none."""

    boxes: np.ndarray
    scores: np.ndarray
    eyes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, index) -> "Detections":
        index = np.asarray(index, np.int64)
        return Detections(self.boxes[index], self.scores[index], None if self.eyes is None else self.eyes[index])


class Detector:
    """A face detector. Subclasses set ``name``, ``package``, ``extra`` and implement `_detect` on an RGB
    uint8 image no larger than ``max_side``; `detect` downsizes larger images (the detectors were measured
    at a 640-pixel long side: faster, and as accurate on faces of ordinary size), maps the boxes back and
    keeps the faces scoring at least ``min_score``."""

    name = "base"
    package = ""
    extra = ""
    default_min_score = 0.5

    def __init__(self, min_score: float | None = None, max_side: int = 640):
        self.min_score = self.default_min_score if min_score is None else float(min_score)
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 32:
            raise ValueError(f"max_side={max_side!r} must be an integer >= 32 (pixels)")
        self.max_side = max_side

    def _import(self, module: str):
        return require(module, f"the {self.name!r} face detector", self.package, self.extra)

    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(boxes (N, 4) x, y, w, h; scores (N,); eyes (N, 2, 2) or None) in pixels of ``rgb``."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 (H, W, 3) image (grey (H, W) is expanded to RGB)."""
        rgb = np.asarray(image)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=-1)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect() takes an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        factor = max(h, w) / self.max_side
        if factor > 1:
            from PIL import Image

            size = (max(1, round(w / factor)), max(1, round(h / factor)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0))
            fx, fy = w / size[0], h / size[1]
        else:
            small, fx, fy = np.ascontiguousarray(rgb), 1.0, 1.0
        boxes, scores, eyes = self._detect(small)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32([fx, fy, fx, fy])
        scores = np.asarray(scores, np.float32).reshape(-1)
        if eyes is not None:
            eyes = np.asarray(eyes, np.float32).reshape(-1, 2, 2) * np.float32([fx, fy])
            eyes = np.where((eyes[:, :1, 0] > eyes[:, 1:, 0])[..., None], eyes[:, ::-1], eyes)  # image-left first
        keep = np.flatnonzero((scores >= self.min_score) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return Detections(boxes, scores, eyes).take(keep)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_score={self.min_score}, max_side={self.max_side})"
