"""Robustness suite: the adapters on sys.path, and the module x case summary table at the end of the session."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

_OUTCOMES = defaultdict(list)  # (module, case) -> ["pass" | "FAIL" | "xfail" | "n/a"]
_ORDER = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is None or "module" not in callspec.params or Path(str(item.fspath)).parent != HERE:
        return
    key = (callspec.params["module"], callspec.params["case"])
    if key[1] not in _ORDER:
        _ORDER.append(key[1])
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped and hasattr(report, "wasxfail"):
            _OUTCOMES[key].append("xfail")
        elif report.skipped:
            _OUTCOMES[key].append("n/a")
        elif report.failed:
            _OUTCOMES[key].append("FAIL")
        else:
            _OUTCOMES[key].append("pass")


def _cell(results):
    if "FAIL" in results:
        return "FAIL"
    if "xfail" in results:
        return "xfail"
    if results and all(r == "n/a" for r in results):
        return "n/a"
    return "pass" if results else "–"


def summary_table() -> str:
    modules = []
    for module, _ in _OUTCOMES:
        if module not in modules:
            modules.append(module)
    header = "| module | " + " | ".join(_ORDER) + " |"
    lines = [header, "|" + "---|" * (len(_ORDER) + 1)]
    for module in modules:
        lines.append(f"| {module} | " + " | ".join(_cell(_OUTCOMES[(module, case)]) for case in _ORDER) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _OUTCOMES:
        return
    terminalreporter.section("Robustness: module x case (Logic and CLI)")
    terminalreporter.write_line(summary_table())
