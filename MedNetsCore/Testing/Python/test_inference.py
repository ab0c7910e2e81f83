"""Tests of mednets.inference.sliding_window.

Oracles: MONAI's ``sliding_window_inference`` (same window grid, "constant"/"gaussian" blending), a brute-force
whole-image run of a valid-convolution network (every output voxel has one exact value, so any blend must return it),
and a brute-force per-window loop for the "max" blend.
"""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mednets.device import DeviceFallbackWarning
from mednets.inference import sliding_window, window_positions
from mednets.progress import CancelToken, OperationCancelled

monai_inferers = pytest.importorskip("monai.inferers")
monai_data_utils = pytest.importorskip("monai.data.utils")


def same_padding_net(in_channels: int, out_channels: int, spatial_dims: int = 3, seed: int = 0) -> torch.nn.Module:
    """Small conv net with zero padding: its output near a window border depends on where the window is."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(in_channels, 4, 3, padding=1), torch.nn.Tanh(),
                               conv(4, out_channels, 3, padding=1)).eval()


def valid_net(in_channels: int, out_channels: int, spatial_dims: int = 3, seed: int = 0) -> torch.nn.Module:
    """Valid (unpadded) convolutions: two 5-wide kernels lose 4 voxels at each side of every axis."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(in_channels, 3, 5), torch.nn.Tanh(), conv(3, out_channels, 5)).eval()


def monai_reference(image: torch.Tensor, predictor, roi, overlap, blend, sigma_scale=0.125, padding_mode="constant"):
    with torch.no_grad():
        return monai_inferers.sliding_window_inference(image, roi, 3, predictor, overlap=overlap, mode=blend,
                                                       sigma_scale=sigma_scale, padding_mode=padding_mode)


# ------------------------------------------------------------------------------------------------ MONAI agreement

@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.25, 0.5])
@pytest.mark.parametrize("roi", [(12, 10, 14), (36, 9, 8)])  # the second is larger than the image along axis 0
@pytest.mark.parametrize("sigma_scale", [0.125, 1.0])  # floored (non-separable) and unfloored (separable) Gaussian
def test_matches_monai_3d(blend, overlap, roi, sigma_scale):
    net = same_padding_net(2, 3)
    image = torch.rand(2, 2, 29, 23, 31, generator=torch.Generator().manual_seed(1))
    expected = monai_reference(image, net, roi, overlap, blend, sigma_scale)
    result = sliding_window(image, net, roi, overlap=overlap, blend=blend, batch_size=3, sigma_scale=sigma_scale)
    assert result.shape == expected.shape == (2, 3, 29, 23, 31)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_monai_2d_numpy(channels_last):
    net = same_padding_net(1, 2, spatial_dims=2)
    image = np.random.default_rng(2).random((1, 50, 37), dtype=np.float32)
    expected = monai_reference(torch.from_numpy(image)[None], net, (16, 12), (0.25, 0.5), "gaussian")[0].numpy()
    result = sliding_window(image, net, (16, 12), overlap=(0.25, 0.5), blend="gaussian", batch_size=5,
                            channels_last=channels_last)
    assert isinstance(result, np.ndarray) and result.shape == (2, 50, 37) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding_mode", ["replicate", "reflect", "circular"])
def test_matches_monai_padding_modes_when_window_exceeds_image(padding_mode):
    net = same_padding_net(1, 2)
    image = torch.rand(1, 1, 10, 21, 7, generator=torch.Generator().manual_seed(3))
    roi = (16, 8, 12)  # larger than the image along axes 0 and 2: MONAI pads the image, we pad windows
    expected = monai_reference(image, net, roi, 0.25, "constant", padding_mode=padding_mode)
    result = sliding_window(image, net, roi, overlap=0.25, blend="constant", padding_mode=padding_mode)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)


def test_matches_monai_for_tuple_and_dict_outputs():
    net_a, net_b = same_padding_net(1, 2, seed=4), same_padding_net(1, 3, seed=5)
    image = torch.rand(1, 1, 20, 17, 22, generator=torch.Generator().manual_seed(6))
    expected_a = monai_reference(image, net_a, 10, 0.25, "gaussian")
    expected_b = monai_reference(image, net_b, 10, 0.25, "gaussian")
    as_tuple = sliding_window(image, lambda x: (net_a(x), net_b(x)), 10, blend="gaussian")
    as_dict = sliding_window(image, lambda x: {"organs": net_a(x), "tumour": net_b(x)}, 10, blend="gaussian")
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert isinstance(as_dict, dict) and list(as_dict) == ["organs", "tumour"]
    for result, expected in ((as_tuple[0], expected_a), (as_tuple[1], expected_b),
                             (as_dict["organs"], expected_a), (as_dict["tumour"], expected_b)):
        torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape, roi, overlap", [((29, 23, 31), (12, 10, 14), 0.25), ((64, 40), (16, 40), 0.5),
                                                 ((100,), (33,), 0.7)])
def test_window_positions_equal_monai_grid(shape, roi, overlap):
    slices = monai_data_utils.dense_patch_slices(shape, roi, monai_inferers.utils._get_scan_interval(
        shape, roi, len(shape), (overlap,) * len(shape)))
    assert window_positions(shape, roi, overlap) == [tuple(s.start for s in window) for window in slices]


# ------------------------------------------------------------------------------------ valid convolutions (crop)

@pytest.mark.parametrize("blend", ["gaussian", "constant", "max"])
@pytest.mark.parametrize("padding_mode", ["constant", "replicate", "reflect", "circular"])
def test_valid_convolution_net_equals_whole_image_run(blend, padding_mode):
    net = valid_net(1, 2)
    image = torch.rand(1, 1, 23, 19, 30, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():  # brute force: the network on the whole image padded by the 4 lost voxels
        expected = net(F.pad(image, (4,) * 6, mode=padding_mode))
    assert expected.shape == (1, 2, 23, 19, 30)
    for roi in [(18, 16, 20), (40, 12, 11)]:  # output tiles 10x8x12 (overlapping), and one larger than axis 0
        result = sliding_window(image, net, roi, overlap=0.25, blend=blend, output_crop=4, batch_size=4,
                                padding_mode=padding_mode)
        torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)


def test_valid_convolution_net_2d_numpy_with_different_crops_per_output():
    net = valid_net(1, 2, spatial_dims=2)

    def predictor(batch: torch.Tensor):
        # output "net" loses 4 voxels per side; output "image" is the input centre, losing 2 per side
        return {"net": net(batch), "image": batch[:, :, 2:-2, 2:-2]}

    image = np.random.default_rng(8).random((1, 41, 33), dtype=np.float32)
    result = sliding_window(image, predictor, (20, 18), overlap=0.5, output_crop={"net": 4, "image": (2, 2)},
                            padding_mode="reflect")
    with torch.no_grad():
        expected = net(F.pad(torch.from_numpy(image)[None], (4, 4, 4, 4), mode="reflect"))[0].numpy()
    np.testing.assert_allclose(result["net"], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result["image"], image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size, roi, crop, overlap", [(50, 20, 4, 0.25), (50, 30, 10, 0.5), (9, 30, 10, 0.25),
                                                       (64, 72, 20, 0.25)])
def test_output_tiles_cover_the_image_with_the_requested_overlap(size, roi, crop, overlap):
    starts = [s[0] for s in window_positions((size,), roi, overlap, output_crop=crop)]
    tile = roi - 2 * crop
    tiles = [(s + crop, s + crop + tile) for s in starts]
    assert tiles[0][0] <= 0 and tiles[-1][1] >= size  # border voxels get predictions
    for (lo_a, hi_a), (lo_b, hi_b) in zip(tiles, tiles[1:]):
        assert lo_a < lo_b and hi_a - lo_b >= math.floor(overlap * tile)  # overlap measured on output tiles
    if tile < size:  # as few tiles as that overlap allows
        assert len(tiles) == 1 + math.ceil((size - tile) / int(tile * (1 - overlap)))


# --------------------------------------------------------------------------------------------------- max blending

def test_max_blend_equals_brute_force_maximum_over_windows():
    net = same_padding_net(1, 2, seed=9)
    image = torch.rand(1, 1, 21, 18, 25, generator=torch.Generator().manual_seed(10))
    roi = (10, 8, 12)
    expected = torch.full((1, 2, 21, 18, 25), -math.inf)
    with torch.no_grad():
        for start in window_positions(image.shape[2:], roi, 0.5):
            region = tuple(slice(s, s + r) for s, r in zip(start, roi))
            expected[(slice(None), slice(None)) + region] = torch.maximum(
                expected[(slice(None), slice(None)) + region], net(image[(slice(None), slice(None)) + region]))
    result = sliding_window(image, net, roi, overlap=0.5, blend="max", batch_size=7)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------- progress, cancel, results

def test_progress_after_every_batch_and_cancel_between_batches():
    image = torch.rand(1, 1, 30, 30, generator=torch.Generator().manual_seed(11))
    windows = len(window_positions((30, 30), 10, 0.25))  # 4 x 4
    calls: List[int] = []
    fractions: List[float] = []

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return batch * 2

    result = sliding_window(image, predictor, 10, batch_size=3, progress=lambda f, m: fractions.append(f))
    torch.testing.assert_close(result, image * 2)
    assert sum(calls) == windows == 16 and len(fractions) == math.ceil(16 / 3)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    token = CancelToken()
    calls.clear()

    def cancel_after_two(fraction: float, message: str) -> None:
        if len(calls) == 2:
            token.request()

    with pytest.raises(OperationCancelled):
        sliding_window(image, predictor, 10, batch_size=3, progress=cancel_after_two, cancel=token)
    assert len(calls) == 2  # polled before the third batch


def test_result_is_an_ordinary_tensor_with_the_image_dtype_rules():
    image = np.arange(2 * 12 * 9, dtype=np.int16).reshape(2, 12, 9)
    image.setflags(write=False)  # read-only input is fine: never written
    seen = []

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.dtype)
        return batch[:, :1] + batch[:, 1:]

    result = sliding_window(image, predictor, (5, 4), blend="constant")
    assert seen and set(seen) == {torch.float32}  # integer images reach the network as float32
    np.testing.assert_allclose(result[0], image[0].astype(np.float32) + image[1], rtol=0, atol=1e-3)

    tensor_result = sliding_window(torch.from_numpy(image.astype(np.float32))[None], predictor, (5, 4))
    tensor_result.add_(1)  # not an inference-mode tensor: in-place updates work outside inference mode
    assert not tensor_result.requires_grad


def test_channels_last_is_kept_only_when_the_network_keeps_it():
    torch.manual_seed(12)
    batch_norm_net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.BatchNorm3d(4),
                                         torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 3, padding=1)).eval()
    instance_norm_net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.InstanceNorm3d(4),
                                            torch.nn.Conv3d(4, 3, 1)).eval()
    image = torch.rand(1, 1, 20, 20, 20, generator=torch.Generator().manual_seed(13))
    for net, keeps_layout in ((batch_norm_net, True), (instance_norm_net, False)):
        layouts: List[bool] = []

        def predictor(batch: torch.Tensor, net=net) -> torch.Tensor:
            layouts.append(batch.stride(1) == 1)  # channels-last strides, also with one channel
            return net(batch)

        result = sliding_window(image, predictor, 12, overlap=0.5, batch_size=2)  # CPU: auto channels-last
        expected = monai_reference(image, net, 12, 0.5, "gaussian")
        torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)
        assert layouts[0] is True and all(layouts[1:]) is keeps_layout and len(layouts) == 14  # 27 windows
        assert (result.stride(1) == 1) is keeps_layout  # results follow the network's layout


def test_auto_channels_last_retries_contiguous_for_predictors_that_need_it():
    image = torch.rand(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(18))

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        return (batch.view(-1) * 3).view(batch.shape)  # flattening with .view needs contiguous memory

    torch.testing.assert_close(sliding_window(image, predictor, 8), image * 3)
    with pytest.raises(RuntimeError, match="view"):
        sliding_window(image, predictor, 8, channels_last=True)


def test_mixed_precision_on_cpu_uses_bfloat16_and_blends_in_float32():
    net = same_padding_net(1, 2)
    image = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(14))
    dtypes = []

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        output = net(batch)
        dtypes.append(output.dtype)
        return output

    result = sliding_window(image, predictor, 8, amp=True)
    full = sliding_window(image, net, 8, amp=False)
    assert set(dtypes) == {torch.bfloat16} and result.dtype == torch.float32
    torch.testing.assert_close(result, full, rtol=0, atol=5e-2)


# ------------------------------------------------------------------------------------------ out-of-memory fallback

class OutOfMemoryAbove(torch.nn.Module):
    """Stands for a GPU network: raises the CUDA out-of-memory error for batches larger than ``limit`` and for input
    on any device but the CPU; otherwise doubles its input. No parameters, so moving it is free."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.batch_sizes: List[int] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(batch.shape[0])
        if batch.shape[0] > self.limit or batch.device.type != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch * 2


def test_out_of_memory_halves_the_batch_size_and_reports_it():
    image = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(15))
    predictor = OutOfMemoryAbove(limit=2)
    messages: List[str] = []
    result = sliding_window(image, predictor, 8, batch_size=8, report=messages.append)
    torch.testing.assert_close(result, image * 2)
    assert predictor.batch_sizes[:3] == [8, 4, 2] and set(predictor.batch_sizes[2:]) <= {1, 2}
    assert len(messages) == 2 and "8 windows" in messages[0] and "retrying with 4" in messages[0]
    with pytest.warns(DeviceFallbackWarning, match="out of memory"):
        sliding_window(image, OutOfMemoryAbove(limit=4), 8, batch_size=8)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sliding_window(image, OutOfMemoryAbove(limit=2), 8, batch_size=8, fallback=False)


def test_out_of_memory_on_an_accelerator_ends_on_the_cpu():
    # "meta" plays the accelerator: every batch moved there fails like a full GPU, the CPU run succeeds.
    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(16))
    predictor = OutOfMemoryAbove(limit=100)
    messages: List[str] = []
    result = sliding_window(image, predictor, 8, batch_size=2, device="meta", report=messages.append)
    torch.testing.assert_close(result, image * 2)
    assert result.device.type == "cpu"
    assert len(messages) == 2 and "retrying with 1" in messages[0] and "on the CPU" in messages[1]


@pytest.mark.parametrize("bad, match", [
    (dict(blend="median"), "blend"), (dict(overlap=1.0), "overlap"), (dict(roi_size=(8, 8)), "spatial axes"),
    (dict(padding_mode="zeros"), "padding_mode"), (dict(batch_size=0), "batch_size"),
    (dict(output_crop=4), "half the window"), (dict(sigma_scale=0.0), "sigma_scale"),
    (dict(output_crop={"missing": 1}), "does not return"),
])
def test_bad_arguments_are_named(bad, match):
    arguments = dict(image=torch.rand(1, 1, 10, 10, 10), predictor=lambda x: x, roi_size=8)
    arguments.update(bad)
    with pytest.raises(ValueError, match=match):
        sliding_window(**arguments)


def test_output_smaller_than_the_window_without_output_crop_is_explained():
    with pytest.raises(ValueError, match="output_crop"):
        sliding_window(torch.rand(1, 1, 20, 20, 20), valid_net(1, 1), 12)
    with pytest.raises(TypeError, match="tensor"):
        sliding_window(torch.rand(1, 1, 20, 20), lambda x: x.numpy(), 12)


# ------------------------------------------------------------------------------------------------------------- CUDA

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("blend", ["gaussian", "max"])
def test_cuda_mixed_precision_matches_cpu(blend):
    net = same_padding_net(1, 2)
    image = torch.rand(1, 1, 40, 36, 44, generator=torch.Generator().manual_seed(17))
    expected = sliding_window(image, net, 16, blend=blend)
    result = sliding_window(image, net.cuda(), 16, blend=blend, device="cuda")  # amp=None: on for CUDA
    net.cpu()
    assert result.device.type == "cpu" and result.dtype == torch.float32  # accumulated on the image's device
    torch.testing.assert_close(result, expected, rtol=0, atol=2e-2)

