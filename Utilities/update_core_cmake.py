"""Regenerate the list of shipped Python files in MedNetsCore/CMakeLists.txt (run after adding a mednets file).

    python Utilities/update_core_cmake.py          # rewrite the list
    python Utilities/update_core_cmake.py --check  # exit 1 if the list is stale (Testing/test_packaging.py checks too)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "MedNetsCore"
BEGIN, END = "set(MEDNETS_PYTHON_SCRIPTS\n", "  )\n"


def listed_block() -> str:
    files = sorted(p.relative_to(CORE).as_posix() for p in (CORE / "mednets").rglob("*.py"))
    return BEGIN + "".join(f"  {f}\n" for f in files) + END


def main() -> int:
    cmake = CORE / "CMakeLists.txt"
    text = cmake.read_text()
    updated = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda m: listed_block(), text, count=1, flags=re.S)
    if "--check" in sys.argv:
        return 0 if updated == text else 1
    cmake.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
