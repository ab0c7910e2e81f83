"""mednets.cli: exit statuses, label files (plain and .seg.nrrd), CSV tables."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from mednets.cli import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, progress_bar, read_label_file, rows_to_csv, run_command,
                         write_label_file, write_text)
from mednets.image import Volume


def _parser(action):
    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("go")
    command.set_defaults(run=action)
    return parser


def _raise(error):
    def action(args):
        raise error
    return action


def test_exit_statuses_and_one_line_reason(capsys):
    assert run_command(_parser(lambda args: None), ["go"]) == 0
    assert run_command(_parser(lambda args: 3), ["go"]) == 3
    assert run_command(_parser(_raise(ValueError("the image is constant\nmore detail"))), ["go"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: the image is constant\n"
    assert run_command(_parser(_raise(FileNotFoundError("no such file 'x.nrrd'"))), ["go"]) == EXIT_BAD_INPUT
    assert run_command(_parser(_raise(KeyboardInterrupt())), ["go"]) == EXIT_INTERRUPTED
    with pytest.raises(RuntimeError):  # a bug is not hidden behind a one-line message
        run_command(_parser(_raise(RuntimeError("bug"))), ["go"])
    with pytest.raises(SystemExit):
        run_command(_parser(lambda args: None), ["unknown"])


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".seg.nrrd"])
def test_label_files_round_trip(tmp_path, suffix):
    labels = np.zeros((5, 6, 7), dtype=np.int64)
    labels[1:3, 2:5, 1:4] = 1
    labels[3:5, 0:2, 5:7] = 2
    grid = Volume(np.zeros(labels.shape), spacing=(2.0, 1.0, 0.5), origin_ras=(3.0, -2.0, 1.0))
    path = write_label_file(labels, grid, tmp_path / f"labels{suffix}",
                            [(1, "liver", (1, 0, 0)), (2, "spleen", (0, 1, 0))])
    read, read_grid = read_label_file(path, ["liver", "spleen"])
    np.testing.assert_array_equal(read, labels)
    np.testing.assert_allclose(read_grid.ijk_to_ras, grid.ijk_to_ras, atol=1e-6)


def test_csv_rows_and_atomic_text(tmp_path):
    rows = [{"name": "liver", "dice": np.float32(0.91234567), "count": 3}, {"name": "spleen", "dice": 1.0, "count": 0}]
    text = rows_to_csv(rows, [("name", "organ"), ("dice", "Dice"), ("count", "n")], precision=3)
    assert text == "organ,Dice,n\nliver,0.912,3\nspleen,1,0\n"
    assert write_text(None, text) is None
    assert write_text(tmp_path / "m.csv", text).read_text() == text


def test_progress_bar_accepts_fractions_outside_the_range(capsys):
    with progress_bar("work") as progress:
        progress(-0.5)
        progress(0.5, "halfway")
        progress(2.0, "done")
    assert "work" in capsys.readouterr().err
