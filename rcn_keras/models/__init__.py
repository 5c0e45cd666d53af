"""Networks: configurations (`config`), layers, the SumNet / RCN / denoiser builders, the pixel-softmax
head and read-out (`head`), `build_model` (`registry`). Import from the modules; the package imports
nothing so that configurations load without TensorFlow."""
