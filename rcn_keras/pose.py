"""Head pose (yaw, pitch, roll in degrees) from a face's points, by fitting a 3D mean face to them
(perspective-n-point).

The camera is assumed to be a pinhole with its principal point at the image centre and a focal length of
the image's longer side (a 53-degree field of view across it: a phone's or a webcam's main camera, give
``focal`` when you know it); without an image size the fit is scaled orthographic. The angles are
relative to the line of sight from the camera to the face: a face looking into the lens reads 0, 0, 0
wherever it is in the picture (``rotation`` is in the camera's axes). The 3D face is our
68-point mean face (`tools/mean_face.py`: rigid factorisation of the 300W training shapes); the fit uses
its 51 inner points (brows, nose, eyes, mouth): the jaw's points slide along the visible contour as the
head turns. A 5-point face is fitted by the mean face's 5 derived points (`keypoints.FIVE_FROM_68`).

Angles (a frontal face looking at the camera is 0, 0, 0): ``yaw`` > 0 when the face turns towards the
image's right (its nose points right), ``pitch`` > 0 when it looks down, ``roll`` > 0 when it tilts
clockwise in the image (the eye on the right lower). Beyond about 60 degrees of yaw the far side's points
are guesses of any 2D landmark model, and so is the pose.

Why our own fit and not OpenCV's ``solvePnP``: the problem has six unknowns and up to 51 points; a closed
form (scaled orthographic) start and a few Gauss-Newton steps solve it in numpy to within 0.01 degree on
exact data (tests), where OpenCV would add a 60 MB dependency for this one call.
"""

from __future__ import annotations

import math

import numpy as np

from rcn_keras.align import mean_face
from rcn_keras.keypoints import FIVE_FROM_68

INNER = np.arange(17, 68)
GAUSS_NEWTON_STEPS = 12


def model_points(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the face's points used, their 3D mean-face points) for a 68- or 5-point face."""
    face = np.asarray(mean_face()["points_3d"], np.float64)
    if num_points == 68:
        return INNER, face[INNER]
    if num_points == 5:
        return np.arange(5), FIVE_FROM_68 @ face
    raise ValueError(f"head pose needs 5 or 68 points; got {num_points}")


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rz(rz) @ Ry(ry) @ Rx(rx), angles in radians (camera axes: x right, y down, z forward)."""
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


def angles(rotation: np.ndarray) -> dict[str, float]:
    """Yaw, pitch and roll in degrees (module docstring) of a rotation from the mean face to the camera."""
    r = np.asarray(rotation, np.float64)
    ry = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    rx = math.atan2(r[2, 1], r[2, 2])
    rz = math.atan2(r[1, 0], r[0, 0])
    return {"yaw": -math.degrees(ry), "pitch": math.degrees(rx), "roll": math.degrees(rz)}


def pose_rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The rotation of a head turned by ``yaw``, ``pitch`` and ``roll`` degrees (the inverse of `angles`)."""
    return rotation_matrix(math.radians(pitch), -math.radians(yaw), math.radians(roll))


def project(points3d: np.ndarray, rotation: np.ndarray, translation: np.ndarray, focal: float | None,
            centre: np.ndarray) -> np.ndarray:
    """Image points of ``points3d`` turned and moved into the camera: perspective with ``focal`` pixels
    about ``centre``; ``focal=None``: scaled orthographic (``translation[2]`` is then the scale)."""
    cam = points3d @ rotation.T + np.array([translation[0], translation[1], 0.0])
    if focal is None:
        return cam[:, :2] * translation[2] + centre
    depth = points3d @ rotation[2] + translation[2]
    return focal * cam[:, :2] / depth[:, None] + centre


def orthographic_fit(model: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Closed-form scaled orthographic fit: (rotation, scale, 2D shift) taking ``model`` onto ``image``."""
    m, c = model - model.mean(0), image.mean(0)
    affine = np.linalg.lstsq(m, image - c, rcond=None)[0].T  # (2, 3)
    u, s, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    rotation = np.stack([rows[0], rows[1], np.cross(rows[0], rows[1])])
    return rotation, float(s.mean()), c - float(s.mean()) * (rotation[:2] @ model.mean(0))


def head_pose(points: np.ndarray, image_size: tuple[int, int] | None = None, focal: float | None = None) -> dict:
    """Yaw, pitch and roll (degrees, module docstring) of one face from its 68 or 5 ``points`` (x, y image
    pixels), with ``image_size`` (width, height) for the perspective camera; also ``rotation`` (3x3, mean
    face to the line of sight's axes) and ``error``: the fit's mean distance from the points, as a fraction of the face's
    outer-eye-corner distance (a wrong fit or an unusual face reads above about 0.1)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"head pose needs points (N, 2); got an array of shape {points.shape}")
    index, model = model_points(len(points))
    seen = points[index]
    if not np.all(np.isfinite(seen)):
        raise ValueError("head pose needs finite points; this face has NaN or infinite ones")
    if np.ptp(seen, axis=0).max() < 1e-6:
        raise ValueError("head pose needs a face: all its points are at one place (a degenerate shape)")
    rotation, scale, shift = orthographic_fit(model, seen)
    if image_size is None:
        fitted = project(model, rotation, np.array([*(shift / scale), scale]), None, np.zeros(2))
        return _result(rotation, seen, fitted, scale)
    width, height = image_size
    focal = float(focal or max(width, height))
    centre = np.array([width, height], np.float64) / 2 - 0.5
    depth = focal / scale
    params = np.concatenate([[0.0, 0.0, 0.0], [*((shift - centre) / scale), depth]])

    def residual(p):
        r = rotation_matrix(*p[:3]) @ rotation
        return (project(model, r, p[3:], focal, centre) - seen).reshape(-1)

    for _ in range(GAUSS_NEWTON_STEPS):  # rotation as a small correction of the orthographic start
        r0 = residual(params)
        steps = np.array([1e-5] * 3 + [1e-5 * max(1.0, abs(params[5]))] * 3)
        jacobian = np.stack([(residual(params + np.eye(6)[i] * h) - r0) / h for i, h in enumerate(steps)], axis=1)
        delta = np.linalg.lstsq(jacobian, -r0, rcond=None)[0]
        params = params + delta
        if np.abs(delta[:3]).max() < 1e-9:
            break
    rotation = rotation_matrix(*params[:3]) @ rotation
    fitted = project(model, rotation, params[3:], focal, centre)
    return _result(line_of_sight(params[3:]).T @ rotation, seen, fitted, scale)


def line_of_sight(translation: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the camera's axis (0, 0, 1) onto the ray to ``translation``: angles
    relative to it read 0, 0, 0 for a face looking into the lens anywhere in the picture."""
    d = np.asarray(translation, np.float64) / np.linalg.norm(translation)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s, c = np.linalg.norm(axis), d[2]
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * cross + (1 - c) * cross @ cross


def _result(rotation: np.ndarray, seen: np.ndarray, fitted: np.ndarray, scale: float) -> dict:
    error = float(np.linalg.norm(fitted - seen, axis=1).mean() / scale)  # model units: outer eye corners 1 apart
    return {**angles(rotation), "rotation": rotation, "error": error}
