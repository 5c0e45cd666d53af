"""Face detectors behind one small interface (`Detector.detect(image) -> Detections`), chosen by name."""
