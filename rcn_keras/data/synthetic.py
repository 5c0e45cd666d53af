"""Built-in synthetic faces: procedurally drawn grey face-like images with exact 68 (or 5) landmarks.

No download needed: the README's main job and the tests train on these. Each face varies in shape
(face, eyes, brows, nose, mouth opening), pose (roll, yaw, scale, position), shading, skin and
background texture, clutter and occluders, so a fixed template scores badly and a model has to learn.
Deterministic by seed; faces come out as stage-A 160x160 crops, like the real loaders' output.
"""

from __future__ import annotations

import concurrent.futures
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rcn_keras.data import crop
from rcn_keras.data.faceset import FaceSet
from rcn_keras.keypoints import afw5_from_68

SIZE = crop.STAGE_A_SIZE
_SUPER = 2  # supersampling factor of the drawing


def _arc(x0, x1, y, bulge, n):
    t = np.linspace(0.0, 1.0, n)
    return np.stack([x0 + (x1 - x0) * t, y - bulge * np.sin(np.pi * t)], axis=-1)


def _eye(cx, cy, w, h):
    """6 eye points in iBUG order: left corner, 2 top, right corner, 2 bottom (right to left)."""
    xs = [cx - w / 2, cx - w / 6, cx + w / 6, cx + w / 2, cx + w / 6, cx - w / 6]
    ys = [cy, cy - h, cy - h, cy, cy + h, cy + h]
    return np.stack([xs, ys], axis=-1)


def template_68(p: dict) -> np.ndarray:
    """68 points in a canonical face frame (face half-width about 0.5, y down) from shape params ``p``."""
    rx, ry, jaw_y = p["face_w"], p["face_h"], p["jaw_y"]
    a = np.pi - np.arange(17) * np.pi / 16
    jaw = np.stack([rx * np.cos(a), jaw_y + ry * np.sin(a)], axis=-1)
    # narrower chin: pull the lower contour inwards
    jaw[:, 0] *= 1.0 - p["chin"] * np.sin(np.clip(a, 0, np.pi)) ** 4
    by, ex, ey = p["brow_y"], p["eye_x"], p["eye_y"]
    brow_l = _arc(-ex - 0.16, -ex + 0.14, by, p["brow_arch"], 5)
    brow_r = _arc(ex - 0.14, ex + 0.16, by, p["brow_arch"], 5)
    nose_len = p["nose_len"]
    bridge = np.stack([np.zeros(4), np.linspace(ey + 0.02, ey + 0.02 + nose_len, 4)], axis=-1)
    nb_y = ey + 0.06 + nose_len
    nw = p["nose_w"]
    nose_base = np.stack([np.linspace(-nw, nw, 5), nb_y + np.array([0.0, 0.015, 0.025, 0.015, 0.0])], axis=-1)
    ew, eh = p["eye_w"], p["eye_h"]
    eye_l = _eye(-ex, ey, ew, eh)
    eye_r = _eye(ex, ey, ew, eh)
    mx, my, mw, mo = 0.0, p["mouth_y"], p["mouth_w"], p["mouth_open"]
    ul, ll = p["lip_up"], p["lip_low"]
    upper = np.stack([mx + mw * np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1]),
                      my - np.array([0, ul * 0.8, ul, ul * 0.8, ul, ul * 0.8, 0]) + p["smile"] * np.array(
                          [-1, -0.3, 0, 0, 0, -0.3, -1])], axis=-1)
    lower = np.stack([mx + mw * np.array([0.6, 0.25, 0, -0.25, -0.6]),
                      my + mo + ll * np.array([0.7, 0.95, 1.0, 0.95, 0.7])], axis=-1)
    inner_up = np.stack([mx + mw * np.array([-0.8, -0.3, 0, 0.3, 0.8]),
                         my + np.array([0, -0.01, -0.01, -0.01, 0]) - p["smile"] * np.array([0.8, 0.2, 0, 0.2, 0.8])],
                        axis=-1)
    inner_low = np.stack([mx + mw * np.array([0.3, 0, -0.3]), my + mo * np.array([0.9, 1.0, 0.9])], axis=-1)
    inner = np.concatenate([inner_up, inner_low])  # 60 left corner, 61-63 top, 64 right corner, 65-67 bottom
    return np.concatenate([jaw, brow_l, brow_r, bridge, nose_base, eye_l, eye_r, upper, lower, inner])


def _shape_params(rng: np.random.RandomState) -> dict:
    u = rng.uniform
    return dict(face_w=u(0.44, 0.56), face_h=u(0.62, 0.78), jaw_y=u(-0.15, -0.05), chin=u(0.0, 0.35),
                brow_y=u(-0.34, -0.24), brow_arch=u(0.0, 0.06), eye_x=u(0.17, 0.24), eye_y=u(-0.17, -0.09),
                eye_w=u(0.13, 0.2), eye_h=u(0.012, 0.05), nose_len=u(0.14, 0.24), nose_w=u(0.06, 0.11),
                mouth_y=u(0.3, 0.42), mouth_w=u(0.12, 0.21), mouth_open=u(0.0, 0.12) * (u() < 0.5),
                lip_up=u(0.02, 0.05), lip_low=u(0.03, 0.06), smile=u(-0.02, 0.04))


def _pose(points: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Yaw (a horizontal squash that moves the inner face sideways), roll, scale and position in pixels."""
    yaw = rng.uniform(-0.45, 0.45)
    x, y = points[:, 0].copy(), points[:, 1].copy()
    depth = np.clip(1.0 - (x / 0.55) ** 2, 0.0, 1.0)  # inner points sit "in front"
    x = np.sin(np.arcsin(np.clip(x / 0.6, -1, 1)) + yaw) * 0.6 + 0.08 * yaw * depth
    roll = math.radians(rng.uniform(-20, 20))
    scale = rng.uniform(72, 100)
    c, s = math.cos(roll), math.sin(roll)
    px = scale * (c * x - s * y) + SIZE / 2 + rng.uniform(-8, 8)
    py = scale * (s * x + c * y) + SIZE / 2 + rng.uniform(-8, 8)
    return np.stack([px, py], axis=-1)


def _texture(rng, size, smooth):
    """Smooth random texture in [-1, 1]."""
    noise = rng.uniform(0, 255, (size // 8 + 2, size // 8 + 2)).astype(np.uint8)
    img = Image.fromarray(noise).resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(smooth))
    return np.asarray(img, np.float32) / 127.5 - 1.0


def _draw_face(points: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Render one face whose 68 landmarks are ``points`` (edge coordinates of the 160 crop)."""
    n = SIZE * _SUPER
    to = lambda p: [tuple(v) for v in (np.asarray(p) * _SUPER - 0.5)]  # noqa: E731  edge -> draw coords
    # background: gradient, texture and clutter
    yy, xx = np.mgrid[0:n, 0:n] / n
    g = rng.uniform(-1, 1, 2)
    bg = rng.uniform(40, 200) + 60 * (g[0] * xx + g[1] * yy) + rng.uniform(10, 45) * _texture(rng, n, 2)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(2, 9)):
        x0, y0 = rng.uniform(-20, n, 2)
        w, h = rng.uniform(15, n / 2, 2)
        box = [x0, y0, x0 + w, y0 + h]
        fill = int(rng.uniform(0, 255))
        (d.ellipse if rng.uniform() < 0.5 else d.rectangle)(box, fill=fill)
    # head: hair blob, then skin polygon (jaw + forehead arc)
    jaw = points[:17]
    up = points[27] - points[8]
    up /= np.linalg.norm(up) + 1e-6
    width = np.linalg.norm(points[16] - points[0])
    t = np.linspace(0, np.pi, 15)
    side = np.array([up[1], -up[0]])
    mid = (points[0] + points[16]) / 2
    forehead = [mid + side * (width / 2) * np.cos(a) + up * (width * 0.55) * np.sin(a) for a in t]
    skin = int(rng.uniform(70, 230))
    if rng.uniform() < 0.7:
        hair = int(np.clip(skin + rng.choice([-1, 1]) * rng.uniform(50, 120), 0, 255))
        hc = mid + up * width * 0.25
        r = width * rng.uniform(0.62, 0.8) * _SUPER
        hx, hy = hc * _SUPER - 0.5
        d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=hair)
    d.polygon(to(np.concatenate([jaw, forehead[::-1][1:-1]])), fill=skin)
    # features
    contrast = rng.uniform(0.5, 1.0)
    dark = lambda k: int(np.clip(skin - contrast * k, 0, 255))  # noqa: E731
    lw = max(1, int(_SUPER * rng.uniform(1.5, 3.5)))
    d.line(to(points[17:22]), fill=dark(rng.uniform(40, 110)), width=lw)
    d.line(to(points[22:27]), fill=dark(rng.uniform(40, 110)), width=lw)
    sclera = int(np.clip(skin + rng.uniform(-10, 60), 0, 255))
    for eye in (points[36:42], points[42:48]):
        d.polygon(to(eye), fill=sclera, outline=dark(90))
        c = eye.mean(0) + rng.uniform(-0.15, 0.15) * (eye[3] - eye[0])
        r = 0.5 * max(np.linalg.norm(eye[1] - eye[5]), 1.0) * _SUPER
        cc = c * _SUPER - 0.5
        d.ellipse([cc[0] - r, cc[1] - r, cc[0] + r, cc[1] + r], fill=dark(rng.uniform(90, 160)))
    d.line(to(points[27:31]), fill=dark(rng.uniform(10, 40)), width=max(1, lw // 2))
    d.line(to(points[31:36]), fill=dark(rng.uniform(30, 80)), width=lw)
    lips = dark(rng.uniform(20, 80))
    d.polygon(to(np.concatenate([points[48:55], points[55:60]])), fill=lips)
    inner = np.concatenate([points[60:65], points[65:68]])
    d.polygon(to(inner), fill=dark(rng.uniform(100, 180)) if points[66, 1] - points[62, 1] > 1.0 else lips)
    # occluders: a random object (hand, hat brim, microphone) over part of the face
    if rng.uniform() < 0.35:
        c = points[rng.randint(68)] * _SUPER
        w, h = rng.uniform(20, 70, 2) * _SUPER
        box = [c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]
        (d.ellipse if rng.uniform() < 0.5 else d.rectangle)(box, fill=int(rng.uniform(0, 255)))
    img = np.asarray(canvas, np.float32)
    # shading, skin texture, blur, noise, gamma
    light = rng.uniform(-1, 1, 2)
    img = img * (1 + 0.35 * (light[0] * (xx - 0.5) + light[1] * (yy - 0.5)))
    img += rng.uniform(3, 15) * _texture(rng, n, 1)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6) * _SUPER))
    im = im.resize((SIZE, SIZE), Image.BOX)
    out = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(1, 8), (SIZE, SIZE))
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic_face(seed: int, num_keypoints: int = 68) -> tuple[np.ndarray, np.ndarray]:
    """One face: a (160, 160) uint8 image and its (K, 2) keypoints in edge coordinates."""
    rng = np.random.RandomState(seed)
    points = _pose(template_68(_shape_params(rng)), rng)
    image = _draw_face(points, rng)
    return image, (points if num_keypoints == 68 else afw5_from_68(points)).astype(np.float32)


def synthetic_faces(n: int, num_keypoints: int = 68, seed: int = 0) -> FaceSet:
    """``n`` synthetic faces as a `FaceSet` (stage-B rectangles from the keypoints, no border codes).

    Face i uses seed ``seed * 1_000_003 + i``, so sets with different seeds do not overlap.
    """
    if num_keypoints not in (5, 68):
        raise ValueError(f"synthetic faces have 68 keypoints or the 5 derived ones, got {num_keypoints}")
    if n < 1:
        raise ValueError(f"n must be a positive number of faces, got {n}")
    with concurrent.futures.ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        faces = list(pool.map(lambda i: synthetic_face(seed * 1_000_003 + i, num_keypoints), range(n)))
    images, kpts = zip(*faces)
    kpts = np.stack(kpts)
    return FaceSet(images=np.stack(images), keypoints=kpts,
                   rects=np.stack([crop.stage_b_rect(k) for k in kpts]),
                   border_codes=np.zeros(kpts.shape[:2], np.int32), pads=np.zeros((n, 4), np.float32),
                   names=[f"synthetic_{seed}_{i}" for i in range(n)], groups=["synthetic"] * n)
