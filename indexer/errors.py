"""Errors that carry a message meant for the user (printed without a traceback by the CLI)."""

import errno
import sqlite3
from pathlib import Path


class MoairError(Exception):
    """A problem the user can act on: bad path, foreign index, unknown plug-in name, bad query."""


class DamagedIndex(MoairError):
    """An index's files are not what moair wrote: the database, its configuration, the vector files."""


def damaged_database(database: Path, error: BaseException) -> DamagedIndex:
    """The one message for a database SQLite finds damaged (random bytes in it, a truncated file)."""
    index = database.parent
    return DamagedIndex(
        f"{database} is damaged (SQLite: {' '.join(str(error).split())}): `moair verify --index {index}` "
        "says what is wrong; restore it from a backup, or build the index again with moair index"
    )


class NotFound(MoairError):
    """An item, path or entry key that the index does not hold (HTTP 404)."""


class Locked(MoairError):
    """Another process is writing to the index, or created it meanwhile (HTTP 409)."""


class Busy(MoairError):
    """The server cannot take this request now (the decode budget is taken, generative requests
    queue, the generative model is loading): try again after ``retry_after`` seconds (HTTP 503)."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ImageError(MoairError):
    """One image could not be read; the message is a one-line reason and the run goes on."""


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or one it was raised while handling, is a full disk (or quota): as an
    OSError, from SQLite, or from FAISS's writer (a RuntimeError naming the errno's text)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, sqlite3.OperationalError) and "disk is full" in str(error):
            return True
        if isinstance(error, RuntimeError) and (
            "No space left on device" in str(error) or "Disk quota exceeded" in str(error)
        ):
            return True
        error = error.__cause__ or error.__context__
    return False
