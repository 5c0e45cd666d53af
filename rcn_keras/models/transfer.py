"""Fine-tuning: a network rebuilt for another keypoint count, starting from a trained one's weights.

Every layer whose weights have the same name and shapes in both networks is copied (trunk, decoder,
LCN). The K-map output convs (and SumNet's per-keypoint branch weights) have other shapes for another
K: with a ``point_map`` (new point j is the source's point ``point_map[j]``) their channels are taken
from those points; else the output convs start at zero (every map uniform, so the first updates do not
push large random logits back through the trained features) and branch weights as initialised.
"""

from __future__ import annotations

import keras
import numpy as np

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.registry import build_from_config


def transfer_weights(source: keras.Model, target: keras.Model, point_map: list[int] | None = None) -> list[str]:
    """Copy the weights of every layer of ``target`` that ``source`` has under the same name with the
    same weight shapes; layers whose last axis is the keypoint axis take the ``point_map`` channels, or
    (output convs) start at zero. Returns the names of the layers not copied from ``source``."""
    k_new, k_old = target.output.shape[-1], source.output.shape[-1]
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            fresh.append(layer.name)
            continue
        old = [np.asarray(keras.ops.convert_to_numpy(w)) for w in src.weights]
        shapes = [tuple(w.shape) for w in layer.weights]
        if [w.shape for w in old] == shapes:
            layer.set_weights(old)
            continue
        per_point = all(w.shape[-1] == k_old and s[-1] == k_new and w.shape[:-1] == s[:-1] for w, s in zip(old, shapes))
        if per_point and point_map is not None:
            layer.set_weights([w[..., list(point_map)] for w in old])
            continue
        if per_point and "kernel" in {w.name for w in layer.weights}:
            layer.set_weights([np.zeros(s, np.float32) for s in shapes])
        fresh.append(layer.name)
    return fresh


def for_keypoints(source: keras.Model, config: ModelConfig, num_keypoints: int,
                  point_map: list[int] | None = None) -> tuple[keras.Model, list[str]]:
    """The network ``config`` (the source's own) rebuilt for ``num_keypoints`` maps, in the current dtype
    policy, with ``source``'s weights wherever they fit (``point_map``: see the module); returns it and
    the layers not copied from ``source``."""
    k_old = source.output.shape[-1]
    if point_map is not None and (len(point_map) != num_keypoints
                                  or not all(isinstance(i, int) and 0 <= i < k_old for i in point_map)):
        raise ValueError(f"init_points must list, for each of the {num_keypoints} new points, the index of a "
                         f"point of the trained model (0..{k_old - 1}), got {point_map}")
    new = config.replace(num_keypoints=num_keypoints)
    model = build_from_config(new)
    model.rcn_config = new
    fresh = transfer_weights(source, model, point_map)
    if len(fresh) == len([layer for layer in model.layers if layer.weights]):
        raise ValueError("no layer of the trained model fits the new network: is it the same architecture?")
    return model, fresh
