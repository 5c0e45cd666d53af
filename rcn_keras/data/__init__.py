"""Datasets (readers, loaders, synthetic faces), preprocessing, augmentation, tf.data pipelines and the
face cache. Import from the modules; the package imports nothing so that readers load without TensorFlow."""
