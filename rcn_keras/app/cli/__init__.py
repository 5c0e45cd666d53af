"""The ``rcn`` command: `main` parses the arguments (before TensorFlow is imported) and runs one
sub-command module (`models`, `train`, `evaluate`, `predict`, `export`, `experiment`)."""
