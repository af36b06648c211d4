"""Project exceptions: a user-caused error carries a one-line message the CLI prints."""
import os


class CovidSegError(Exception):
    """An error the user can cause and fix (bad input, missing model...)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


class InputError(CovidSegError):
    """The input image cannot be read or is not a usable CT."""


class IntensityError(CovidSegError):
    """The image intensities are neither HU nor a declared calibration."""


class Cancelled(CovidSegError):
    """The user cancelled a long-running operation."""


def user_message(error: BaseException) -> str:
    """One line for the user: a project error's own message, memory, or what went wrong (a bug)."""
    if isinstance(error, CovidSegError):
        return str(error)
    if isinstance(error, MemoryError):
        return "not enough memory for this image"
    return f"internal error ({type(error).__name__}): {error}"


def shown(path: os.PathLike | str) -> str:
    """A file name safe to print on one line (control characters escaped)."""
    text = os.fspath(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
