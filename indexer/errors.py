"""Errors that carry a message meant for the user (printed without a traceback by the CLI)."""


class MoairError(Exception):
    """A problem the user can act on: bad path, foreign index, unknown plug-in name, bad query."""


class ImageError(MoairError):
    """One image could not be read; the message is a one-line reason and the run goes on."""
