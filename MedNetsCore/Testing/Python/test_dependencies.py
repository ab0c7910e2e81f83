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
    # slicer.util.pip_install(list): each item is one argument of "PythonSlicer -m pip install" (no shell quoting)
    assert pip_calls == [["surely-not-a-real-package-xyz>=1.0"]]


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


# --- ensure_runtime: one question for everything, torch first, testing mode, Slicer >= 5.12 ---------------------------

FAKE_RUNTIME = ("surely-not-a-real-package-xyz>=1.0", "numpy>=1.0", "another-missing-package-abc")


def _fake_slicer_app(monkeypatch, answers=(True,), testing=False, with_packaging=False, torch_installs=True):
    """A Slicer-like ``slicer`` module (app + util, optionally slicer.packaging) and a PyTorchUtils extension module."""
    log = {"questions": [], "pip_install": [], "pip_ensure": [], "installTorch": []}
    answers = list(answers)

    def confirm(text, **kw):
        log["questions"].append(text)
        return answers.pop(0) if answers else True

    fake = types.ModuleType("slicer")
    fake.__path__ = []  # a package, so that "import slicer.packaging" looks in sys.modules
    fake.app = types.SimpleNamespace(testingEnabled=lambda: testing)
    fake.util = types.SimpleNamespace(confirmOkCancelDisplay=confirm, pip_install=log["pip_install"].append)
    monkeypatch.setitem(sys.modules, "slicer", fake)
    if with_packaging:
        packaging = types.ModuleType("slicer.packaging")
        packaging.pip_ensure = lambda reqs, **kw: log["pip_ensure"].append((list(reqs), kw))
        monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    else:
        monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # Slicer < 5.12: import fails

    class Logic:
        def installTorch(self, askConfirmation, forceComputationBackend, torchVersionRequirement):
            log["installTorch"].append((askConfirmation, forceComputationBackend, torchVersionRequirement))
            return sys.modules["torch"] if torch_installs else None

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    monkeypatch.setattr(deps, "RUNTIME_REQUIREMENTS", FAKE_RUNTIME)
    return log


def test_ensure_runtime_asks_once_for_all_missing_torch_first(monkeypatch):
    import torch  # noqa: F401  (the fake PyTorch extension returns the real module)

    log = _fake_slicer_app(monkeypatch)
    monkeypatch.setattr(deps, "TORCH_REQUIREMENT", ">=99")  # torch "too old": it is asked for too
    order = []
    monkeypatch.setattr(deps, "_slicer_installer", lambda requester: lambda reqs: order.append([r.text for r in reqs]))
    real_install_torch = deps._install_torch_extension
    monkeypatch.setattr(deps, "_install_torch_extension", lambda req: order.append(["torch"]) or real_install_torch(req))
    with pytest.raises(deps.MissingDependencyError, match="did not succeed"):  # the fakes install nothing
        deps.ensure_runtime("OrganCombo")
    assert len(log["questions"]) == 1  # ONE dialog for all missing packages
    question = log["questions"][0]
    assert "OrganCombo" in question
    for name in ("torch>=99", "surely-not-a-real-package-xyz>=1.0", "another-missing-package-abc"):
        assert name in question
    assert "numpy" not in question  # present: not asked for, never replaced
    assert order == [["torch"], ["surely-not-a-real-package-xyz>=1.0", "another-missing-package-abc"]]
    assert log["installTorch"] == [(False, None, ">=99")]  # no second confirmation from the extension


def test_ensure_runtime_declined_installs_nothing(monkeypatch):
    log = _fake_slicer_app(monkeypatch, answers=(False,))
    with pytest.raises(deps.MissingDependencyError) as info:
        deps.ensure_runtime("AneurysmSeg")
    assert "declined" in str(info.value) and "another-missing-package-abc" in str(info.value)
    assert "Traceback" not in str(info.value)
    assert len(log["questions"]) == 1
    assert log["pip_install"] == [] and log["installTorch"] == []


def test_ensure_runtime_testing_mode_installs_nothing(monkeypatch):
    """--testing: confirmOkCancelDisplay would answer OK without a dialog, so nothing is installed at all."""
    log = _fake_slicer_app(monkeypatch, testing=True)
    with pytest.raises(deps.MissingDependencyError) as info:
        deps.ensure_runtime("NucleiMaskylo")
    message = str(info.value)
    assert "testing mode" in message
    assert "surely-not-a-real-package-xyz>=1.0" in message and "another-missing-package-abc" in message
    assert log["questions"] == [] and log["pip_install"] == [] and log["installTorch"] == []


def test_ensure_runtime_testing_mode_with_explicit_installer(monkeypatch):
    log = _fake_slicer_app(monkeypatch, testing=True)
    installed = []

    def installer(reqs):
        installed.extend(r.text for r in reqs)
        monkeypatch.setattr(deps, "installed_version", lambda name: "1.0")

    result = deps.ensure_runtime("NucleiMaskylo", confirm=lambda q: True, installer=installer)
    assert installed == ["surely-not-a-real-package-xyz>=1.0", "another-missing-package-abc"]
    assert [r.text for r in result] == installed
    assert log["pip_install"] == []


def test_ensure_runtime_uses_pip_ensure_from_slicer_5_12(monkeypatch):
    log = _fake_slicer_app(monkeypatch, with_packaging=True)
    with pytest.raises(deps.MissingDependencyError, match="did not succeed"):
        deps.ensure_runtime("AdaptiveRecontour")
    assert len(log["questions"]) == 1
    assert log["pip_ensure"] == [
        (["surely-not-a-real-package-xyz>=1.0", "another-missing-package-abc"],
         {"prompt_install": False, "requester": "AdaptiveRecontour"})
    ]
    assert log["pip_install"] == []


def test_ensure_runtime_pip_install_before_5_12(monkeypatch):
    log = _fake_slicer_app(monkeypatch)
    with pytest.raises(deps.MissingDependencyError, match="did not succeed"):
        deps.ensure_runtime("AxillaryLNDetect")
    assert log["pip_install"] == [["surely-not-a-real-package-xyz>=1.0", "another-missing-package-abc"]]


def test_ensure_runtime_never_replaces_slicer_packages(monkeypatch):
    log = _fake_slicer_app(monkeypatch)
    monkeypatch.setattr(deps, "RUNTIME_REQUIREMENTS", ("numpy>=999", "another-missing-package-abc"))
    with pytest.raises(deps.MissingDependencyError, match="3D Slicer ships itself"):
        deps.ensure_runtime("OrganCombo")
    assert log["questions"] == [] and log["pip_install"] == []


def test_ensure_runtime_nothing_missing_asks_nothing(monkeypatch):
    log = _fake_slicer_app(monkeypatch)
    monkeypatch.setattr(deps, "RUNTIME_REQUIREMENTS", ("numpy>=1.0",))
    assert deps.ensure_runtime("OrganCombo") == []
    assert log["questions"] == []


def test_ensure_packages_refusal_is_a_clear_label(slicer_runtime, monkeypatch):
    """The panels' entry point: a refusal in Slicer's dialog ends as one plain line in the status label."""
    import slicer

    from mednets import widgets

    questions = []
    monkeypatch.setattr(deps, "running_in_slicer", lambda: True)  # the runtime's app marks itself as a stand-in
    monkeypatch.setattr(deps, "testing_enabled", lambda: False)  # as a user runs Slicer, not --testing
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kw: questions.append(text) and False)
    monkeypatch.setattr(deps, "RUNTIME_REQUIREMENTS", FAKE_RUNTIME)

    class Label:
        text = ""

        def setText(self, text):
            self.text = text

    label = Label()
    assert widgets.ensure_packages(label, "OrganCombo") is False
    assert len(questions) == 1
    assert "declined" in label.text and "another-missing-package-abc" in label.text
    assert "Traceback" not in label.text and "\n" not in label.text.strip()
