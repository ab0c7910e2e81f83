"""What every module's command line (``python -m <Module>Lib predict|train|evaluate``) shares.

* :func:`run_command`: parse the arguments and run the chosen sub-command; exit status 0 on success, 2 with a
  one-line ``error: ...`` on stderr for bad input (``ValueError``, missing files, unreadable files, missing optional
  packages), 130 when interrupted (MODULE_CHECKLIST: "exit code != 0 with a one-line reason on bad input").
* :func:`progress_bar`: a tqdm bar on stderr as a mednets progress callback.
* :func:`read_label_file` / :func:`write_label_file`: label maps as plain volumes (``.nrrd``, ``.nii.gz``, ...) or as
  Slicer ``.seg.nrrd`` segmentations with named, coloured segments (those need ``slicer-core``).
* :func:`rows_to_csv` and :func:`write_text`: metric tables as CSV, written atomically.

Torch-free; ``mednets.mrml`` (slicer-core) is imported only for ``.seg.nrrd`` files.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mednets.fileio import PathLike, atomic_write
from mednets.image import Volume

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "run_command", "progress_bar", "is_segmentation_file",
           "read_label_file", "write_label_file", "rows_to_csv", "write_text"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: Errors that mean "the user's input or environment is wrong", reported in one line (anything else is a bug: traceback).
_USER_ERRORS = (ValueError, FileNotFoundError, OSError, ImportError)


def run_command(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` with ``parser`` and run ``args.run(args)`` (set with ``set_defaults(run=...)``).

    Returns the exit status: the command's own (0 by default), :data:`EXIT_BAD_INPUT` with ``error: <first line>`` on
    stderr for a user error, :data:`EXIT_INTERRUPTED` on Ctrl-C. argparse's own usage errors exit with 2 as usual.
    """
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _USER_ERRORS as error:
        text = str(error).strip()
        print(f"error: {text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0 if status is None else int(status)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[..., None]]:
    """A ``progress(fraction, message="")`` callback drawing a tqdm bar (percent) on stderr; closed on exit."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=description, unit="%", leave=True, file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def progress(fraction: float, message: str = "") -> None:
        bar.n = int(round(100 * max(0.0, min(1.0, float(fraction)))))
        bar.set_postfix_str(str(message)[:60], refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def is_segmentation_file(path: PathLike) -> bool:
    """Whether ``path`` names a Slicer segmentation file (``.seg.nrrd``)."""
    return Path(path).name.lower().endswith(".seg.nrrd")


def read_label_file(path: PathLike, class_names: Sequence[str]) -> Tuple[np.ndarray, Volume]:
    """``(labels int64 (K, J, I), grid Volume)`` from a label-map volume or a ``.seg.nrrd``.

    In a ``.seg.nrrd`` the segments are matched to ``class_names`` by name (``class_names[i]`` -> label ``i + 1``,
    missing classes stay empty); a label-map file is taken as it is.
    """
    if is_segmentation_file(path):
        from mednets import mrml  # slicer-core

        return mrml.read_segmentation_file(path, class_names, allow_missing=True)
    from mednets.io import read_volume

    volume = read_volume(path)
    if volume.is_vector:
        raise ValueError(f"'{path}' has {volume.num_channels} components per voxel; a label map has one")
    return np.rint(volume.array).astype(np.int64), volume


def write_label_file(labels: np.ndarray, reference: Volume, path: PathLike,
                     segments: Optional[Sequence[Any]] = None) -> Path:
    """Write ``labels`` on the grid of ``reference``: a ``.seg.nrrd`` with ``segments`` (see
    :func:`mednets.mrml.new_segmentation_node`) or, for any other extension, a label-map volume. Atomic."""
    if is_segmentation_file(path):
        from mednets import mrml  # slicer-core

        return mrml.write_segmentation_file(labels, reference, path, segments)
    from mednets.io import write_volume

    return write_volume(reference.with_array(labels), path)


def rows_to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[Tuple[str, str]], precision: int = 6) -> str:
    """A CSV table of ``rows``: ``columns`` are ``(row key, column title)``; floats with ``precision`` significant
    digits, other values as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([title for _, title in columns])
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            is_float = isinstance(value, (float, np.floating))
            cells.append(f"{float(value):.{precision}g}" if is_float else str(value))
        writer.writerow(cells)
    return buffer.getvalue()


def write_text(path: Union[PathLike, None], text: str) -> Optional[Path]:
    """Write ``text`` to ``path`` atomically (nothing when ``path`` is None); returns the path."""
    if path is None:
        return None
    with atomic_write(path, "w", newline="") as handle:
        handle.write(text)
    return Path(path)
