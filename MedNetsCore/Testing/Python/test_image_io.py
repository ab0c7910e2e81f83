"""mednets.image geometry conventions and mednets.io reading/writing, checked against SimpleITK and pydicom."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
import SimpleITK as sitk

from mednets import io
from mednets.image import (Volume, compose_ijk_to_ras, convert_coordinates, coordinate_frame, ijk_to_ras_from_sitk,
                           kji_to_ras, lps_to_ras, ras_to_kji, ras_to_lps, sitk_geometry_from_ijk_to_ras,
                           validate_ijk_to_ras)

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

#: The hand-computed example of mednets.image's docstring: I along -R (2 mm), J along +A (3 mm), K along +S (5 mm).
HAND_IJK_TO_RAS = np.array([[-2.0, 0.0, 0.0, 10.0], [0.0, 3.0, 0.0, 20.0], [0.0, 0.0, 5.0, 30.0], [0, 0, 0, 1]])


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation matrix."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


OBLIQUE = rotation([1.0, 2.0, 3.0], 0.5)
SPACING_KJI = (3.0, 1.25, 0.75)
ORIGIN_RAS = (12.5, -40.0, 7.25)


def oblique_volume(dtype=np.int16, shape=(5, 6, 7)) -> Volume:
    values = np.arange(np.prod(shape)).reshape(shape) * 7 % 1000 - 300
    return Volume(values.astype(dtype), spacing=SPACING_KJI, origin_ras=ORIGIN_RAS, directions_ras=OBLIQUE)


def corner_points_ras(shape, spacing_kji, origin_ras, directions_ras) -> np.ndarray:
    """RAS centres of the 8 corner voxels, computed from the geometry parts (independently of ijk_to_ras)."""
    corners = []
    for k in (0, shape[0] - 1):
        for j in (0, shape[1] - 1):
            for i in (0, shape[2] - 1):
                offset = (directions_ras[:, 0] * i * spacing_kji[2] + directions_ras[:, 1] * j * spacing_kji[1]
                          + directions_ras[:, 2] * k * spacing_kji[0])
                corners.append(np.asarray(origin_ras) + offset)
    return np.array(corners)


def corner_indices(shape) -> np.ndarray:
    return np.array([[k, j, i] for k in (0, shape[0] - 1) for j in (0, shape[1] - 1) for i in (0, shape[2] - 1)])


# ------------------------------------------------------------------------------------------------ geometry helpers
def test_hand_computed_voxel_lands_at_known_ras_and_lps_points():
    volume = Volume(np.zeros((2, 3, 4), np.int16), HAND_IJK_TO_RAS)
    assert volume.kji_to_ras([1, 2, 3]) == pytest.approx([4.0, 26.0, 35.0])
    assert volume.spacing == (5.0, 3.0, 2.0)
    assert volume.origin_ras == (10.0, 20.0, 30.0)
    assert volume.origin_lps == (-10.0, -20.0, 30.0)
    image = volume.to_sitk()
    assert image.GetSize() == (4, 3, 2)  # (I, J, K)
    assert image.GetSpacing() == (2.0, 3.0, 5.0)
    assert image.TransformIndexToPhysicalPoint((3, 2, 1)) == pytest.approx((-4.0, -26.0, 35.0))
    np.testing.assert_allclose(volume.direction_lps, np.diag([1.0, -1.0, 1.0]))
    assert ras_to_kji([4.0, 26.0, 35.0], HAND_IJK_TO_RAS) == pytest.approx([1.0, 2.0, 3.0])


def test_array_axis_order_matches_simpleitk_index_order():
    array = np.zeros((2, 3, 4), np.float32)
    array[1, 2, 3] = 42.0  # k=1, j=2, i=3
    image = Volume(array, HAND_IJK_TO_RAS).to_sitk()
    assert image.GetPixel(3, 2, 1) == 42.0  # SimpleITK indexes (x, y, z) = (i, j, k)


def test_lps_ras_flip_the_first_two_coordinates():
    points = np.array([[1.0, -2.0, 3.0], [0.5, 0.25, -7.0]])
    np.testing.assert_array_equal(lps_to_ras(points), [[-1.0, 2.0, 3.0], [-0.5, -0.25, -7.0]])
    np.testing.assert_array_equal(ras_to_lps(lps_to_ras(points)), points)
    np.testing.assert_array_equal(convert_coordinates(points, "ras", "LPS"), ras_to_lps(points))
    same = convert_coordinates(points, "LPS", "lps")
    np.testing.assert_array_equal(same, points)
    assert same is not points
    assert coordinate_frame("ras") == "RAS"
    with pytest.raises(ValueError, match="'RAS' or 'LPS'"):
        coordinate_frame("XYZ")
    with pytest.raises(ValueError, match="3 coordinates"):
        lps_to_ras([1.0, 2.0])


def test_kji_ras_round_trip_on_an_oblique_anisotropic_grid():
    matrix = compose_ijk_to_ras(SPACING_KJI, ORIGIN_RAS, OBLIQUE)
    indices = np.random.default_rng(0).uniform(-2, 9, size=(50, 3))
    points = kji_to_ras(indices, matrix)
    np.testing.assert_allclose(ras_to_kji(points, matrix), indices, atol=1e-10)
    # single point keeps its shape
    assert kji_to_ras(indices[0], matrix).shape == (3,)
    shape = (5, 6, 7)
    np.testing.assert_allclose(kji_to_ras(corner_indices(shape), matrix),
                               corner_points_ras(shape, SPACING_KJI, ORIGIN_RAS, OBLIQUE), atol=1e-12)


def test_ijk_to_ras_from_sitk_agrees_with_simpleitk_physical_points():
    image = sitk.Image([7, 6, 5], sitk.sitkInt16)
    image.SetSpacing((0.75, 1.25, 3.0))
    image.SetOrigin((-12.5, 40.0, 7.25))
    image.SetDirection(tuple((np.diag([-1.0, -1.0, 1.0]) @ OBLIQUE).ravel()))
    matrix = ijk_to_ras_from_sitk(image)
    for index in [(0, 0, 0), (6, 5, 4), (3, 0, 2), (1, 5, 0)]:
        lps = image.TransformIndexToPhysicalPoint(index)
        np.testing.assert_allclose(kji_to_ras(index[::-1], matrix), lps_to_ras(lps), atol=1e-9)
    origin, spacing, direction = sitk_geometry_from_ijk_to_ras(matrix)
    np.testing.assert_allclose(origin, image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(spacing, image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(direction, image.GetDirection(), atol=1e-12)


@pytest.mark.parametrize("matrix, message", [
    (np.eye(3), "4x4"),
    (np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "sheared"),
    (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0.1, 1.0]]), "last row"),
    (np.diag([1.0, 0.0, 1.0, 1.0]), "zero-length"),
    (np.full((4, 4), np.nan), "NaN"),
])
def test_invalid_grid_matrices_are_refused(matrix, message):
    with pytest.raises(ValueError, match=message):
        validate_ijk_to_ras(matrix)


def test_volume_shapes_2d_vector_and_with_array():
    grey = Volume(np.zeros((4, 5), np.uint8), spacing=(0.5, 0.25))
    assert grey.array.shape == (1, 4, 5) and grey.is_2d and not grey.is_vector
    assert grey.spacing == (1.0, 0.5, 0.25)
    assert grey.image2d.shape == (4, 5)
    rgb = Volume.from_image2d(np.zeros((4, 5, 3), np.uint8), spacing=(0.5, 0.25))
    assert rgb.array.shape == (1, 4, 5, 3) and rgb.num_channels == 3 and rgb.is_vector and rgb.is_2d
    volume = oblique_volume()
    assert volume.num_channels == 1 and not volume.is_2d
    probabilities = volume.with_array(np.zeros(volume.shape + (2,), np.float32))
    assert probabilities.num_channels == 2 and probabilities.same_grid(volume)
    with pytest.raises(ValueError, match="does not fit the grid"):
        volume.with_array(np.zeros((5, 6, 8)))
    with pytest.raises(ValueError, match="single-slice"):
        _ = volume.image2d
    with pytest.raises(ValueError, match="not both"):
        Volume(np.zeros((2, 2, 2)), np.eye(4), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        Volume(np.zeros((2, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="orthonormal"):
        Volume(np.zeros((2, 2, 2)), directions_ras=np.ones((3, 3)))


def test_to_sitk_and_back_keeps_pixels_types_and_oblique_geometry():
    volume = oblique_volume(np.float32)
    back = Volume.from_sitk(volume.to_sitk())
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-12)
    vector = Volume(np.random.default_rng(1).random((3, 4, 5, 3)).astype(np.float32), volume.ijk_to_ras[:, :])
    image = vector.to_sitk()
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetDimension() == 3
    np.testing.assert_array_equal(Volume.from_sitk(image).array, vector.array)
    assert Volume(np.ones((2, 2, 2), bool)).to_sitk().GetPixelID() == sitk.sitkUInt8
    assert Volume(np.ones((2, 2, 2), np.float16)).to_sitk().GetPixelID() == sitk.sitkFloat32


def test_from_sitk_2d_image_becomes_single_slice_and_4d_becomes_channels():
    image2d = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    image2d.SetSpacing((0.5, 2.0))
    image2d.SetOrigin((1.0, 2.0))
    volume = Volume.from_sitk(image2d)
    assert volume.array.shape == (1, 3, 4)
    assert volume.spacing == (1.0, 2.0, 0.5)
    assert volume.origin_ras == (-1.0, -2.0, 0.0)
    four = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)  # (T, K, J, I)
    image4d = sitk.GetImageFromArray(four, isVector=False)
    assert image4d.GetDimension() == 4
    image4d.SetSpacing((0.5, 1.0, 2.0, 10.0))
    volume4d = Volume.from_sitk(image4d)
    assert volume4d.array.shape == (3, 4, 5, 2)
    np.testing.assert_array_equal(volume4d.array[..., 1], four[1])
    assert volume4d.spacing == (2.0, 1.0, 0.5)


# ------------------------------------------------------------------------------------------------ file formats
@pytest.mark.parametrize("extension", [".nrrd", ".nii", ".nii.gz", ".mha"])
def test_volume_file_round_trip_keeps_data_and_oblique_anisotropic_geometry(tmp_path, extension):
    volume = oblique_volume()
    path = io.write_volume(volume, tmp_path / f"image{extension}")
    assert sorted(os.listdir(tmp_path)) == [f"image{extension}"]  # no temporary file left over
    back = io.read_volume(path)
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, volume.array)
    tolerance = 1e-4 if extension.startswith(".nii") else 1e-9  # NIfTI stores its affine in float32
    np.testing.assert_allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=tolerance)
    np.testing.assert_allclose(back.kji_to_ras(corner_indices(volume.shape)),
                               corner_points_ras(volume.shape, SPACING_KJI, ORIGIN_RAS, OBLIQUE), atol=tolerance)


def test_vector_volume_and_sitk_image_round_trip(tmp_path):
    vector = Volume(np.random.default_rng(2).normal(size=(3, 4, 5, 3)).astype(np.float32),
                    compose_ijk_to_ras(SPACING_KJI, ORIGIN_RAS, OBLIQUE))
    back = io.read_volume(io.write_volume(vector, tmp_path / "field.nrrd"))
    np.testing.assert_array_equal(back.array, vector.array)
    np.testing.assert_allclose(back.ijk_to_ras, vector.ijk_to_ras, atol=1e-9)
    image = vector.to_sitk()
    io.write_volume(image, tmp_path / "from_sitk.mha", compress=False)
    np.testing.assert_array_equal(io.read_volume(tmp_path / "from_sitk.mha").array, vector.array)


@pytest.mark.parametrize("name, array", [
    ("rgb.png", np.random.default_rng(3).integers(0, 256, size=(1, 6, 7, 3), dtype=np.uint8)),
    ("grey16.png", np.random.default_rng(4).integers(0, 65536, size=(1, 6, 7), dtype=np.uint16)),
    ("rgb.tif", np.random.default_rng(5).integers(0, 256, size=(1, 6, 7, 3), dtype=np.uint8)),
    ("rgb.bmp", np.random.default_rng(6).integers(0, 256, size=(1, 6, 7, 3), dtype=np.uint8)),
])
def test_2d_images_round_trip_as_single_slice_volumes(tmp_path, name, array):
    back = io.read_volume(io.write_volume(Volume(array), tmp_path / name))
    assert back.is_2d
    np.testing.assert_array_equal(back.array, array)


def test_jpeg_is_read_as_single_slice_rgb(tmp_path):
    smooth = np.zeros((1, 16, 16, 3), np.uint8)
    smooth[..., 0] = 200
    smooth[..., 2] = 50
    back = io.read_volume(io.write_volume(Volume(smooth), tmp_path / "photo.jpg"))
    assert back.array.shape == (1, 16, 16, 3) and back.array.dtype == np.uint8
    assert np.abs(back.array.astype(int) - smooth).max() <= 3  # lossy


def test_failed_write_leaves_the_destination_untouched(tmp_path):
    destination = tmp_path / "image.png"
    io.write_volume(Volume(np.full((1, 4, 4), 7, np.uint8)), destination)
    before = destination.read_bytes()
    with pytest.raises(ValueError, match="could not write"):
        io.write_volume(Volume(np.zeros((1, 4, 4), np.float64)), destination)  # PNG cannot store float64
    assert destination.read_bytes() == before
    assert os.listdir(tmp_path) == ["image.png"]


def test_atomic_output_path_keeps_the_extension_and_cleans_up(tmp_path):
    with io.atomic_output_path(tmp_path / "a.nii.gz") as temporary:
        assert temporary.parent == tmp_path and temporary.name.endswith(".nii.gz") and temporary.name.startswith(".a.")
        temporary.write_bytes(b"data")
    assert (tmp_path / "a.nii.gz").read_bytes() == b"data"
    with pytest.raises(RuntimeError):
        with io.atomic_output_path(tmp_path / "a.nii.gz") as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert (tmp_path / "a.nii.gz").read_bytes() == b"data" and os.listdir(tmp_path) == ["a.nii.gz"]


def test_file_extension_keeps_nii_gz():
    assert io.file_extension("/x/Case.NII.GZ") == ".nii.gz"
    assert io.file_extension("scan.seg.nrrd") == ".nrrd"
    assert io.file_extension("no_extension") == ""


# ------------------------------------------------------------------------------------------------ errors
def test_reading_a_missing_path_names_it(tmp_path):
    missing = tmp_path / "nope.nrrd"
    with pytest.raises(FileNotFoundError, match="nope.nrrd"):
        io.read_volume(missing)


def test_unsupported_extension_is_refused_on_read_and_write(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"unsupported file type \(extension '.txt'"):
        io.read_volume(text)
    with pytest.raises(ValueError, match="unsupported extension '.txt'"):
        io.write_volume(oblique_volume(), tmp_path / "out.txt")
    with pytest.raises(ValueError, match="detached headers"):
        io.write_volume(oblique_volume(), tmp_path / "out.mhd")
    with pytest.raises(ValueError, match="stores one 2D image"):
        io.write_volume(oblique_volume(np.uint8), tmp_path / "out.png")
    with pytest.raises(TypeError, match="Volume or a SimpleITK Image"):
        io.write_volume(np.zeros((2, 2, 2)), tmp_path / "out.nrrd")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_corrupted_file_gives_a_value_error(tmp_path):
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 9 9 9\nencoding: raw\n\n\x00\x01")
    with pytest.raises(ValueError, match="could not read"):
        io.read_volume(broken)


def test_empty_dicom_folder(tmp_path):
    with pytest.raises(ValueError, match="no DICOM series found"):
        io.read_volume(tmp_path)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no DICOM series found"):
        io.read_dicom_series(tmp_path)
    with pytest.raises(NotADirectoryError):
        io.read_dicom_series(tmp_path / "readme.txt")
    with pytest.raises(FileNotFoundError):
        io.read_dicom_series(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ DICOM vs pydicom
def pydicom_geometry(dataset) -> dict:
    return {
        "position": np.array([float(v) for v in dataset.ImagePositionPatient]),
        "row_spacing": float(dataset.PixelSpacing[0]),  # between rows = along J
        "column_spacing": float(dataset.PixelSpacing[1]),  # between columns = along I
        "row_direction": np.array([float(v) for v in dataset.ImageOrientationPatient[:3]]),  # direction of I (LPS)
        "column_direction": np.array([float(v) for v in dataset.ImageOrientationPatient[3:]]),  # direction of J
    }


def pydicom_values(dataset) -> np.ndarray:
    slope = float(getattr(dataset, "RescaleSlope", 1.0))
    intercept = float(getattr(dataset, "RescaleIntercept", 0.0))
    return dataset.pixel_array.astype(np.float64) * slope + intercept


def assert_slice_matches(volume: Volume, k: int, dataset) -> None:
    geometry = pydicom_geometry(dataset)
    np.testing.assert_allclose(volume.array[k].astype(np.float64), pydicom_values(dataset))
    np.testing.assert_allclose(ras_to_lps(volume.kji_to_ras([k, 0, 0])), geometry["position"], atol=1e-4)
    assert volume.spacing[1] == pytest.approx(geometry["row_spacing"], abs=1e-6)
    assert volume.spacing[2] == pytest.approx(geometry["column_spacing"], abs=1e-6)
    np.testing.assert_allclose(volume.direction_lps[:, 0], geometry["row_direction"], atol=1e-6)
    np.testing.assert_allclose(volume.direction_lps[:, 1], geometry["column_direction"], atol=1e-6)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_single_dicom_file_matches_pydicom(name):
    path = get_testdata_file(name)
    with warnings.catch_warnings():
        # pydicom's test folder holds deliberately broken files that stop GDCM's folder scan: the file is read alone
        warnings.simplefilter("ignore", RuntimeWarning)
        volume = io.read_volume(path)
    dataset = pydicom.dcmread(path)
    assert volume.array.shape == (1, dataset.Rows, dataset.Columns)
    assert_slice_matches(volume, 0, dataset)


def ct_series_folder() -> Path:
    return Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def series_datasets_by_position(folder: Path) -> List:
    datasets = [pydicom.dcmread(str(path)) for path in sorted(folder.iterdir())]
    normal = np.cross(*np.reshape([float(v) for v in datasets[0].ImageOrientationPatient], (2, 3)))
    return sorted(datasets, key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], normal)))


def test_multi_file_series_matches_pydicom_slice_by_slice():
    folder = ct_series_folder()
    datasets = series_datasets_by_position(folder)
    volume = io.read_volume(folder)
    assert volume.shape == (len(datasets), datasets[0].Rows, datasets[0].Columns)
    for k, dataset in enumerate(datasets):
        assert_slice_matches(volume, k, dataset)
    positions = np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets])
    assert volume.spacing[0] == pytest.approx(np.linalg.norm(positions[1] - positions[0]), abs=1e-6)
    normal = np.cross(pydicom_geometry(datasets[0])["row_direction"], pydicom_geometry(datasets[0])["column_direction"])
    np.testing.assert_allclose(volume.direction_lps[:, 2], normal, atol=1e-6)
    # one file of the series reads the whole series
    one_file = io.read_volume(sorted(folder.iterdir())[2])
    np.testing.assert_array_equal(one_file.array, volume.array)
    np.testing.assert_allclose(one_file.ijk_to_ras, volume.ijk_to_ras)


def copy_series(source: Path, destination: Path) -> List[Path]:
    destination.mkdir(exist_ok=True)
    copies = []
    for path in sorted(source.iterdir()):
        copies.append(Path(shutil.copy(path, destination / f"{source.name}_{path.name}.dcm")))
    return copies


def test_largest_series_is_picked_and_series_uid_selects_another(tmp_path):
    study = ct_series_folder().parent
    copy_series(study / "CT5N", tmp_path)
    two = copy_series(study / "CT2N", tmp_path)
    series = io.list_dicom_series(tmp_path)
    assert sorted(len(files) for files in series.values()) == [2, 5]
    assert io.read_dicom_series(tmp_path).shape[0] == 5
    two_uid = str(pydicom.dcmread(str(two[0])).SeriesInstanceUID)
    # CT2N's two slices are an axial-to-sagittal pair: refused rather than read with a wrong geometry
    with pytest.raises(ValueError, match="mixes slice orientations"):
        io.read_dicom_series(tmp_path, series_uid=two_uid)
    with pytest.raises(ValueError, match="is not in folder"):
        io.read_dicom_series(tmp_path, series_uid="1.2.3.4")


@pytest.mark.parametrize("series, message", [
    ("98892003/MR700", "mixes slice orientations"),
    ("77654033/CT2", "irregular slice spacing"),
])
def test_irregular_pydicom_series_are_refused(series, message):
    folder = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / series
    with pytest.raises(ValueError, match=message):
        io.read_volume(folder)


def test_missing_slice_gantry_tilt_and_varying_rescale(tmp_path):
    copies = copy_series(ct_series_folder(), tmp_path / "gap")
    by_z = sorted(copies, key=lambda p: float(pydicom.dcmread(str(p)).ImagePositionPatient[2]))
    by_z[2].unlink()  # a missing middle slice
    with pytest.raises(ValueError, match="irregular slice spacing"):
        io.read_volume(tmp_path / "gap")

    tilted = sorted(copy_series(ct_series_folder(), tmp_path / "tilt"),
                    key=lambda p: float(pydicom.dcmread(str(p)).ImagePositionPatient[2]))
    for index, path in enumerate(tilted):
        dataset = pydicom.dcmread(str(path))
        position = [float(v) for v in dataset.ImagePositionPatient]
        dataset.ImagePositionPatient = [position[0], position[1] + 0.8 * index, position[2]]  # sheared along y
        dataset.save_as(str(path))
    with pytest.raises(ValueError, match="gantry tilt"):
        io.read_volume(tmp_path / "tilt")

    rescaled = sorted(copy_series(ct_series_folder(), tmp_path / "rescale"),
                      key=lambda p: float(pydicom.dcmread(str(p)).ImagePositionPatient[2]))
    dataset = pydicom.dcmread(str(rescaled[1]))
    dataset.RescaleSlope = "0.5"
    dataset.save_as(str(rescaled[1]))
    volume = io.read_volume(tmp_path / "rescale")
    assert volume.array.dtype == np.float32
    for k, path in enumerate(rescaled):
        np.testing.assert_allclose(volume.array[k], pydicom_values(pydicom.dcmread(str(path))), rtol=1e-6)
