"""What every module's command line (``python -m <Module>Lib predict|train|evaluate``) shares.

* :func:`run_command`: parse the arguments and run the chosen sub-command; exit status 0 on success, 2 with a
  one-line ``error: ...`` on stderr for bad input (``ValueError``, missing files, unreadable files, missing optional
  packages), 130 when interrupted (MODULE_CHECKLIST: "exit code != 0 with a one-line reason on bad input").
* :func:`progress_bar`: a tqdm bar on stderr as a mednets progress callback; with ``--progress json`` (what a panel's
  child process gets, :class:`mednets.jobs.ProcessJob`) one JSON object per line on stdout instead:
  ``{"type": "progress", "fraction": f, "message": m}``; :func:`emit_result` adds ``{"type": "result", ...}`` lines
  and a user error ends with ``{"type": "error", "message": m}``. :func:`emit_log` writes a log line either way.
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
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mednets.fileio import PathLike, atomic_write
from mednets.image import Volume

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "run_command", "progress_bar", "emit_result", "emit_log",
           "json_progress", "is_segmentation_file",
           "read_label_file", "write_label_file", "rows_to_csv", "write_text"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: Errors that mean "the user's input or environment is wrong", reported in one line (anything else is a bug: traceback).
_USER_ERRORS = (ValueError, FileNotFoundError, OSError, ImportError)


#: How progress is shown: "bar" (tqdm on stderr) or "json" (JSON lines on stdout); set by ``--progress``.
_PROGRESS_MODE = "bar"
#: Seconds between two JSON progress lines (the first and the last of a step are always written).
JSON_PROGRESS_INTERVAL = 0.1


def json_progress() -> bool:
    """Whether this command runs with ``--progress json`` (as a panel's child process)."""
    return _PROGRESS_MODE == "json"


def _emit(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(dict(message), default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def emit_result(**values: Any) -> None:
    """Report a structured result to the parent process (``{"type": "result", ...}``; nothing without JSON mode)."""
    if json_progress():
        _emit({"type": "result", **values})


def emit_log(message: str) -> None:
    """A log line: a JSON ``log`` object in JSON mode, a line on stderr otherwise."""
    if json_progress():
        _emit({"type": "log", "message": str(message)})
    else:
        print(message, file=sys.stderr)


def run_command(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` with ``parser`` and run ``args.run(args)`` (set with ``set_defaults(run=...)``).

    Adds the top-level option ``--progress bar|json`` (before the sub-command). Returns the exit status: the
    command's own (0 by default), :data:`EXIT_BAD_INPUT` with ``error: <first line>`` on stderr (and a JSON ``error``
    line in JSON mode) for a user error, :data:`EXIT_INTERRUPTED` on Ctrl-C. argparse's own usage errors exit with 2.
    """
    global _PROGRESS_MODE
    if not any("--progress" in action.option_strings for action in parser._actions):
        parser.add_argument("--progress", choices=("bar", "json"), default="bar",
                            help="progress display: a bar on stderr (default) or JSON lines on stdout (used by the "
                                 "Slicer panels, which run this command as a child process)")
    args = parser.parse_args(argv)
    _PROGRESS_MODE = getattr(args, "progress", "bar") or "bar"
    try:
        status = args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _USER_ERRORS as error:
        text = str(error).strip()
        line = text.splitlines()[0] if text else type(error).__name__
        print(f"error: {line}", file=sys.stderr)
        if json_progress():
            _emit({"type": "error", "message": text or line, "kind": type(error).__name__})
        return EXIT_BAD_INPUT
    finally:
        _PROGRESS_MODE = "bar"
    return 0 if status is None else int(status)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[..., None]]:
    """A ``progress(fraction, message="")`` callback drawing a tqdm bar (percent) on stderr; closed on exit.

    With ``--progress json`` it writes JSON progress lines on stdout instead (at most every
    :data:`JSON_PROGRESS_INTERVAL` seconds, the first and the complete step always; ``description`` when a report
    has no message).
    """
    if json_progress():
        last = [0.0, -1.0]

        def progress_json(fraction: float, message: str = "") -> None:
            fraction = max(0.0, min(1.0, float(fraction)))
            now = time.monotonic()
            if fraction < 1.0 and last[1] >= 0 and now - last[0] < JSON_PROGRESS_INTERVAL:
                return
            last[:] = [now, fraction]
            text = str(message) or description
            _emit({"type": "progress", "fraction": fraction, "message": text})

        yield progress_json
        return
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
