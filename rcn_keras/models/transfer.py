"""Fine-tuning: a network rebuilt for another keypoint count, starting from a trained one's weights.

Every layer whose weights have the same name and shapes in both networks is copied (trunk, decoder,
LCN); the K-map output convs (and SumNet's per-keypoint branch weights) have other shapes for another
K and keep their fresh initialisation.
"""

from __future__ import annotations

import keras
import numpy as np

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.registry import build_from_config


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy the weights of every layer of ``target`` that ``source`` has under the same name with the
    same weight shapes; returns the names of the layers left as initialised."""
    fresh = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            fresh.append(layer.name)
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(w.shape) for w in src.weights] != shapes:
            fresh.append(layer.name)
            continue
        layer.set_weights([np.asarray(keras.ops.convert_to_numpy(w)) for w in src.weights])
    return fresh


def for_keypoints(source: keras.Model, config: ModelConfig, num_keypoints: int) -> tuple[keras.Model, list[str]]:
    """The network ``config`` (the source's own) rebuilt for ``num_keypoints`` maps, in the current dtype
    policy, with ``source``'s weights wherever they fit; returns it and the layers left fresh."""
    new = config.replace(num_keypoints=num_keypoints)
    model = build_from_config(new)
    model.rcn_config = new
    fresh = transfer_weights(source, model)
    if len(fresh) == len([layer for layer in model.layers if layer.weights]):
        raise ValueError("no layer of the trained model fits the new network: is it the same architecture?")
    return model, fresh
