"""Python dependencies of the SlicerMedNets modules, installed on demand and only with the user's consent.

Inside 3D Slicer:

* PyTorch is installed through the PyTorch extension (``PyTorchUtils.PyTorchUtilsLogic().installTorch``), which picks the
  CUDA build matching the driver; the extension declares ``EXTENSION_DEPENDS PyTorch``.
* Other packages go through ``slicer.packaging.pip_ensure`` (Slicer >= 5.12: asks, installs with progress, offers a
  restart) or, on older Slicer, ``slicer.util.confirmOkCancelDisplay`` + ``slicer.util.pip_install``.
* Packages that Slicer ships itself (numpy, SimpleITK, VTK, requests, ...) are NEVER installed or upgraded: replacing them
  is the most common way an extension breaks Slicer. If one is too old we say so instead.

Outside Slicer (batch scripts, the CLIs, CI) nothing is installed: :class:`MissingDependencyError` names the exact pip
command to run.

This module never imports ``slicer``: it uses the ``slicer`` module only when the host application has already loaded
it (which is always the case inside Slicer), so importing ``mednets`` in a plain Python stays Slicer-free.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "Requirement",
    "MissingDependencyError",
    "SLICER_BUNDLED_PACKAGES",
    "SLICER_SHIPPED_REQUIREMENTS",
    "TORCH_REQUIREMENT",
    "parse_requirement",
    "installed_version",
    "missing_requirements",
    "pip_command",
    "running_in_slicer",
    "ensure_requirements",
    "ensure_torch",
    "RUNTIME_REQUIREMENTS",
    "ensure_runtime",
    "testing_enabled",
]

#: Distributions that 3D Slicer ships in its own Python; never install or upgrade them from an extension.
SLICER_BUNDLED_PACKAGES = frozenset(
    name.lower()
    for name in (
        "numpy", "scipy", "SimpleITK", "vtk", "requests", "pip", "setuptools", "wheel", "packaging",
        "pydicom", "Pillow", "dicomweb-client", "urllib3", "certifi", "charset-normalizer", "idna",
    )
)

#: The packages of Slicer's own Python that the modules import, with the oldest versions they accept (floors only: in
#: Slicer they are whatever Slicer ships, SuperBuild/External_python-*.cmake, and are never installed or upgraded).
SLICER_SHIPPED_REQUIREMENTS = (
    "numpy>=1.22",
    "scipy>=1.8",
    "SimpleITK>=2.2",
)

#: Minimum torch version every module accepts (the PyTorch extension installs a recent one).
TORCH_REQUIREMENT = ">=2.1"

_REQUIREMENT_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")
_CLAUSE_RE = re.compile(r"^(==|>=|<=|!=|~=|>|<)\s*([0-9][0-9A-Za-z.*+-]*)$")


class MissingDependencyError(ImportError):
    """A required Python package is missing or too old; the message names the pip command that fixes it."""


@dataclass(frozen=True)
class Requirement:
    """A parsed requirement such as ``scikit-image>=0.21`` (name, optional import name, version clauses)."""

    name: str
    clauses: Tuple[Tuple[str, str], ...] = ()
    import_name: Optional[str] = None

    @property
    def text(self) -> str:
        return self.name + ",".join(op + version for op, version in self.clauses)

    @property
    def module(self) -> str:
        return self.import_name or self.name.replace("-", "_").lower()


def parse_requirement(text: str, import_name: Optional[str] = None) -> Requirement:
    """Parse a PEP 508 style requirement with plain version clauses (no markers), e.g. ``"torch>=2.1,<3"``."""
    match = _REQUIREMENT_RE.match(text)
    if not match or not match.group(1):
        raise ValueError(f"Cannot parse the requirement {text!r}: expected e.g. 'package>=1.2'.")
    name, _extras, rest = match.groups()
    clauses = []
    for clause in filter(None, (part.strip() for part in rest.split(","))):
        clause_match = _CLAUSE_RE.match(clause)
        if not clause_match:
            raise ValueError(f"Cannot parse the version clause {clause!r} in requirement {text!r}.")
        clauses.append((clause_match.group(1), clause_match.group(2)))
    return Requirement(name=name, clauses=tuple(clauses), import_name=import_name)


def _version_key(version: str) -> Tuple[int, ...]:
    """Numeric release tuple of a version string: '2.14.1+cu130' -> (2, 14, 1); pre-release tags are ignored."""
    release = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if not release:
        return ()
    parts = [int(p) for p in release.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _clause_satisfied(installed: str, op: str, wanted: str) -> bool:
    if wanted.endswith(".*"):
        prefix = _version_key(wanted[:-2])
        same = _version_key(installed)[: len(prefix)] == prefix
        return same if op == "==" else (not same if op == "!=" else False)
    have, want = _version_key(installed), _version_key(wanted)
    if op == "~=":
        upper = list(want[:-1]) if len(want) > 1 else list(want)
        upper[-1] += 1
        return want <= have < tuple(upper)
    comparisons = {
        "==": have == want, "!=": have != want, ">=": have >= want,
        "<=": have <= want, ">": have > want, "<": have < want,
    }
    return comparisons[op]


def installed_version(distribution: str) -> Optional[str]:
    """Version of an installed distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _satisfied(requirement: Requirement) -> bool:
    version = installed_version(requirement.name)
    if version is None:
        return False
    return all(_clause_satisfied(version, op, wanted) for op, wanted in requirement.clauses)


def missing_requirements(requirements: Iterable[str | Requirement]) -> List[Requirement]:
    """The requirements that are not installed, or installed in a version that does not satisfy them."""
    parsed = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    return [r for r in parsed if not _satisfied(r)]


def pip_command(requirements: Sequence[Requirement]) -> str:
    """The shell command that installs ``requirements`` into the running Python."""
    quoted = " ".join(f'"{r.text}"' if r.clauses else r.name for r in requirements)
    return f"{sys.executable} -m pip install {quoted}"


def running_in_slicer() -> bool:
    """True inside the 3D Slicer application (its ``slicer`` module is loaded and has a real application object).

    The SlicerMedNets test runtime marks its stand-in application with ``isTestRuntime`` so that tests exercise the
    non-interactive path unless they opt in.
    """
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    return app is not None and not getattr(app, "isTestRuntime", False)


Confirm = Callable[[str], bool]


def _slicer_confirm(message: str) -> bool:
    slicer = sys.modules["slicer"]
    return bool(slicer.util.confirmOkCancelDisplay(message, windowTitle="SlicerMedNets: install Python packages"))


def testing_enabled() -> bool:
    """True when Slicer runs with ``--testing``.

    Slicer's ``confirmOkCancelDisplay`` returns True WITHOUT showing anything in testing mode (Base/Python/slicer/util.py,
    v5.8.1), so a ctest run would silently download gigabytes: in testing mode nothing is installed unless the caller
    passes its own installer.
    """
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer is not None else None
    probe = getattr(app, "testingEnabled", None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:  # a stand-in application without the method
        return False


def _names(requirements: Sequence[Requirement]) -> str:
    return ", ".join(r.text for r in requirements)


def _install_with_consent(
    missing: List[Requirement],
    requester: str,
    confirm: Optional[Confirm],
    installer: Optional[Callable[[List[Requirement]], None]],
    torch_requirement: Optional[Requirement] = None,
) -> List[Requirement]:
    """Ask ONCE for everything in ``missing`` (torch first when it is in there), then install and re-check.

    ``torch_requirement`` (when torch itself is missing) goes through the PyTorch extension inside Slicer, which picks the
    CUDA build matching the driver and installs torchvision with it; the others through ``installer``.
    """
    in_slicer = running_in_slicer()
    bundled = [r for r in missing if r.name.lower() in SLICER_BUNDLED_PACKAGES]
    if bundled and in_slicer:
        names = ", ".join(f"{r.text} (found {installed_version(r.name) or 'none'})" for r in bundled)
        raise MissingDependencyError(
            f"{requester} needs {names}, which 3D Slicer ships itself; it is not replaced automatically because that "
            "can break Slicer. Please use a newer Slicer release."
        )
    if installer is None and not in_slicer:
        raise MissingDependencyError(
            f"{requester} needs {_names(missing)}. Install with:\n    {pip_command(missing)}"
        )
    if installer is None and testing_enabled():
        raise MissingDependencyError(
            f"{requester} needs {_names(missing)}; nothing is installed while Slicer runs in testing mode. "
            f"Install with:\n    {pip_command(missing)}"
        )
    confirm = confirm or (_slicer_confirm if in_slicer else None)
    size_note = " PyTorch alone is several GB." if torch_requirement is not None else ""
    question = (
        f"{requester} needs these Python packages: {_names(missing)}.\n"
        f"Install them now? This can take a few minutes.{size_note}"
    )
    if confirm is not None and not confirm(question):
        raise MissingDependencyError(f"{requester} cannot run without {_names(missing)} (installation declined).")
    rest = [r for r in missing if r is not torch_requirement]
    if torch_requirement is not None:
        if installer is None:
            _install_torch_extension(torch_requirement)
        else:
            installer([torch_requirement])
        importlib.invalidate_caches()
        rest = missing_requirements(rest)  # the PyTorch extension also brings torchvision
    if rest:
        (installer or _slicer_installer(requester))(rest)
    importlib.invalidate_caches()
    still_missing = missing_requirements(missing)
    if still_missing:
        raise MissingDependencyError(
            f"Installing {_names(still_missing)} did not succeed; see the Python console. "
            f"You can try by hand: {pip_command(still_missing)}"
        )
    return missing


def ensure_requirements(
    requirements: Iterable[str | Requirement],
    requester: str = "SlicerMedNets",
    confirm: Optional[Confirm] = None,
    installer: Optional[Callable[[List[Requirement]], None]] = None,
) -> List[Requirement]:
    """Make sure ``requirements`` are importable, installing missing ones only after the user agrees.

    Args:
        requirements: requirement strings, e.g. ``["scikit-image>=0.21"]``.
        requester: the module asking, shown to the user.
        confirm: asks the user (one question for all missing packages); default inside Slicer is an OK/Cancel dialog.
            Outside Slicer, or in Slicer's testing mode, with no ``installer`` given, nothing is installed and
            :class:`MissingDependencyError` is raised.
        installer: installs a list of requirements (defaults: ``slicer.packaging.pip_ensure`` on Slicer >= 5.12,
            else ``slicer.util.pip_install``).

    Returns:
        The requirements that were installed (empty if everything was present).

    Raises:
        MissingDependencyError: a requirement is missing and was not installed (declined, outside Slicer, testing mode,
            or a package that Slicer ships and must not be replaced).
    """
    missing = missing_requirements(requirements)
    if not missing:
        return []
    return _install_with_consent(missing, requester, confirm, installer)


def _slicer_installer(requester: str) -> Callable[[List[Requirement]], None]:
    slicer = sys.modules["slicer"]
    pip_ensure = None
    try:
        # Slicer >= 5.12 only, and slicer/__init__.py does not import the submodule: import it ourselves, guarded.
        # (through importlib: this file never imports slicer at module level or statically, see test_packaging)
        slicer_packaging = importlib.import_module("slicer.packaging")

        pip_ensure = getattr(slicer_packaging, "pip_ensure", None)
    except ImportError:
        pass

    def install(requirements: List[Requirement]) -> None:
        texts = [r.text for r in requirements]
        if pip_ensure is not None:
            # We asked already (one question for all packages): no second prompt.
            pip_ensure(texts, prompt_install=False, requester=requester)
        else:
            # Slicer 5.8-5.11: pip_install(list) runs "PythonSlicer -m pip install <items>" (each list item is one
            # argument, so version clauses need no quoting) and logs pip's output (Base/Python/slicer/util.py).
            slicer.util.pip_install(texts)

    return install


def _install_torch_extension(requirement: Requirement) -> None:
    try:
        import PyTorchUtils  # the PyTorch extension's module, present when the extension is installed
    except ImportError as error:
        raise MissingDependencyError(
            "PyTorch is required: install the 'PyTorch' extension from the Extensions Manager, restart Slicer, "
            "and try again."
        ) from error
    clause = ",".join(op + version for op, version in requirement.clauses) or None
    # installTorch(askConfirmation, forceComputationBackend, torchVersionRequirement): we asked already.
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(False, None, clause)
    if torch is None:
        raise MissingDependencyError("PyTorch could not be installed; see the Python console.")


def ensure_torch(requirement: str = TORCH_REQUIREMENT, confirm: Optional[Confirm] = None):
    """Import and return ``torch``, installing it through Slicer's PyTorch extension if needed (with consent).

    Outside Slicer a missing/too old torch raises :class:`MissingDependencyError` with the pip command.
    """
    parsed = parse_requirement("torch" + requirement)
    if missing_requirements([parsed]):
        _install_with_consent([parsed], "SlicerMedNets", confirm, None, torch_requirement=parsed)
    return importlib.import_module("torch")


#: Every package the modules import at run time that 3D Slicer does not ship (torch comes through the PyTorch
#: extension, see :func:`ensure_torch`; the extension brings torchvision too). This is the single list:
#: ``pyproject.toml``'s dependencies are exactly SLICER_SHIPPED_REQUIREMENTS + torch + this (Testing/test_dependency_list.py
#: checks it, and that every third-party import of the shipped code is covered). The README's "Dependencies" section
#: repeats these comments.
RUNTIME_REQUIREMENTS = (
    "torchvision>=0.16",  # NucleiMaskylo's Mask R-CNN, the ops (nms, roi_align) of the detectors
    "safetensors>=0.4",  # every weights file
    "tqdm>=4.60",  # the command lines' progress bars
    "matplotlib>=3.5",  # training curves, FROC and evaluation plots (Agg, no GUI)
    "tifffile>=2022.5",  # NucleiMaskylo: whole-slide TIFFs read region by region
    "scikit-image>=0.21",  # NucleiMaskylo: image reading, polygon filling, instance contours
)


def ensure_runtime(requester: str = "SlicerMedNets", confirm: Optional[Confirm] = None,
                   installer: Optional[Callable[[List[Requirement]], None]] = None) -> List[Requirement]:
    """Make sure torch and every package of :data:`RUNTIME_REQUIREMENTS` is there before a job starts.

    Call it on Slicer's GUI thread (it may show a dialog) before starting a module's child process: the child is
    ``PythonSlicer`` with the same site-packages, so what is installed here is there. Raises
    :class:`MissingDependencyError` (declined, outside Slicer, failed install); returns what was installed.
    """
    torch_requirement = parse_requirement("torch" + TORCH_REQUIREMENT)
    torch_missing = missing_requirements([torch_requirement])
    missing = torch_missing + missing_requirements(RUNTIME_REQUIREMENTS)
    if not missing:
        return []
    # One question for all of them, torch first (through the PyTorch extension inside Slicer).
    return _install_with_consent(missing, requester, confirm, installer,
                                 torch_requirement=torch_missing[0] if torch_missing else None)
