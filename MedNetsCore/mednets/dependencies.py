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
    "parse_requirement",
    "installed_version",
    "missing_requirements",
    "pip_command",
    "running_in_slicer",
    "ensure_requirements",
    "ensure_torch",
    "RUNTIME_REQUIREMENTS",
    "ensure_runtime",
]

#: Distributions that 3D Slicer ships in its own Python; never install or upgrade them from an extension.
SLICER_BUNDLED_PACKAGES = frozenset(
    name.lower()
    for name in (
        "numpy", "SimpleITK", "vtk", "requests", "pip", "setuptools", "wheel", "packaging",
        "pydicom", "dicomweb-client", "urllib3", "certifi", "charset-normalizer", "idna",
    )
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
        confirm: asks the user; default inside Slicer is an OK/Cancel dialog. Outside Slicer, with no ``installer``
            given, nothing is installed and :class:`MissingDependencyError` is raised.
        installer: installs a list of requirements (defaults: ``slicer.packaging.pip_ensure`` or
            ``slicer.util.pip_install`` inside Slicer).

    Returns:
        The requirements that were installed (empty if everything was present).

    Raises:
        MissingDependencyError: a requirement is missing and was not installed (declined, outside Slicer, or it is a
            package that Slicer ships and must not be replaced).
    """
    missing = missing_requirements(requirements)
    if not missing:
        return []
    bundled = [r for r in missing if r.name.lower() in SLICER_BUNDLED_PACKAGES]
    if bundled and running_in_slicer():
        names = ", ".join(f"{r.text} (found {installed_version(r.name) or 'none'})" for r in bundled)
        raise MissingDependencyError(
            f"{requester} needs {names}, which 3D Slicer ships itself; it is not replaced automatically because that "
            "can break Slicer. Please use a newer Slicer release."
        )
    if installer is None and not running_in_slicer():
        raise MissingDependencyError(
            f"{requester} needs {', '.join(r.text for r in missing)}. Install with:\n    {pip_command(missing)}"
        )
    confirm = confirm or (_slicer_confirm if running_in_slicer() else None)
    question = (
        f"{requester} needs these Python packages: {', '.join(r.text for r in missing)}.\n"
        "Install them now? This can take a few minutes."
    )
    if confirm is not None and not confirm(question):
        raise MissingDependencyError(
            f"{requester} cannot run without {', '.join(r.text for r in missing)} (installation declined)."
        )
    (installer or _slicer_installer(requester))(missing)
    importlib.invalidate_caches()
    still_missing = missing_requirements(missing)
    if still_missing:
        raise MissingDependencyError(
            f"Installing {', '.join(r.text for r in still_missing)} did not succeed; see the Python console. "
            f"You can try by hand: {pip_command(still_missing)}"
        )
    return missing


def _slicer_installer(requester: str) -> Callable[[List[Requirement]], None]:
    slicer = sys.modules["slicer"]
    packaging = getattr(slicer, "packaging", None)

    def install(requirements: List[Requirement]) -> None:
        texts = [r.text for r in requirements]
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(texts, requester=requester)
        else:
            slicer.util.pip_install(" ".join(f'"{t}"' if any(c in t for c in "<>=!~") else t for t in texts))

    return install


def ensure_torch(requirement: str = TORCH_REQUIREMENT, confirm: Optional[Confirm] = None):
    """Import and return ``torch``, installing it through Slicer's PyTorch extension if needed (with consent).

    Outside Slicer a missing/too old torch raises :class:`MissingDependencyError` with the pip command.
    """
    parsed = parse_requirement("torch" + requirement)
    if not missing_requirements([parsed]):
        return importlib.import_module("torch")
    if not running_in_slicer():
        raise MissingDependencyError(f"PyTorch {requirement} is required. Install with:\n    {pip_command([parsed])}")
    try:
        import PyTorchUtils  # the PyTorch extension's module, present when the extension is installed
    except ImportError as error:
        raise MissingDependencyError(
            "PyTorch is required: install the 'PyTorch' extension from the Extensions Manager, restart Slicer, "
            "and try again."
        ) from error
    confirm = confirm or _slicer_confirm
    if not confirm(f"PyTorch {requirement} is required and will be downloaded and installed (several GB). Continue?"):
        raise MissingDependencyError("PyTorch is required (installation declined).")
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(False, None, requirement)
    if torch is None:
        raise MissingDependencyError("PyTorch could not be installed; see the Python console.")
    return torch


#: Every package the modules import at run time that 3D Slicer does not ship (torch comes through the PyTorch
#: extension, see :func:`ensure_torch`). ``pyproject.toml``'s dependencies hold the same list (a test checks it).
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
    ensure_torch(confirm=confirm)
    return ensure_requirements(RUNTIME_REQUIREMENTS, requester=requester, confirm=confirm, installer=installer)
