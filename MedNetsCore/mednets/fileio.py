"""Small file helpers shared by mednets: atomic writes and SHA-256 digests.

Every file mednets produces (checkpoints, training state, histories, catalogues, downloads) is written through
:func:`atomic_write`, so a reader never sees a half-written file: the data goes to a temporary file in the destination
folder, is flushed and fsync'ed, then renamed over the destination with :func:`os.replace` (atomic on POSIX and
Windows when source and destination are on the same volume, which the same-folder temporary file guarantees). If
anything fails (or the operation is cancelled) before the rename, the temporary file is deleted and the destination is
left exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Optional, Union

__all__ = [
    "PathLike",
    "ChecksumMismatchError",
    "atomic_write",
    "atomic_output_path",
    "file_extension",
    "sha256_file",
    "verify_sha256",
    "normalize_sha256",
]

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK_SIZE = 1 << 20


class ChecksumMismatchError(ValueError):
    """A file's SHA-256 differs from the expected one (the file is corrupted, incomplete or not the file we expect)."""

    def __init__(self, path: PathLike, expected: str, actual: str, hint: str = "") -> None:
        self.path = os.fspath(path)  # a file path or a URL
        self.expected = expected
        self.actual = actual
        message = (f"SHA-256 checksum mismatch for '{self.path}': expected {expected}, got {actual}. "
                   "The file is corrupted, incomplete or is not the expected file.")
        super().__init__(message + (" " + hint if hint else ""))


def _fsync_directory(folder: Path) -> None:
    """Persist a rename in ``folder`` (POSIX); silently skipped where directories cannot be opened (Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _permissions_for(destination: Path) -> int:
    """Keep the permissions of a file being replaced; new files get rw-r--r-- (mkstemp would leave rw-------)."""
    try:
        return destination.stat().st_mode & 0o777
    except OSError:
        return 0o644


def file_extension(path: PathLike) -> str:
    """Lower-case extension of ``path``, with the double extensions ``.nii.gz`` and ``.mrk.json`` kept whole.

    ``""`` when the name has no extension. ``scan.seg.nrrd`` gives ``.nrrd`` (the format, which is what writers
    dispatch on).
    """
    name = Path(path).name.lower()
    for double in (".nii.gz", ".mrk.json"):
        if name.endswith(double):
            return double
    return Path(name).suffix


@contextlib.contextmanager
def atomic_output_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same extension) for a writer that takes a file name.

    When the ``with`` block exits normally, the temporary file is fsync'ed and renamed over ``path`` with
    :func:`os.replace`; when it raises (including :class:`~mednets.progress.OperationCancelled`), the temporary file is
    removed, ``path`` is untouched and the exception propagates. The temporary name is ``.<name>.<random><extension>``
    in the destination folder (created if missing), so writers that pick the format from the extension (SimpleITK,
    VTK) see the real one, and the rename never crosses a file system.
    """
    destination = Path(path)
    folder = destination.parent
    folder.mkdir(parents=True, exist_ok=True)
    extension = file_extension(destination)
    stem = destination.name[:len(destination.name) - len(extension)] if extension else destination.name
    handle, temporary_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=extension or ".tmp", dir=str(folder))
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, _permissions_for(destination))
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(folder)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", encoding: Optional[str] = None,
                 newline: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it atomically replaces ``path``.

    Args:
        path: destination file. Its folder is created if missing.
        mode: ``"wb"`` (default) or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise). Only write modes are
            accepted: appending or reading cannot be made atomic this way.
        encoding: text encoding for ``"w"`` (default ``"utf-8"``).
        newline: passed to :func:`open` in text mode (use ``""`` for the :mod:`csv` module).

    Yields:
        The open temporary file, with the guarantees of :func:`atomic_output_path`: when the ``with`` block exits
        normally the data replaces ``path``; when it raises, ``path`` is untouched and the exception propagates.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write supports the write modes 'w', 'wt' and 'wb', got mode={mode!r}")
    with atomic_output_path(path) as temporary:
        if "b" in mode:
            handle = open(temporary, "wb")
        else:
            handle = open(temporary, "w", encoding=encoding or "utf-8", newline=newline)
        with handle:
            yield handle


def sha256_file(path: PathLike, chunk_size: int = _CHUNK_SIZE) -> str:
    """Return the SHA-256 digest of the file at ``path`` as 64 lower-case hexadecimal characters (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_sha256(value: str) -> str:
    """Validate a SHA-256 hex digest (optionally prefixed ``sha256:``) and return it in lower case."""
    if not isinstance(value, str):
        raise TypeError(f"a SHA-256 digest must be a string of 64 hexadecimal characters, got {type(value).__name__}")
    text = value.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"a SHA-256 digest must be 64 hexadecimal characters, got {value!r}")
    return text


def verify_sha256(path: PathLike, expected: str, hint: str = "") -> str:
    """Compute the SHA-256 of ``path`` and raise :class:`ChecksumMismatchError` unless it equals ``expected``.

    Returns the (matching) digest.
    """
    expected = normalize_sha256(expected)
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(path, expected, actual, hint)
    return actual
