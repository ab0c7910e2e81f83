"""Sliding-window inference of 2D/3D networks on images larger than the network's input window.

A volume is covered by a regular grid of windows of ``roi_size``; the predictor runs on batches of windows and the
window predictions are blended into one full-size result per output:

* ``"gaussian"`` (default): weighted average with the importance map of nnU-Net / MONAI, a Gaussian centred on the
  window with ``sigma = sigma_scale * window size`` per axis, floored like MONAI's (values below
  ``max(min(map), 1e-3)`` are raised to it), so that voxels near window borders count less:

      out(x) = sum_w m(x - s_w) p_w(x) / sum_w m(x - s_w)

* ``"constant"``: plain average of the windows covering a voxel (``m = 1``);
* ``"max"``: a voxel takes the maximum over the windows covering it (the fusion rule of the OrganCombo paper).

Window placement follows MONAI's ``sliding_window_inference``: along each axis the step is ``int(tile * (1 - overlap))``
(at least 1), windows start at multiples of the step and the last one is shifted back to end at the border; a window
larger than the image is centred on it (the missing part is padded with ``padding_mode``) and the result is cropped back
to the image. For the same ``roi_size``/``overlap``/``blend`` the grid is identical and the result equals MONAI's up to
float rounding (tested). Differences from MONAI: windows reaching outside the image are padded one by one (MONAI pads a
full copy of the image); ``output_crop`` and ``"max"`` have no MONAI counterpart (MONAI rescales smaller outputs).

Networks with valid (unpadded) convolutions return outputs smaller than their input (e.g. 72^3 in, 32^3 out). With
``output_crop`` (voxels lost at each side, per axis, possibly per output) windows are placed so that the *output* tiles
cover the image, with ``overlap`` between output tiles; the input windows reach ``crop`` voxels beyond the image and the
missing voxels are padded, so border voxels get predictions from a full receptive field.

Memory stays near the size of the outputs: windows are batched, predictions are blended straight into one private
buffer per output (no stack of windows, no full-size padded copy of the image, no full-size weight/count map). With a
separable weight (``"constant"``, or a Gaussian whose floor is inactive) the normaliser is the outer product of 1-D
per-axis sums, folded into each window's weight; otherwise (MONAI's floored Gaussian) it is rebuilt slab by slab at the
end. The first window to reach a voxel writes it, later ones accumulate into it (no initialisation pass). On the CPU
the windows are first handed to the network in channels-last layout, which lets oneDNN use its fast convolution
kernels (2-3x faster for batch-normalised UNets); if the network does not keep that layout (instance normalisation
converts back) or cannot take it, the remaining windows are given in the usual contiguous layout. The result buffers
stay private until the call returns: a cancelled or failed run publishes nothing.

Shapes: a torch ``image`` is ``(B, C, *spatial)`` and each result ``(B, C_out, *spatial)``; a numpy ``image`` is
``(C, *spatial)`` and each result ``(C_out, *spatial)``. Spatial axes are in array order (for Slicer volumes: K, J, I);
``roi_size``, ``overlap``, ``sigma_scale`` and ``output_crop`` are given in that same order.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mednets.device import ReportCallback, is_out_of_memory_error, run_with_fallback
from mednets.progress import CancelCallback, ProgressCallback, check_cancel
from mednets.progress import report as report_progress

__all__ = [
    "BLEND_MODES",
    "PADDING_MODES",
    "sliding_window",
    "window_positions",
]

BLEND_MODES = ("gaussian", "constant", "max")
PADDING_MODES = ("constant", "replicate", "reflect", "circular")

# MONAI's floor of the Gaussian importance map (monai.data.utils.compute_importance_map).
_GAUSSIAN_FLOOR = 1e-3
# Voxels per slab when the normaliser of a non-separable weight is rebuilt at the end.
_NORMALISER_SLAB_VOXELS = 1 << 22

IntOrSequence = Union[int, Sequence[int]]
FloatOrSequence = Union[float, Sequence[float]]
Predictor = Callable[[torch.Tensor], Any]


# ----------------------------------------------------------------------------------------------------------- geometry

def _per_axis(value: Any, ndim: int, name: str) -> Tuple[Any, ...]:
    """Broadcast a scalar to ``ndim`` axes or check that a sequence has one entry per spatial axis."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (value,) * ndim
    values = tuple(value)
    if len(values) != ndim:
        raise ValueError(f"{name} must be one value or one per spatial axis ({ndim}), got {value!r}")
    return values


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _axis_tile_starts(size: int, tile: int, overlap: float) -> Tuple[int, ...]:
    """Starts of the tiles covering ``[0, size)`` along one axis (may be negative when ``tile > size``).

    Same placement as MONAI (``_get_scan_interval`` + ``dense_patch_slices``): step ``int(tile * (1 - overlap))``
    (at least 1), the last tile shifted back to end at ``size``; a tile at least as large as the axis is centred on it,
    the extra ``tile - size`` voxels split ``floor/ceil`` before/after like MONAI's padding.
    """
    if tile >= size:
        return (-((tile - size) // 2),)
    step = max(int(tile * (1 - overlap)), 1)
    count = 1 + math.ceil((size - tile) / step)
    return tuple(min(index * step, size - tile) for index in range(count))


def _resolve_roi(roi_size: Any, spatial_shape: Sequence[int]) -> Tuple[int, ...]:
    roi = _per_axis(roi_size, len(spatial_shape), "roi_size")
    resolved = []
    for value, size in zip(roi, spatial_shape):
        if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value <= 0):
            resolved.append(int(size))  # MONAI convention: None / non-positive means "the whole axis"
        else:
            resolved.append(_check_int(value, "roi_size entries", 1))
    return tuple(resolved)


def _resolve_overlap(overlap: Any, ndim: int) -> Tuple[float, ...]:
    values = _per_axis(overlap, ndim, "overlap")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not 0.0 <= float(value) < 1.0:
            raise ValueError(f"overlap must be in [0, 1) (a fraction of the window), got {overlap!r}")
    return tuple(float(v) for v in values)


def _resolve_crop(crop: Any, ndim: int, roi: Sequence[int], name: str) -> Tuple[int, ...]:
    values = tuple(_check_int(v, name, 0) for v in _per_axis(0 if crop is None else crop, ndim, name))
    for value, window in zip(values, roi):
        if 2 * value >= window:
            raise ValueError(f"{name} {values} leaves no output voxel in a window of {tuple(roi)} "
                             f"(each entry must be < half the window)")
    return values


def window_positions(spatial_shape: Sequence[int], roi_size: Any, overlap: Any = 0.25,
                     output_crop: Any = 0) -> List[Tuple[int, ...]]:
    """Start (first voxel, image coordinates) of every input window that :func:`sliding_window` will run.

    Args:
        spatial_shape: image size per spatial axis (array order).
        roi_size: input window size (int or one per axis; None / <= 0 means the whole axis).
        overlap: overlap of neighbouring (output) tiles as a fraction of the tile, in [0, 1).
        output_crop: voxels the predictor loses at each side of each axis (valid convolutions); the output tiles of
            size ``roi - 2 * crop`` are placed to cover the image and the input windows start ``crop`` voxels earlier.

    Returns:
        Window starts in C order (last axis fastest), like MONAI's ``dense_patch_slices``; starts are negative (and
        windows run past the end) where the window reaches outside the image.
    """
    shape = tuple(_check_int(s, "spatial_shape entries", 1) for s in spatial_shape)
    roi = _resolve_roi(roi_size, shape)
    crop = _resolve_crop(output_crop, len(shape), roi, "output_crop")
    grid = _input_grid(shape, roi, _resolve_overlap(overlap, len(shape)), crop)
    return list(itertools.product(*grid))


def _input_grid(shape: Sequence[int], roi: Sequence[int], overlap: Sequence[float],
                crop: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
    """Per axis, the starts of the input windows whose output tiles (``roi - 2*crop``) cover the image."""
    return tuple(tuple(start - c for start in _axis_tile_starts(n, r - 2 * c, o))
                 for n, r, o, c in zip(shape, roi, overlap, crop))


@dataclass(frozen=True)
class _AxisSpan:
    """Where one window's tile meets the image along one axis."""

    image_lo: int  # first image voxel covered
    image_hi: int  # one past the last image voxel covered
    tile_lo: int  # same range in tile coordinates
    tile_hi: int


def _axis_span(start: int, length: int, size: int) -> _AxisSpan:
    lo, hi = max(start, 0), min(start + length, size)
    return _AxisSpan(lo, hi, lo - start, hi - start)


# ---------------------------------------------------------------------------------------------------- window reading

def _source_indices(start: int, length: int, size: int, mode: str) -> np.ndarray:
    """Image indices that fill window positions ``start .. start+length-1`` under ``mode`` padding (numpy semantics:
    replicate = "edge", reflect = "reflect" without repeating the border voxel, circular = "wrap")."""
    index = np.arange(start, start + length)
    if mode == "replicate":
        return np.clip(index, 0, size - 1)
    if mode == "circular":
        return np.mod(index, size)
    if size == 1:  # reflect on a single voxel
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


class _WindowReader:
    """Copies windows of ``image`` (B, C, *spatial) into a batch buffer, padding where a window leaves the image."""

    def __init__(self, image: torch.Tensor, roi: Tuple[int, ...], dtype: torch.dtype, padding_mode: str,
                 padding_value: float, channels_last: bool) -> None:
        self.image = image
        self.roi = roi
        self.dtype = dtype
        self.padding_mode = padding_mode
        self.padding_value = float(padding_value)
        self.channels_last = channels_last
        self.spatial_shape = tuple(image.shape[2:])

    def new_batch(self, count: int, pin_memory: bool = False) -> torch.Tensor:
        """An uninitialised (count, C, *roi) buffer; channels-last strides (also for C == 1) when requested; in
        page-locked memory (faster copies to a CUDA device) when ``pin_memory``."""
        channels = self.image.shape[1]
        options: Dict[str, Any] = dict(dtype=self.dtype, device=self.image.device, pin_memory=pin_memory)
        if not self.channels_last:
            return torch.empty((count, channels, *self.roi), **options)
        ndim = len(self.roi)
        return torch.empty((count, *self.roi, channels), **options).permute(0, ndim + 1, *range(1, ndim + 1))

    def read(self, target: torch.Tensor, batch_index: int, start: Sequence[int]) -> None:
        """Fill ``target`` (C, *roi) with the window of image ``batch_index`` starting at ``start``."""
        spans = [_axis_span(s, r, n) for s, r, n in zip(start, self.roi, self.spatial_shape)]
        source = self.image[batch_index]
        inside = all(span.tile_lo == 0 and span.tile_hi == r for span, r in zip(spans, self.roi))
        if inside:
            target.copy_(source[(slice(None),) + tuple(slice(sp.image_lo, sp.image_hi) for sp in spans)])
        elif self.padding_mode == "constant":
            target.fill_(self.padding_value)
            if all(sp.image_hi > sp.image_lo for sp in spans):
                target[(slice(None),) + tuple(slice(sp.tile_lo, sp.tile_hi) for sp in spans)].copy_(
                    source[(slice(None),) + tuple(slice(sp.image_lo, sp.image_hi) for sp in spans)])
        else:
            indices = [_source_indices(s, r, n, self.padding_mode)
                       for s, r, n in zip(start, self.roi, self.spatial_shape)]
            grids = tuple(torch.as_tensor(g, device=source.device) for g in np.ix_(*indices))
            target.copy_(source[(slice(None),) + grids])


# ------------------------------------------------------------------------------------------------------------ weights

def _gaussian_1d(length: int, sigma_scale: float) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)), d the distance to the tile centre, sigma = sigma_scale * length (MONAI's map)."""
    sigma = sigma_scale * length
    distance = np.arange(length, dtype=np.float64) - (length - 1) / 2.0
    return np.exp(-(distance ** 2) / (2.0 * sigma ** 2))


def _outer(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Outer product of 1-D tensors: result[i, j, ...] = v0[i] * v1[j] * ..."""
    ndim = len(vectors)
    result = vectors[0].reshape((-1,) + (1,) * (ndim - 1))
    for axis, vector in enumerate(vectors[1:], start=1):
        result = result * vector.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))
    return result


class _Blender:
    """Blends the window predictions of one output into a private full-size buffer.

    ``tile_starts[a]`` are the (increasing) tile starts, image coordinates, along axis ``a``; a window is addressed by
    its grid index (one tile index per axis) and windows must arrive in C order of their grid index. Then the first
    window covering a voxel is the one whose index along every axis is the first tile covering that coordinate, so the
    voxels a window covers first form one box, the product of the per-axis ranges ``[end of previous tile, end of
    this tile)``. Those are *written* (no initialisation pass, no read of the buffer); the rest of the window, at most
    one box per axis, is *accumulated*. Three blends:

    * ``max``: write, then element-wise maximum;
    * separable weight (constant, or Gaussian whose floor is inactive): the normaliser is prod_a S_a(x_a) with
      S_a(x) = sum_j m_a(x - start_aj); every window is blended with the pre-normalised weight prod_a m_a / S_a, so no
      final pass is needed;
    * floored Gaussian (MONAI's map, not separable): blend m * p, then divide slab by slab by the normaliser
      sum_w m(x - s_w), rebuilt per slab from the window grid (never as a full-size map).
    """

    def __init__(self, blend: str, spatial_shape: Tuple[int, ...], tile: Tuple[int, ...],
                 tile_starts: Tuple[Tuple[int, ...], ...], sigma_scale: Tuple[float, ...], batch: int,
                 channels: int, dtype: torch.dtype, device: torch.device, memory_format: torch.memory_format) -> None:
        self.blend = blend
        self.spatial_shape = spatial_shape
        self.tile = tile
        self.spans = tuple(tuple(_axis_span(s, t, n) for s in starts)
                           for starts, t, n in zip(tile_starts, tile, spatial_shape))
        # Per axis and tile: first image coordinate that no earlier tile covers.
        self.fresh_from = tuple(tuple(span.image_lo if j == 0 else max(span.image_lo, spans[j - 1].image_hi)
                                      for j, span in enumerate(spans)) for spans in self.spans)
        self.dtype = dtype
        self.device = device
        with torch.inference_mode(False):  # a normal tensor: the caller may modify the result in place later
            self.buffer = torch.empty((batch, channels, *spatial_shape), dtype=dtype, device=device,
                                      memory_format=memory_format)
        self.separable_pieces: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
        self.dense_weight: Optional[torch.Tensor] = None
        if blend == "constant":
            self._prepare_separable([np.ones(t) for t in tile])
        elif blend == "gaussian":
            profiles = [_gaussian_1d(t, s) for t, s in zip(tile, sigma_scale)]
            if math.prod(float(p.min()) for p in profiles) >= _GAUSSIAN_FLOOR:
                self._prepare_separable(profiles)  # the floor clips nothing: the map is an exact outer product
            else:
                weight = _outer([torch.as_tensor(p, dtype=torch.float64) for p in profiles])
                floor = max(float(weight.min()), _GAUSSIAN_FLOOR)
                self.dense_weight = weight.clamp_(min=floor).to(dtype=dtype, device=device)

    def _prepare_separable(self, profiles: Sequence[np.ndarray]) -> None:
        pieces = []
        for profile, spans, size in zip(profiles, self.spans, self.spatial_shape):
            total = np.zeros(size)
            for span in spans:
                total[span.image_lo:span.image_hi] += profile[span.tile_lo:span.tile_hi]
            pieces.append(tuple(
                torch.as_tensor(profile[span.tile_lo:span.tile_hi] / total[span.image_lo:span.image_hi],
                                dtype=self.dtype, device=self.device)
                for span in spans))
        self.separable_pieces = tuple(pieces)

    def _boxes(self, grid_index: Sequence[int]) -> Iterator[Tuple[bool, Tuple[slice, ...], Tuple[slice, ...]]]:
        """(first visit?, image slices, window slices relative to the clipped tile) of the window's disjoint boxes."""
        spans = [self.spans[axis][j] for axis, j in enumerate(grid_index)]
        fresh = [self.fresh_from[axis][j] for axis, j in enumerate(grid_index)]
        yield True, tuple(slice(f, s.image_hi) for f, s in zip(fresh, spans)), \
            tuple(slice(f - s.image_lo, s.image_hi - s.image_lo) for f, s in zip(fresh, spans))
        for axis in range(len(spans)):  # visited before along `axis`, first visit along the axes before it
            if fresh[axis] == spans[axis].image_lo:
                continue
            image_box, window_box = [], []
            for other, (f, s) in enumerate(zip(fresh, spans)):
                lo, hi = (f, s.image_hi) if other < axis else (s.image_lo, f) if other == axis else \
                    (s.image_lo, s.image_hi)
                image_box.append(slice(lo, hi))
                window_box.append(slice(lo - s.image_lo, hi - s.image_lo))
            yield False, tuple(image_box), tuple(window_box)

    def add(self, batch_index: int, grid_index: Sequence[int], prediction: torch.Tensor) -> None:
        """Blend ``prediction`` (C, *tile) of window ``grid_index`` of image ``batch_index``."""
        spans = [self.spans[axis][j] for axis, j in enumerate(grid_index)]
        if any(span.image_hi <= span.image_lo for span in spans):
            return  # tile entirely outside the image (cannot happen for grids made by _input_grid)
        clipped = tuple(slice(s.tile_lo, s.tile_hi) for s in spans)
        values = prediction[(slice(None),) + clipped]
        if self.blend == "max":
            weight = None
        elif self.separable_pieces is not None:
            weight = _outer([self.separable_pieces[axis][j] for axis, j in enumerate(grid_index)])
        else:
            weight = self.dense_weight[clipped]
        for first_visit, image_box, window_box in self._boxes(grid_index):
            target = self.buffer[(batch_index, slice(None)) + image_box]
            part = values[(slice(None),) + window_box]
            if weight is None:
                if first_visit:
                    target.copy_(part)
                else:
                    torch.maximum(target, part, out=target)
            elif first_visit:
                torch.mul(part, weight[window_box], out=target)
            else:
                target.addcmul_(part, weight[window_box])

    def finish(self) -> torch.Tensor:
        if self.dense_weight is not None:
            self._normalise_by_slabs()
        return self.buffer

    def _normalise_by_slabs(self) -> None:
        rest = self.spatial_shape[1:]
        thickness = max(1, min(self.spatial_shape[0], _NORMALISER_SLAB_VOXELS // max(1, math.prod(rest))))
        for first in range(0, self.spatial_shape[0], thickness):
            last = min(first + thickness, self.spatial_shape[0])
            normaliser = torch.zeros((last - first, *rest), dtype=self.dtype, device=self.device)
            for span0 in self.spans[0]:
                lo, hi = max(span0.image_lo, first), min(span0.image_hi, last)
                if hi <= lo:
                    continue
                rows = slice(lo - span0.image_lo + span0.tile_lo, hi - span0.image_lo + span0.tile_lo)
                for others in itertools.product(*self.spans[1:]):
                    normaliser[(slice(lo - first, hi - first),)
                               + tuple(slice(s.image_lo, s.image_hi) for s in others)] += \
                        self.dense_weight[(rows,) + tuple(slice(s.tile_lo, s.tile_hi) for s in others)]
            self.buffer[:, :, first:last].div_(normaliser)


# ---------------------------------------------------------------------------------------------- predictor outputs

def _flatten_outputs(output: Any) -> Tuple[str, Optional[List[Any]], List[torch.Tensor]]:
    """(kind, keys, tensors) of a predictor result: a tensor, a tuple/list of tensors or a mapping of tensors."""
    if isinstance(output, torch.Tensor):
        return "tensor", None, [output]
    if isinstance(output, Mapping):
        keys = list(output.keys())
        tensors = [output[k] for k in keys]
        kind = "dict"
    elif isinstance(output, (tuple, list)):
        keys, tensors, kind = None, list(output), type(output).__name__
    else:
        raise TypeError(f"the predictor must return a tensor, a tuple/list of tensors or a dict of tensors, "
                        f"got {type(output).__name__}")
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("the predictor must return tensors (a tensor, a tuple/list or a dict of tensors)")
    return kind, keys, tensors


def _pack_outputs(kind: str, keys: Optional[List[Any]], values: List[Any]) -> Any:
    if kind == "tensor":
        return values[0]
    if kind == "dict":
        return dict(zip(keys, values))
    return tuple(values) if kind == "tuple" else list(values)


def _crop_of_output(output_crop: Any, kind: str, keys: Optional[List[Any]], position: int, ndim: int,
                    roi: Tuple[int, ...]) -> Tuple[int, ...]:
    if not isinstance(output_crop, Mapping):
        return _resolve_crop(output_crop, ndim, roi, "output_crop")
    key = keys[position] if kind == "dict" else position
    return _resolve_crop(output_crop.get(key, 0), ndim, roi, f"output_crop[{key!r}]")


def _max_crop(output_crop: Any, ndim: int, roi: Tuple[int, ...]) -> Tuple[int, ...]:
    """The largest crop per axis over all outputs: it decides the window grid."""
    if not isinstance(output_crop, Mapping):
        return _resolve_crop(output_crop, ndim, roi, "output_crop")
    crops = [_resolve_crop(value, ndim, roi, f"output_crop[{key!r}]") for key, value in output_crop.items()]
    return tuple(max([0] + [c[axis] for c in crops]) for axis in range(ndim))


def _is_channels_last(tensor: torch.Tensor) -> bool:
    """True for a (N, C, *spatial) tensor laid out channels-last, also with C == 1 (where both layouts pass
    ``is_contiguous``; the channel stride of 1 tells them apart)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    memory_format = formats.get(tensor.dim())
    return memory_format is not None and tensor.stride(1) == 1 and tensor.is_contiguous(memory_format=memory_format)


def _layout_of(prediction: torch.Tensor) -> torch.memory_format:
    """Channels-last when the network produced it with several channels (blending then reads and writes memory in the
    same order); contiguous otherwise."""
    if prediction.shape[1] > 1 and _is_channels_last(prediction):
        return torch.channels_last if prediction.dim() == 4 else torch.channels_last_3d
    return torch.contiguous_format


# ----------------------------------------------------------------------------------------------------------- running

def _as_batched_tensor(image: Any) -> Tuple[torch.Tensor, bool]:
    """(B, C, *spatial) tensor view of ``image`` and whether it came from numpy ((C, *spatial), no copy if possible)."""
    if isinstance(image, torch.Tensor):
        return image, False
    if isinstance(image, np.ndarray):
        array = image
        if any(stride < 0 for stride in array.strides):
            array = np.ascontiguousarray(array)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only arrays: never written here
            try:
                tensor = torch.from_numpy(array)
            except TypeError:  # a dtype torch lacks (e.g. uint16 before torch 2.3)
                tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
        return tensor.unsqueeze(0), True
    raise TypeError(f"image must be a torch.Tensor (B, C, *spatial) or a numpy array (C, *spatial), "
                    f"got {type(image).__name__}")


def _module_device(predictor: Any) -> Optional[torch.device]:
    if isinstance(predictor, torch.nn.Module):
        for tensor in itertools.chain(predictor.parameters(), predictor.buffers()):
            return tensor.device
    return None


def _autocast(device: torch.device, enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    try:
        return torch.autocast(device_type=device.type, dtype=dtype)
    except RuntimeError as error:
        warnings.warn(f"mixed precision is not available on {device} ({error}); running in full precision",
                      RuntimeWarning, stacklevel=3)
        return contextlib.nullcontext()


@dataclass(frozen=True)
class _Job:
    """Everything about one sliding-window run except the device and batch size (those may change on fallback)."""

    image: torch.Tensor
    predictor: Predictor
    roi: Tuple[int, ...]
    grid: Tuple[Tuple[int, ...], ...]
    output_crop: Any
    blend: str
    sigma_scale: Tuple[float, ...]
    amp: Optional[bool]
    channels_last: Optional[bool]
    padding_mode: str
    padding_value: float
    output_device: torch.device
    requested_device: torch.device
    progress: Optional[ProgressCallback]
    cancel: Optional[CancelCallback]


def _windows(job: _Job) -> Iterator[Tuple[int, Tuple[int, ...], Tuple[int, ...]]]:
    """(image index, grid index, input start) of every window, image by image, C order within an image."""
    for batch_index in range(job.image.shape[0]):
        for grid_index in itertools.product(*(range(len(starts)) for starts in job.grid)):
            yield batch_index, grid_index, tuple(starts[j] for starts, j in zip(job.grid, grid_index))


def _predict(job: _Job, reader: _WindowReader, staging: torch.Tensor,
             chunk: Sequence[Tuple[int, Tuple[int, ...], Tuple[int, ...]]], device: torch.device, amp: bool) -> Any:
    """Read the windows of ``chunk`` into ``staging`` and run the predictor on them."""
    batch = staging[:len(chunk)]
    for slot, (batch_index, _, start) in enumerate(chunk):
        reader.read(batch[slot], batch_index, start)
    with _autocast(device, amp):
        return job.predictor(batch.to(device))


def _run(job: _Job, device: torch.device, batch_size: int) -> Tuple[str, Optional[List[Any]], List[torch.Tensor]]:
    """One complete attempt on ``device``; returns the blended outputs (kind, keys, tensors)."""
    image, output_device = job.image, job.output_device
    if device.type == "cpu" and job.requested_device.type != "cpu":  # fallback to the CPU: keep everything there
        image, output_device = image.cpu(), torch.device("cpu")
    ndim = len(job.roi)
    use_amp = (device.type == "cuda") if job.amp is None else bool(job.amp)
    # Auto: try channels-last on the CPU (oneDNN's fast path); kept only if the network keeps that layout.
    channels_last = (device.type == "cpu") if job.channels_last is None else bool(job.channels_last)
    reader = _WindowReader(image, job.roi, image.dtype if image.dtype.is_floating_point else torch.float32,
                           job.padding_mode, job.padding_value, channels_last and ndim in (2, 3))
    windows = list(_windows(job))
    total = len(windows)
    blenders: List[_Blender] = []
    kind, keys = "tensor", None
    pin_memory = device.type == "cuda" and image.device.type == "cpu"
    staging = reader.new_batch(min(batch_size, total), pin_memory)
    trial = reader.channels_last and job.channels_last is None  # auto channels-last, not yet confirmed
    with torch.inference_mode():
        for first in range(0, total, batch_size):
            check_cancel(job.cancel)
            chunk = windows[first:first + batch_size]
            try:
                result = _predict(job, reader, staging, chunk, device, use_amp)
            except RuntimeError as error:
                if not trial or is_out_of_memory_error(error):
                    raise
                result = None  # e.g. a .view() in the predictor needs contiguous input: fall through to it
            if trial:
                trial = False
                if result is None or not any(_is_channels_last(out) for out in _flatten_outputs(result)[2]):
                    # The network does not keep channels-last (e.g. instance normalisation converts back): the
                    # layout only adds conversions, so feed it contiguous windows from now on.
                    reader.channels_last = False
                    staging = reader.new_batch(min(batch_size, total), pin_memory)
                    if result is None:
                        result = _predict(job, reader, staging, chunk, device, use_amp)
            kind, keys, outputs = _flatten_outputs(result)
            if not blenders:
                blenders = _make_blenders(job, kind, keys, outputs, image, output_device)
            elif len(outputs) != len(blenders):
                raise ValueError(f"the predictor returned {len(outputs)} outputs for a batch after returning "
                                 f"{len(blenders)} before")
            for position, (output, blender) in enumerate(zip(outputs, blenders)):
                _check_prediction(output, len(chunk), blender, position, kind, keys)
                output = output.to(device=output_device, dtype=blender.dtype)
                for slot, (batch_index, grid_index, _) in enumerate(chunk):
                    blender.add(batch_index, grid_index, output[slot])
            del result, outputs
            done = first + len(chunk)
            report_progress(job.progress, done / total, f"Sliding window: {done}/{total} windows")
        check_cancel(job.cancel)
        return kind, keys, [blender.finish() for blender in blenders]


def _make_blenders(job: _Job, kind: str, keys: Optional[List[Any]], outputs: List[torch.Tensor],
                   image: torch.Tensor, output_device: torch.device) -> List[_Blender]:
    ndim = len(job.roi)
    if isinstance(job.output_crop, Mapping):
        known = set(keys) if kind == "dict" else set(range(len(outputs)))
        unknown = [k for k in job.output_crop if k not in known]
        if unknown:
            raise ValueError(f"output_crop names outputs the predictor does not return: {unknown!r} "
                             f"(outputs: {sorted(known, key=repr)!r})")
    blenders = []
    for position, output in enumerate(outputs):
        if output.dim() != ndim + 2:
            raise ValueError(f"predictor output {position} has shape {tuple(output.shape)}; expected "
                             f"(windows, channels, *spatial) with {ndim} spatial axes")
        crop = _crop_of_output(job.output_crop, kind, keys, position, ndim, job.roi)
        tile = tuple(r - 2 * c for r, c in zip(job.roi, crop))
        tile_starts = tuple(tuple(s + c for s in starts) for starts, c in zip(job.grid, crop))
        dtype = torch.promote_types(output.dtype, torch.float32) if output.dtype.is_floating_point else torch.float32
        blenders.append(_Blender(job.blend, tuple(image.shape[2:]), tile, tile_starts, job.sigma_scale,
                                 image.shape[0], output.shape[1], dtype, output_device, _layout_of(output)))
    return blenders


def _check_prediction(output: torch.Tensor, count: int, blender: _Blender, position: int, kind: str,
                      keys: Optional[List[Any]]) -> None:
    expected = (count, blender.buffer.shape[1], *blender.tile)
    if tuple(output.shape) != expected:
        name = repr(keys[position]) if kind == "dict" else str(position)
        hint = ""
        if tuple(output.shape[2:]) != blender.tile:
            hint = (" (a network with valid convolutions returns less than its input: give output_crop, the voxels "
                    "lost at each side per axis)")
        raise ValueError(f"predictor output {name} has shape {tuple(output.shape)}, expected {expected}{hint}")


def sliding_window(
    image: Union[torch.Tensor, np.ndarray],
    predictor: Predictor,
    roi_size: Any,
    overlap: FloatOrSequence = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    device: Union[str, torch.device, None] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelCallback] = None,
    output_crop: Union[None, IntOrSequence, Mapping[Any, IntOrSequence]] = None,
    sigma_scale: FloatOrSequence = 0.125,
    amp: Optional[bool] = None,
    padding_mode: str = "constant",
    padding_value: float = 0.0,
    output_device: Union[str, torch.device, None] = None,
    channels_last: Optional[bool] = None,
    fallback: bool = True,
    report: Optional[ReportCallback] = None,
) -> Any:
    """Run ``predictor`` over ``image`` window by window and blend the window predictions into full-size results.

    Args:
        image: torch tensor (B, C, *spatial) or numpy array (C, *spatial), 2 or 3 spatial axes. Integer images are
            given to the predictor as float32, floating images keep their dtype.
        predictor: ``predictor(batch) -> tensor | tuple | list | dict`` of tensors; ``batch`` is (n, C, *roi_size)
            with n <= batch_size; each output is (n, C_out, *(roi_size - 2 * crop)).
        roi_size: input window size, int or one per spatial axis; None or <= 0 means the whole axis. A window larger
            than the image is centred on it and padded; results are cropped back to the image.
        overlap: overlap of neighbouring (output) tiles, fraction in [0, 1), scalar or per axis.
        blend: ``"gaussian"`` (weighted average, MONAI's map), ``"constant"`` (plain average) or ``"max"``.
        batch_size: windows per predictor call.
        device: where the predictor runs; None: the device of the predictor's parameters when it is an
            ``nn.Module`` with parameters, else the image's device (CPU for numpy).
        progress: ``progress(fraction, message)``, called after each batch.
        cancel: ``cancel() -> bool``, polled between batches; True raises
            :class:`mednets.progress.OperationCancelled` and nothing is returned.
        output_crop: voxels the predictor loses at each side of each axis (valid convolutions): int, one per axis,
            or a mapping {output index or dict key: crop} when outputs lose different amounts (missing outputs: 0).
            Output tiles of size ``roi - 2 * crop`` (largest crop) are placed to cover the image.
        sigma_scale: Gaussian sigma as a fraction of the tile size, scalar or per axis.
        amp: mixed precision (float16 on CUDA/MPS, bfloat16 on CPU); None: on for CUDA only. Blending is always
            done in at least float32.
        padding_mode: ``"constant"``, ``"replicate"``, ``"reflect"`` or ``"circular"``: fills window parts outside
            the image (numpy's "constant", "edge", "reflect", "wrap").
        padding_value: fill value of ``"constant"`` padding.
        output_device: where results are accumulated and returned; None: the image's device (CPU for numpy).
        channels_last: give windows to the predictor in channels-last layout; None: on for the CPU (fast oneDNN
            convolutions), off elsewhere. Results follow the predictor's output layout (a channels-last network
            yields channels-last strided results; values and shapes are the same).
        fallback: when the device runs out of memory, retry with half the batch size down to 1, then on the CPU
            (for an ``nn.Module`` predictor, which is moved there for the run and moved back after), see
            :func:`mednets.device.run_with_fallback`. A run that fell back to the CPU returns its results on the CPU.
        report: receives a plain-language message for each fallback (None: a ``DeviceFallbackWarning``).

    Returns:
        The predictor's output structure (tensor, tuple, list or dict) with every tensor replaced by the full-size
        result: torch (B, C_out, *spatial) on ``output_device`` for torch input, numpy (C_out, *spatial) for numpy.

    Raises:
        ValueError / TypeError: bad arguments or predictor outputs of an unexpected shape.
        mednets.progress.OperationCancelled: ``cancel()`` returned True.

    Note:
        Same window grid as MONAI's ``sliding_window_inference``, and with ``output_crop=0`` the same result for
        "constant" and "gaussian" blending (up to float rounding). MONAI has no ``output_crop`` (it rescales smaller
        outputs instead) and no "max" blending.
    """
    tensor, from_numpy = _as_batched_tensor(image)
    if tensor.dim() < 3:
        raise ValueError(f"image must have channel and spatial axes, got shape {tuple(image.shape)}")
    spatial_shape = tuple(tensor.shape[2:])
    ndim = len(spatial_shape)
    if isinstance(roi_size, Sequence) and len(roi_size) != ndim:
        layout = "(C, *spatial)" if from_numpy else "(B, C, *spatial)"
        raise ValueError(f"roi_size {tuple(roi_size)} has {len(roi_size)} axes but the image {layout} of shape "
                         f"{tuple(image.shape)} has {ndim} spatial axes")
    if not callable(predictor):
        raise TypeError(f"predictor must be callable, got {type(predictor).__name__}")
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    batch_size = _check_int(batch_size, "batch_size", 1)
    if min(spatial_shape) < 1 or tensor.shape[0] < 1 or tensor.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    roi = _resolve_roi(roi_size, spatial_shape)
    overlaps = _resolve_overlap(overlap, ndim)
    sigma = tuple(float(s) for s in _per_axis(sigma_scale, ndim, "sigma_scale"))
    if any(not s > 0 for s in sigma):
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale!r}")
    grid = _input_grid(spatial_shape, roi, overlaps, _max_crop(output_crop, ndim, roi))

    module_device = _module_device(predictor)
    if device is not None:
        requested = torch.device(device)
    else:
        requested = module_device if module_device is not None else tensor.device
    job = _Job(image=tensor, predictor=predictor, roi=roi, grid=grid, output_crop=output_crop, blend=blend,
               sigma_scale=sigma, amp=amp, channels_last=channels_last, padding_mode=padding_mode,
               padding_value=float(padding_value),
               output_device=torch.device(output_device) if output_device is not None else tensor.device,
               requested_device=requested, progress=progress, cancel=cancel)

    movable = isinstance(predictor, torch.nn.Module)

    def attempt(attempt_device: torch.device, attempt_batch: int) -> Tuple[str, Optional[List[Any]], List[Any]]:
        if movable and attempt_device != requested:
            predictor.to(attempt_device)  # type: ignore[union-attr]  # CPU fallback of an nn.Module
        return _run(job, attempt_device, attempt_batch)

    try:
        if fallback:
            kind, keys, results = run_with_fallback(attempt, requested, batch_size, report=report, allow_cpu=movable)
        else:
            kind, keys, results = attempt(requested, batch_size)
    finally:
        if module_device is not None and _module_device(predictor) != module_device:
            predictor.to(module_device)  # type: ignore[union-attr]
    if from_numpy:
        results = [r[0].cpu().numpy() for r in results]
    return _pack_outputs(kind, keys, results)
