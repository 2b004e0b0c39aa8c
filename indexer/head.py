"""A projection head: one linear map per embedding space on top of a frozen encoder, trained by
``indexer.head_training`` (E5-V's text-only recipe, ``moair train-head``) and applied by the
index to stored rows and queries. Applying a head, and its file format (a ``.npz`` with the
matrix and JSON metadata, written atomically), need numpy only."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from indexer.errors import MoairError
from indexer.mixture import normalise_rows
from indexer.shards import durable_replace

FORMAT = "moair-projection-head"
FORMAT_VERSION = 1


def fingerprint(matrix: np.ndarray) -> str:
    """Short content hash of a head's matrix (float32, C order, little endian)."""
    data = np.ascontiguousarray(matrix, dtype="<f4")
    digest = hashlib.sha256()
    digest.update(f"{data.shape[0]}x{data.shape[1]}:".encode())
    digest.update(data.tobytes())
    return digest.hexdigest()[:16]


class Evaluation(BaseModel):
    """Losses at one point of training (step 0 is the identity head)."""

    step: int
    train_loss: float
    heldout_loss: float | None = None
    heldout_accuracy: float | None = None


class TrainingReport(BaseModel):
    """What ``train_head`` did and measured. Losses are InfoNCE over a whole split at once, all
    its positives and hard negatives as candidates (in chunks of 500 triples for bigger splits;
    the train loss on a fixed sample of at most 2,000 training triples); accuracy is the share of
    held-out triples with a negative where cos(anchor, positive) > cos(anchor, negative)."""

    triples: int
    train_triples: int
    heldout_triples: int
    dim: int
    steps: int
    batch_size: int
    lr: float
    temperature: float
    identity_pull: float
    seed: int
    best_step: int  # the step whose weights were kept (0: the identity)
    evaluations: list[Evaluation]
    train_loss_before: float
    train_loss_after: float
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    heldout_accuracy_before: float | None
    heldout_accuracy_after: float | None
    embed_seconds: float
    train_seconds: float
    seconds: float


class ProjectionHead:
    """A d x d linear map on L2-normalised embeddings, re-normalised after: ``normalise(x @ W.T)``."""

    def __init__(
        self,
        matrix: np.ndarray,
        encoder: str | None = None,
        encoder_version: str | None = None,
        training: TrainingReport | dict | None = None,
    ):
        matrix = np.array(matrix, dtype=np.float32, order="C")
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
            raise MoairError(f"a projection head must be a square matrix, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise MoairError("a projection head's matrix has non-finite values")
        self.matrix = matrix
        self.encoder = encoder
        self.encoder_version = encoder_version
        self.training = TrainingReport.model_validate(training) if isinstance(training, dict) else training

    @classmethod
    def identity(cls, dim: int, encoder: str | None = None, encoder_version: str | None = None) -> ProjectionHead:
        """The untrained head: changes nothing."""
        return cls(np.eye(dim, dtype=np.float32), encoder, encoder_version)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def fingerprint(self) -> str:
        """Short hash of the matrix: what an index records to know which head it was built with."""
        return fingerprint(self.matrix)

    @property
    def version(self) -> str:
        return f"head-{self.fingerprint}"

    def is_identity(self) -> bool:
        return bool(np.array_equal(self.matrix, np.eye(self.dim, dtype=np.float32)))

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """Map embeddings (one row or a 2-D batch; normalised here anyway) through the head and
        re-normalise. Float32 out, same shape in; an all-zero row (an absent block) stays zero."""
        rows = np.asarray(rows, dtype=np.float32)
        if rows.shape[-1:] != (self.dim,) or rows.ndim not in (1, 2):
            raise MoairError(f"projection head is for {self.dim}-d embeddings, got shape {rows.shape}")
        return normalise_rows(normalise_rows(rows) @ self.matrix.T)

    # -- files

    def metadata(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "fingerprint": self.fingerprint,
            "encoder": self.encoder,
            "encoder_version": self.encoder_version,
            "training": self.training.model_dump() if self.training is not None else None,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the head as a ``.npz`` (matrix + JSON metadata) atomically: a temporary file in
        the same folder, then ``durable_replace``. Returns the path written."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(f, matrix=self.matrix, metadata=np.array(json.dumps(self.metadata(), sort_keys=True)))
            durable_replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int | None = None) -> ProjectionHead:
        """Read a head written by ``save``; with ``dim``, also check it fits that embedding size.
        MoairError for a missing, corrupt, foreign or wrong-size file."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise MoairError(f"no projection head at {path}")
        try:
            with np.load(path, allow_pickle=False) as archive:
                matrix = np.array(archive["matrix"])
                metadata = json.loads(str(archive["metadata"][()]))
        except Exception as error:  # zip, npy header, missing member, JSON: all mean an unreadable file
            raise MoairError(
                f"{path} is not a readable projection head ({type(error).__name__}: {error}); train it again with "
                "moair train-head"
            ) from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise MoairError(f"{path} is not a moair projection head")
        if metadata.get("format_version") != FORMAT_VERSION:
            found = metadata.get("format_version")
            raise MoairError(f"{path} has projection head format {found}, this moair reads {FORMAT_VERSION}")
        square = matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]
        if matrix.dtype != np.float32 or not square or matrix.shape[0] != metadata.get("dim"):
            raise MoairError(
                f"{path} is corrupt: matrix {matrix.dtype} {matrix.shape}, metadata says dim {metadata.get('dim')}"
            )
        if fingerprint(matrix) != metadata.get("fingerprint"):
            raise MoairError(f"{path} is corrupt: its matrix does not match its recorded fingerprint")
        if dim is not None and matrix.shape[0] != dim:
            raise MoairError(
                f"{path} is a head for {matrix.shape[0]}-d embeddings, but this encoder's are {dim}-d;"
                " train a head for it with moair train-head"
            )
        try:
            training = TrainingReport.model_validate(metadata["training"]) if metadata.get("training") else None
        except Exception:
            training = None  # the summary is informative only; the matrix is what matters
        return cls(matrix, metadata.get("encoder"), metadata.get("encoder_version"), training)

    def __repr__(self) -> str:
        return f"ProjectionHead(dim={self.dim}, encoder={self.encoder!r}, fingerprint={self.fingerprint!r})"
