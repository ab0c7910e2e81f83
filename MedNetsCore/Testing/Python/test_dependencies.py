from __future__ import annotations

import sys
import types

import pytest

from mednets import dependencies as deps


def test_parse_requirement_clauses():
    req = deps.parse_requirement("scikit-image>=0.21,<1")
    assert req.name == "scikit-image"
    assert req.clauses == ((">=", "0.21"), ("<", "1"))
    assert req.module == "scikit_image"
    assert req.text == "scikit-image>=0.21,<1"
    with pytest.raises(ValueError, match="version clause"):
        deps.parse_requirement("numpy>>1")


@pytest.mark.parametrize(
    "installed, op, wanted, expected",
    [
        ("2.14.1+cu130", ">=", "2.1", True),
        ("2.0.1", ">=", "2.1", False),
        ("2.1", "==", "2.1.0", True),
        ("1.26.4", "<", "2", True),
        ("2.3.5", "==", "2.3.*", True),
        ("2.4.0", "==", "2.3.*", False),
        ("2.4.1", "~=", "2.4", True),
        ("3.0", "~=", "2.4", False),
        ("1.5", "!=", "1.5.0", False),
    ],
)
def test_version_clauses(installed, op, wanted, expected):
    assert deps._clause_satisfied(installed, op, wanted) is expected


def test_missing_requirements_reports_absent_and_too_old():
    present = deps.installed_version("numpy")
    assert present is not None
    missing = deps.missing_requirements(["numpy>=1.0", "numpy>=999", "surely-not-a-real-package-xyz"])
    assert [r.text for r in missing] == ["numpy>=999", "surely-not-a-real-package-xyz"]


def test_outside_slicer_error_names_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace())  # slicer-core style: no app
    with pytest.raises(deps.MissingDependencyError) as info:
        deps.ensure_requirements(["surely-not-a-real-package-xyz>=1.0"], requester="OrganCombo")
    message = str(info.value)
    assert "OrganCombo needs surely-not-a-real-package-xyz>=1.0" in message
    assert '-m pip install "surely-not-a-real-package-xyz>=1.0"' in message


def test_nothing_installed_when_everything_present():
    calls = []
    assert deps.ensure_requirements(["numpy>=1.0"], installer=calls.append) == []
    assert calls == []


def test_declined_installation_installs_nothing():
    calls = []
    with pytest.raises(deps.MissingDependencyError, match="declined"):
        deps.ensure_requirements(["surely-not-a-real-package-xyz"], confirm=lambda q: False, installer=calls.append)
    assert calls == []


def test_accepted_installation_runs_installer_then_rechecks(monkeypatch):
    questions, installed = [], []

    def fake_installer(reqs):
        installed.extend(r.text for r in reqs)
        monkeypatch.setattr(deps, "installed_version", lambda name: "1.2.0")

    result = deps.ensure_requirements(
        ["surely-not-a-real-package-xyz>=1.0"], confirm=lambda q: questions.append(q) or True, installer=fake_installer
    )
    assert [r.text for r in result] == ["surely-not-a-real-package-xyz>=1.0"]
    assert installed == ["surely-not-a-real-package-xyz>=1.0"]
    assert "surely-not-a-real-package-xyz>=1.0" in questions[0]


def test_failed_installation_is_reported():
    with pytest.raises(deps.MissingDependencyError, match="did not succeed"):
        deps.ensure_requirements(["surely-not-a-real-package-xyz"], confirm=lambda q: True, installer=lambda r: None)


def _fake_slicer(monkeypatch, confirm_answer=True):
    pip_calls = []
    util = types.SimpleNamespace(
        confirmOkCancelDisplay=lambda text, **kw: confirm_answer,
        pip_install=lambda spec: pip_calls.append(spec),
    )
    fake = types.SimpleNamespace(app=object(), util=util)
    monkeypatch.setitem(sys.modules, "slicer", fake)
    return pip_calls


def test_inside_slicer_never_replaces_bundled_packages(monkeypatch):
    pip_calls = _fake_slicer(monkeypatch)
    with pytest.raises(deps.MissingDependencyError, match="3D Slicer ships itself"):
        deps.ensure_requirements(["numpy>=999"])
    assert pip_calls == []


def test_inside_slicer_uses_pip_install_after_consent(monkeypatch):
    pip_calls = _fake_slicer(monkeypatch, confirm_answer=True)
    with pytest.raises(deps.MissingDependencyError, match="did not succeed"):
        deps.ensure_requirements(["surely-not-a-real-package-xyz>=1.0"])
    assert pip_calls == ['"surely-not-a-real-package-xyz>=1.0"']


def test_inside_slicer_declined(monkeypatch):
    pip_calls = _fake_slicer(monkeypatch, confirm_answer=False)
    with pytest.raises(deps.MissingDependencyError, match="declined"):
        deps.ensure_requirements(["surely-not-a-real-package-xyz"])
    assert pip_calls == []


def test_ensure_torch_present_returns_module():
    torch = deps.ensure_torch(">=2.1")
    assert hasattr(torch, "nn")


def test_ensure_torch_too_old_outside_slicer(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace())
    with pytest.raises(deps.MissingDependencyError, match='pip install "torch>=99"'):
        deps.ensure_torch(">=99")
