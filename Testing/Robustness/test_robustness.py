"""Robustness sweep (issue 9): every bad input of ../shared/MODULE_CHECKLIST.md through every module's Logic and CLI.

For each module and case the Logic must raise a ValueError whose message names the problem, and leave the scene's
existing nodes untouched (same nodes, names and content hashes; no new node left behind); the CLI
(``python -m <Module>Lib predict``, run in-process through its ``main``) must exit with status 2, print ONE line
``error: ...`` naming the problem, and write no output file. Oblique direction cosines are accepted by every 3D module
(they are documented to work in patient coordinates): the result must be on the input's grid. Cancelling at a random
point of inference must leave the scene as it was.

Training killed mid-run and resumed is covered once, for the shared engine every module trains with, by
MedNetsCore/Testing/Python/test_training.py::test_resume_after_sigkill_is_identical (engine level);
test_training_interrupted_at_a_random_point_then_resumed below checks it through one module's training entry
(OrganComboLib.training.train, a tiny configuration, 6 iterations): cancelled at a random iteration, and SIGKILLed in a
subprocess; both resumed runs end with exactly the weights of the uninterrupted run.

Training cancelled is checked for every module through its own Logic (``train_cancel``): a tiny training folder written
by ``Logic.addCaseToTrainingSet``, ``Logic.train`` cancelled at two seeded random polls; OperationCancelled, the scene
and the case files unchanged, and every file left in the output folder whole (checkpoints listed as models load).

The summary table (module x case -> pass/FAIL) is printed at the end of the session by conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from adapters import ADAPTERS, MODULES, Adapter, oblique_directions

INPUT_CASES = ["empty", "constant", "wrong_dims", "nan", "inf", "zero_spacing", "wrong_channels", "too_large"]
WEIGHT_CASES = ["truncated", "tampered", "wrong_sha256", "other_module"]

#: What the message must name (case-insensitive regular expressions).
EXPECTED = {
    "empty": r"empty|no voxels|no image|nothing",
    "constant": r"constant",
    "wrong_dims": r"\b2D\b|\b3D\b|slice",
    "nan": r"NaN|infinite",
    "inf": r"NaN|infinite",
    "zero_spacing": r"spacing",
    "wrong_channels": r"RGB|colou?r|gr[ae]y|component",
    "too_large": r"too large|voxels",
    "truncated": r"truncated|corrupt",
    "tampered": r"modified|corrupt|sha-?256|checksum",
    "wrong_sha256": r"sha-?256|checksum",
    "other_module": r"module",
}

#: Known module bugs in folders this suite may not edit (they are being edited by others): strict xfails.
KNOWN_FAILURES: Dict[Tuple[str, str, str], str] = {}


def _params(cases: List[str], kind: str, skip_inapplicable: bool = True):
    params = []
    for module in MODULES:
        for case in cases:
            marks = []
            reason = ADAPTERS[module].not_applicable.get(case)
            if reason and skip_inapplicable:
                marks.append(pytest.mark.skip(reason=f"n/a: {reason}"))
            known = KNOWN_FAILURES.get((module, case, kind))
            if known:
                marks.append(pytest.mark.xfail(strict=True, reason=known))
            params.append(pytest.param(module, case, marks=marks, id=f"{module}-{case}"))
    return params


# ---------------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _isolated_models(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDNETS_CACHE_DIR", str(tmp_path / "mednets-cache"))


@pytest.fixture(scope="session")
def weights_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


_WEIGHTS: Dict[str, Path] = {}


def valid_weights(adapter: Adapter, folder: Path) -> Path:
    if adapter.name not in _WEIGHTS:
        _WEIGHTS[adapter.name] = adapter.weights(folder / adapter.name)
    return _WEIGHTS[adapter.name]


def bad_array(adapter: Adapter, case: str) -> Tuple[np.ndarray, Tuple[float, ...], Any]:
    """(array, spacing, directions) of a bad input (not for 'empty')."""
    array = adapter.valid_array().copy()
    spacing = tuple(adapter.spacing())
    directions = None
    if case == "constant":
        array = np.full_like(array, 7)
    elif case == "wrong_dims":
        if adapter.spatial_dims == 3:
            array = array[:1]  # a single slice
        else:
            array = np.concatenate([array] * 3, axis=0)  # several slices
    elif case in ("nan", "inf"):
        array = array.astype(np.float32)
        array.flat[array.size // 2] = np.nan if case == "nan" else np.inf
    elif case == "zero_spacing":
        spacing = (0.0,) + spacing[1:]
    elif case == "wrong_channels":
        if adapter.channels == 1:
            array = np.stack([array] * 3, axis=-1)
        else:
            array = array[..., 0].astype(np.uint8)
    elif case == "oblique":
        directions = oblique_directions()
    elif case == "too_large":
        pass  # the limit is lowered instead
    else:
        raise KeyError(case)
    return array, spacing, directions


def new_input_node(adapter: Adapter, case: str, scene):
    import slicer

    from mednets import mrml
    from mednets.image import Volume

    if case == "empty":
        nodeClass = "vtkMRMLVectorVolumeNode" if adapter.channels == 3 else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(nodeClass, "Empty")
        return node
    array, spacing, directions = bad_array(adapter, case)
    if case == "zero_spacing":
        node = mrml.new_volume_node(Volume(array, spacing=adapter.spacing()), scene, "Bad spacing")
        node.SetSpacing(*spacing[::-1])  # (i, j, k) order in MRML; one of them is zero
        return node
    if case == "wrong_channels" and adapter.channels == 3:
        return mrml.new_volume_node(Volume(array, spacing=spacing), scene, "Grey", node_class="vtkMRMLScalarVolumeNode")
    volume = Volume(array, spacing=spacing, directions_ras=directions) if directions is not None else Volume(
        array, spacing=spacing)
    return mrml.new_volume_node(volume, scene, f"Input {case}")


def _hash(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _matrix(vtkMatrix) -> np.ndarray:
    return np.array([[vtkMatrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def scene_snapshot(scene) -> Dict[str, Tuple[str, str, str]]:
    """ID -> (class, name, content hash) of every node: voxels + geometry, segment labelmaps, markup points."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    snapshot = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        content = ""
        if node.IsA("vtkMRMLVolumeNode"):
            image = node.GetImageData()
            matrix = vtk.vtkMatrix4x4()
            node.GetIJKToRASMatrix(matrix)
            scalars = image.GetPointData().GetScalars() if image is not None else None
            content = _hash(vtk_to_numpy(scalars) if scalars is not None else np.zeros(0),
                            np.array(image.GetDimensions() if image is not None else ()), _matrix(matrix))
        elif node.IsA("vtkMRMLSegmentationNode"):
            segmentation = node.GetSegmentation()
            parts = []
            for i in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(i)
                labelmap = segment.GetRepresentation("Binary labelmap")
                if labelmap is not None and labelmap.GetPointData().GetScalars() is not None:
                    parts.append(vtk_to_numpy(labelmap.GetPointData().GetScalars()))
                parts.append(np.frombuffer((segmentation.GetNthSegmentID(i) + segment.GetName()).encode(), np.uint8))
            content = _hash(*parts)
        elif node.IsA("vtkMRMLMarkupsNode"):
            points = [node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())]
            content = _hash(np.array(points, dtype=float))
        snapshot[node.GetID()] = (node.GetClassName(), node.GetName() or "", content)
    return snapshot


def assert_scene_unchanged(before, after) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    assert not added, f"nodes left behind: {[after[i][:2] for i in added]}"
    assert not removed, f"nodes removed: {[before[i][:2] for i in removed]}"
    changed = [before[i][:2] for i in before if before[i] != after[i]]
    assert not changed, f"nodes modified: {changed}"


def damaged_weights(adapter: Adapter, case: str, folder: Path, weights_root: Path) -> Path:
    """A weights file (the ``model`` argument) damaged as ``case`` says; for AxillaryLNDetect one file of a pair."""
    folder.mkdir(parents=True, exist_ok=True)
    valid = valid_weights(adapter, weights_root)
    if case == "other_module":
        other = ADAPTERS["AneurysmSeg" if adapter.name == "OrganCombo" else "OrganCombo"]
        source = valid_weights(other, weights_root)
        if adapter.name == "AxillaryLNDetect":  # a detector is a -voi/-ln pair: both files from another module
            for stage in ("voi", "ln"):
                shutil.copyfile(source, folder / f"other-{stage}.safetensors")
            return folder / "other-ln.safetensors"
        target = folder / "other.safetensors"
        shutil.copyfile(source, target)
        return target
    for sibling in valid.parent.glob("*.safetensors"):
        shutil.copyfile(sibling, folder / sibling.name)
    target = folder / valid.name
    data = bytearray(target.read_bytes())
    if case == "truncated":
        target.write_bytes(bytes(data[: len(data) // 2]))
    elif case == "tampered":  # one byte of the tensor data (the end of the file) changed
        data[-3] ^= 0x5A
        target.write_bytes(bytes(data))
    else:
        raise KeyError(case)
    return target


# -------------------------------------------------------------------------------------------------- file writing
def write_input_file(adapter: Adapter, case: str, folder: Path) -> Path:
    """The bad input as the file a CLI user would pass."""
    from mednets.image import Volume
    from mednets.io import write_volume

    path = folder / adapter.cli_input_name()
    if case == "empty":
        path.write_bytes(b"")
        return path
    array, spacing, directions = bad_array(adapter, case)
    if adapter.channels == 3:  # 2D images: TIFF
        import tifffile

        array = array[0] if array.ndim == 4 and array.shape[0] == 1 else array
        tifffile.imwrite(str(path), array, photometric="rgb" if array.shape[-1] == 3 else "minisblack")
        return path
    if case == "zero_spacing":
        return _write_raw_nrrd(path, array, spacing)
    volume = Volume(array, spacing=spacing, directions_ras=directions) if directions is not None else Volume(
        array, spacing=spacing)
    return write_volume(volume, path, compress=False)


def _write_raw_nrrd(path: Path, array: np.ndarray, spacing) -> Path:
    """An NRRD whose header says what Volume refuses to build (e.g. a zero voxel size)."""
    k, j, i = array.shape
    sk, sj, si = spacing
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {i} {j} {k}\nspace directions: ({si},0,0) (0,{sj},0) (0,0,{sk})\n"
              "kinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + np.ascontiguousarray(array, dtype="<f4").tobytes())
    return path


def run_cli(adapter: Adapter, argv: List[str], capsys) -> Tuple[int, List[str]]:
    capsys.readouterr()
    status = adapter.cli_main()(argv)
    captured = capsys.readouterr()
    errors = [line for line in (captured.err + captured.out).splitlines() if line.startswith("error:")]
    return status, errors


def assert_cli_refused(status: int, errors: List[str], case: str, output: Path) -> None:
    print(f"{case}: {errors}")
    assert status == 2, f"exit status {status}, errors {errors}"
    assert len(errors) == 1, f"expected one 'error: ...' line, got {errors}"
    assert re.search(EXPECTED[case], errors[0], re.IGNORECASE), errors[0]
    assert not output.exists(), f"{output.name} was written"


# ------------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("module, case", _params(INPUT_CASES, "logic"))
def test_logic_refuses_bad_input(module, case, slicer_runtime, mrml_scene, monkeypatch, weights_folder):
    adapter = ADAPTERS[module]
    logic = adapter.logic(slicer_runtime)
    weights = valid_weights(adapter, weights_folder)
    context = adapter.context_nodes(mrml_scene)
    if case == "too_large":
        adapter.limit_voxels(monkeypatch, 1000)
    node = new_input_node(adapter, case, mrml_scene)
    before = scene_snapshot(mrml_scene)
    with pytest.raises(ValueError) as raised:
        adapter.run(logic, node, context, model=str(weights))
    print(f"{module}/{case}: {raised.value}")
    assert re.search(EXPECTED[case], str(raised.value), re.IGNORECASE), str(raised.value)
    assert_scene_unchanged(before, scene_snapshot(mrml_scene))


@pytest.mark.parametrize("module, case", _params(INPUT_CASES, "cli"))
def test_cli_refuses_bad_input(module, case, tmp_path, capsys, monkeypatch, weights_folder):
    adapter = ADAPTERS[module]
    weights = valid_weights(adapter, weights_folder)
    if case == "too_large":
        adapter.cli_main()
        adapter.limit_voxels(monkeypatch, 1000)
    path = write_input_file(adapter, case, tmp_path)
    output = tmp_path / adapter.cli_output_name()
    argv = adapter.cli_argv(path, output, adapter.write_context_files(tmp_path), str(weights))
    status, errors = run_cli(adapter, argv, capsys)
    assert_cli_refused(status, errors, case, output)


@pytest.mark.parametrize("module, case", _params(WEIGHT_CASES, "logic"))
def test_logic_refuses_bad_weights(module, case, slicer_runtime, mrml_scene, monkeypatch, tmp_path,
                                   weights_folder):
    adapter = ADAPTERS[module]
    logic = adapter.logic(slicer_runtime)
    context = adapter.context_nodes(mrml_scene)
    node = _valid_node(adapter, mrml_scene)
    if case == "wrong_sha256":
        catalogue = adapter.catalogue_with_wrong_checksums(tmp_path / "catalogue",
                                                           valid_weights(adapter, weights_folder))
        adapter.use_catalogue(monkeypatch, catalogue)
        model = None
    else:
        model = str(damaged_weights(adapter, case, tmp_path / "weights", weights_folder))
    before = scene_snapshot(mrml_scene)
    with pytest.raises(ValueError) as raised:
        adapter.run(logic, node, context, model=model)
    print(f"{module}/{case}: {raised.value}")
    assert re.search(EXPECTED[case], str(raised.value), re.IGNORECASE), str(raised.value)
    assert_scene_unchanged(before, scene_snapshot(mrml_scene))


@pytest.mark.parametrize("module, case", _params(WEIGHT_CASES, "cli"))
def test_cli_refuses_bad_weights(module, case, tmp_path, capsys, monkeypatch, weights_folder):
    adapter = ADAPTERS[module]
    adapter.cli_main()
    if case == "wrong_sha256":
        catalogue = adapter.catalogue_with_wrong_checksums(tmp_path / "catalogue",
                                                           valid_weights(adapter, weights_folder))
        adapter.use_catalogue(monkeypatch, catalogue)
        model = None
    else:
        model = str(damaged_weights(adapter, case, tmp_path / "weights", weights_folder))
    path = _valid_file(adapter, tmp_path)
    output = tmp_path / adapter.cli_output_name()
    status, errors = run_cli(adapter, adapter.cli_argv(path, output, adapter.write_context_files(tmp_path), model),
                             capsys)
    assert_cli_refused(status, errors, case, output)


def _valid_node(adapter: Adapter, scene):
    from mednets import mrml
    from mednets.image import Volume

    return mrml.new_volume_node(Volume(adapter.valid_array(), spacing=adapter.spacing()), scene, "Input")


def _valid_file(adapter: Adapter, folder: Path) -> Path:
    from mednets.image import Volume
    from mednets.io import write_volume

    path = folder / adapter.cli_input_name()
    if adapter.channels == 3:
        import tifffile

        tifffile.imwrite(str(path), adapter.valid_array()[0])
        return path
    return write_volume(Volume(adapter.valid_array(), spacing=adapter.spacing()), path, compress=False)


@pytest.mark.parametrize("module, case", _params(["oblique"], "logic"))
def test_logic_accepts_oblique_grid(module, case, slicer_runtime, mrml_scene, weights_folder):
    """Oblique direction cosines are valid patient geometry: the result is computed and lies on the input's grid."""
    import vtk

    from mednets import mrml

    adapter = ADAPTERS[module]
    logic = adapter.logic(slicer_runtime)
    context = adapter.context_nodes(mrml_scene)
    node = new_input_node(adapter, "oblique", mrml_scene)
    before = scene_snapshot(mrml_scene)
    outputs = adapter.run(logic, node, context, model=str(valid_weights(adapter, weights_folder)))
    after = scene_snapshot(mrml_scene)
    assert all(before[i] == after[i] for i in before), "an existing node was modified"
    inputMatrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(inputMatrix)
    checked = 0
    for output in outputs:
        if output.IsA("vtkMRMLVolumeNode"):
            matrix = vtk.vtkMatrix4x4()
            output.GetIJKToRASMatrix(matrix)
            np.testing.assert_allclose(_matrix(matrix), _matrix(inputMatrix), atol=1e-4)
            checked += 1
        elif output.IsA("vtkMRMLSegmentationNode"):
            segmentation = output.GetSegmentation()
            ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
            labels, _ = mrml.labelmap_from_segmentation(output, node, ids)
            assert labels.shape == adapter.valid_array().shape
            inputDirections = vtk.vtkMatrix4x4()
            node.GetIJKToRASDirectionMatrix(inputDirections)
            for segmentId in ids:  # stored on the input's oblique axes (not resampled to an axis-aligned grid)
                labelmap = segmentation.GetSegment(segmentId).GetRepresentation("Binary labelmap")
                if labelmap is None or labelmap.IsEmpty():
                    continue
                directions = vtk.vtkMatrix4x4()
                labelmap.GetDirectionMatrix(directions)
                np.testing.assert_allclose(_matrix(directions)[:3, :3], _matrix(inputDirections)[:3, :3], atol=1e-4)
                checked += 1
            checked += 1
    assert checked, f"no image or segmentation among the outputs {[o.GetClassName() for o in outputs]}"


@pytest.mark.parametrize("module, case", _params(["cancel"], "logic"))
def test_logic_cancel_at_a_random_point_leaves_the_scene_unchanged(module, case, slicer_runtime, mrml_scene,
                                                                     weights_folder):
    from mednets.progress import OperationCancelled

    adapter = ADAPTERS[module]
    logic = adapter.logic(slicer_runtime)
    weights = str(valid_weights(adapter, weights_folder))
    context = adapter.context_nodes(mrml_scene)
    node = _valid_node(adapter, mrml_scene)
    before = scene_snapshot(mrml_scene)
    calls = []
    outputs = adapter.run(logic, node, context, model=weights, cancel=lambda: calls.append(1) and False)
    assert outputs and len(calls) >= 1, "the Logic never asked whether to cancel"
    for output in outputs:  # the valid run worked; back to the initial scene
        mrml_scene.RemoveNode(output)
    for nodeId in set(scene_snapshot(mrml_scene)) - set(before):
        mrml_scene.RemoveNode(mrml_scene.GetNodeByID(nodeId))
    assert_scene_unchanged(before, scene_snapshot(mrml_scene))
    stop = int(np.random.default_rng(sum(map(ord, module))).integers(1, len(calls) + 1))
    seen = []

    def cancel():
        seen.append(1)
        return len(seen) >= stop

    with pytest.raises(OperationCancelled):
        adapter.run(logic, node, context, model=weights, cancel=cancel)
    assert_scene_unchanged(before, scene_snapshot(mrml_scene))


# --------------------------------------------------------------------------------------------------------- training
def _tiny_training_request(output: Path, resume: bool = False):
    from adapters import ensure_on_path

    ensure_on_path("OrganCombo")
    from OrganComboLib.configs import get_config
    from OrganComboLib.training import TrainingRequest
    from mednets.training import Case

    cases = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        image = rng.gamma(2.0, 0.5, size=(16, 16, 16)).astype(np.float32)
        labels = np.zeros((16, 16, 16), np.uint8)
        for organ in range(1, 6):
            k, j, i = rng.integers(2, 12, size=3)
            labels[k:k + 3, j:j + 3, i:i + 3] = organ
        image += 4.0 * (labels > 0)
        cases.append(Case.from_volume(f"case{seed}", image, labels, (4.0, 4.0, 4.0)))
    config = get_config("pet").replace(patch_size=(16, 16, 16), window_size=(16, 16, 16), window_stride=(16, 16, 16),
                                       batch_size=1)
    return TrainingRequest(config=config, train_cases=cases[:2], validation_cases=cases[2:], output_dir=str(output),
                           iterations=6, validate_every=3, model_overrides={"base_channels": 2}, device="cpu",
                           seed=0, resume=resume)


_KILL_SCRIPT = """
import sys, time
sys.path[:0] = {paths!r}
import torch
torch.set_num_threads(1)
from test_robustness import _tiny_training_request
from OrganComboLib.training import train
polls = []
def cancel():
    polls.append(1)
    if len(polls) == {stop}:
        print("PAUSED", flush=True)
        time.sleep(600)
    return False
train(_tiny_training_request({output!r}), cancel=cancel)
"""


@pytest.fixture(scope="module")
def reference_training(tmp_path_factory):
    """The uninterrupted tiny run: its last weights."""
    import torch
    from safetensors.torch import load_file

    output = tmp_path_factory.mktemp("reference-training")
    request = _tiny_training_request(output)  # puts OrganCombo on sys.path
    from OrganComboLib.training import train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # this module's training runs compare weights bit for bit: one thread throughout
    polls = []
    train(request, cancel=lambda: polls.append(1) and False)
    yield load_file(str(output / "last.safetensors")), len(polls)
    torch.set_num_threads(previous)  # later test modules (e.g. the learning tests) keep the session's setting


@pytest.mark.parametrize("module, case", [
    pytest.param("OrganCombo", "train_cancel_resume", id="OrganCombo-train_cancel_resume"),
    pytest.param("OrganCombo", "train_kill_resume", id="OrganCombo-train_kill_resume")])
def test_training_interrupted_at_a_random_point_then_resumed(module, case, tmp_path, reference_training):
    """Training cancelled (state saved) or SIGKILLed (a subprocess) at a random iteration; resuming ends exactly where
    an uninterrupted run ends (the same weights), through OrganCombo's training entry (the shared engine every module
    trains with)."""
    import os
    import signal
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from mednets.progress import OperationCancelled
    from OrganComboLib.training import train

    output = tmp_path / "interrupted"
    stop = int(np.random.default_rng(7 if case == "train_cancel_resume" else 11).integers(2, 6))
    if case == "train_cancel_resume":
        polls = []

        def cancel():
            polls.append(1)
            return len(polls) >= stop

        with pytest.raises(OperationCancelled):
            train(_tiny_training_request(output), cancel=cancel)
    else:
        stop = int(np.random.default_rng(11).integers(5, 7))  # polled in iteration 4 or 5: after the state saved at 3
        paths = [str(Path(__file__).parent), str(Path(__file__).parents[2] / "MedNetsCore"),
                 str(Path(__file__).parents[2] / "OrganCombo")]
        script = _KILL_SCRIPT.format(paths=paths, stop=stop, output=str(output))
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            line = process.stdout.readline()
            assert line.strip() == "PAUSED", f"the training subprocess ended early ({process.wait()})"
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    from mednets.training.engine import STATE_FILE

    assert (output / STATE_FILE).is_file(), "the interrupted run left no training state"
    reference, referencePolls = reference_training
    polls = []
    result = train(_tiny_training_request(output, resume=True), cancel=lambda: polls.append(1) and False)
    assert result.iterations == 6
    assert len(polls) < referencePolls, "the resumed run started from the beginning"
    resumed = load_file(str(output / "last.safetensors"))
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name


# ------------------------------------------------------------------------------------------- training, every module
@pytest.fixture
def one_thread():
    """Training on one thread (the suite shares the machine's cores); the previous setting is restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _folder_hashes(folder: Path) -> Dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _model_key(model) -> Tuple[str, str]:
    stage = getattr(model, "ln", None)  # AxillaryLNDetect lists detectors (a VOI + LN checkpoint pair)
    path = getattr(model, "path", None) or getattr(stage, "path", None) or ""
    return str(getattr(model, "name", model)), str(path)


@pytest.mark.parametrize("module, case", _params(["train_cancel"], "logic"))
def test_logic_training_cancelled_at_a_random_point(module, case, slicer_runtime, mrml_scene, tmp_path, one_thread):
    """Issue 9: ``Logic.train`` (a tiny configuration) cancelled at a random poll of its cancel callback raises
    OperationCancelled; the scene, the training folder's case files and the model list are as before, and whatever
    the cancelled run left in its output folder is complete (checkpoints load; no temporary files)."""
    from mednets.progress import OperationCancelled

    adapter = ADAPTERS[module]
    logic = adapter.logic(slicer_runtime)
    folder = tmp_path / "training cases"
    adapter.add_training_cases(logic, mrml_scene, folder)
    cases = _folder_hashes(folder)
    assert cases, "no training case was written"
    polls: List[int] = []  # an uninterrupted run (its own Logic, its own output folder): how often it polls
    adapter.train(adapter.logic(slicer_runtime), folder, tmp_path / "uninterrupted",
                  cancel=lambda: polls.append(1) and False)
    assert polls, "the training never asked whether to cancel"

    before = scene_snapshot(mrml_scene)
    models = {_model_key(model) for model in logic.availableModels()}
    rng = np.random.default_rng(sum(map(ord, module)) + 9)
    half = max(1, len(polls) // 2)  # one stop in each half of the run (one only if it polls once)
    stops = sorted({int(rng.integers(1, half + 1)), int(rng.integers(min(half + 1, len(polls)), len(polls) + 1))})
    for stop in stops:
        seen: List[int] = []

        def cancel():
            seen.append(1)
            return len(seen) >= stop

        output = tmp_path / f"cancelled at {stop}"
        with pytest.raises(OperationCancelled):
            adapter.train(logic, folder, output, cancel=cancel)
        assert len(seen) == stop, f"training went on polling after the cancel ({len(seen)} polls, cancelled at {stop})"
        assert_scene_unchanged(before, scene_snapshot(mrml_scene))
        assert _folder_hashes(folder) == cases, "the training folder's case files changed"
        _assert_complete_outputs(output)
        added = [model for model in logic.availableModels() if _model_key(model) not in models]
        for model in added:  # a checkpoint the cancelled run saved and lists must load as a complete model
            logic.loadModel(model, device="cpu")
        print(f"{module}: cancelled at poll {stop} of {len(polls)}; left "
              f"{sorted(_folder_hashes(output)) if output.exists() else []}; {len(added)} new model(s) listed")


def _assert_complete_outputs(output: Path) -> None:
    """Every file a cancelled run left is whole: no temporary files, checkpoints and training state load."""
    import torch
    from safetensors import safe_open

    if not output.exists():
        return
    leftovers = [path for path in output.rglob("*") if path.is_file()]
    temporary = [path.name for path in leftovers if path.name.startswith(".")]
    assert not temporary, f"temporary (partial) files left behind: {temporary}"
    for path in leftovers:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:  # the header and every tensor
                for name in handle.keys():
                    handle.get_tensor(name)
        elif path.suffix == ".pt":
            torch.load(str(path), map_location="cpu", weights_only=True)
        elif path.suffix == ".json":
            json.loads(path.read_text())
