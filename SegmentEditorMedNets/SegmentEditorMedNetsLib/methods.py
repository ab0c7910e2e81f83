"""The networks the MedNets Segment Editor effect can run, one adapter per module (no Slicer, no Qt, no GUI: the
effect's child process ``python -m SegmentEditorMedNetsLib segment`` runs them).

Each adapter loads its module's selected model once per device (through the module's own ``<Module>Lib`` model
loader: verified weights, the configuration stored with them) and turns an image :class:`mednets.image.Volume` into
a boolean mask of one structure on that volume's grid. The effect crops the source volume to the user's box or point
neighbourhood first; ``whole_image`` adapters need the whole image instead (GLIA-Net's global positioning branch
looks at the whole head, so it runs on the whole CTA and the effect keeps the part inside the region).

AxillaryLNDetect runs its lymph-node (stage 2) network directly on the region: the user's box or click takes the
place of the stage-1 VOI. Not offered: AdaptiveRecontour (it needs a planning/daily pair, not one image).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mednets.image import Volume

__all__ = ["RegionMethod", "METHODS", "available_methods"]

Progress = Optional[Callable[[float, str], None]]


@dataclass
class RegionMethod:
    """One module's network, as the effect offers it.

    Attributes:
        module: the module name (its ``<module>Lib`` package must be importable: the module is installed).
        title: what the effect's method selector shows.
        spatial_dims: 3 for volumes, 2 for images (a single-slice RGB volume).
        whole_image: the network must see the whole image (the effect then keeps the region's part).
    """

    module: str
    title: str
    spatial_dims: int
    whole_image: bool
    _structures: Callable[["RegionMethod", str], List[str]]
    _segment: Callable[["RegionMethod", Volume, str, str, Progress], np.ndarray]
    _context: Callable[["RegionMethod", str, Tuple[float, ...]], Tuple[int, int, int]] = \
        lambda method, device, spacing: (0, 0, 0)
    _loaded: Dict[str, Tuple[Any, Any]] = field(default_factory=dict, repr=False)
    #: the module's model to load (a name or weights file, as its loader takes it); None: its default model.
    model: Optional[str] = None

    def is_available(self) -> bool:
        try:
            importlib.import_module(f"{self.module}Lib")
        except ImportError:
            return False
        return True

    def load(self, device: str) -> Tuple[Any, Any]:
        """``(LoadedModel, settings)`` of the module's default model on ``device``, loaded once."""
        if device not in self._loaded:
            loader = importlib.import_module(f"{self.module}Lib.models")
            self._loaded[device] = _LOADERS[self.module](loader, self.model, device)
        return self._loaded[device]

    def structures(self, device: str = "cpu") -> List[str]:
        """The structures the network segments (e.g. the organs of the loaded OrganCombo model)."""
        return self._structures(self, device)

    def context_voxels(self, device: str = "cpu", spacing: Tuple[float, ...] = (1.0, 1.0, 1.0)
                       ) -> Tuple[int, int, int]:
        """Voxels of image (K, J, I; ``spacing`` in mm) around the region that the network needs to see to judge the
        region's voxels (half its inference window: a patch network cut off at the region's edge would see padding
        instead of anatomy)."""
        return self._context(self, device, tuple(float(s) for s in spacing))

    def segment(self, image: Volume, structure: str, device: str = "auto", progress: Progress = None) -> np.ndarray:
        """Boolean mask of ``structure`` on ``image``'s grid."""
        names = self.structures(device)
        if structure not in names:
            raise ValueError(f"{self.module} does not segment '{structure}' (it segments: {', '.join(names)})")
        mask = self._segment(self, image, structure, device, progress)
        return np.asarray(mask, dtype=bool).reshape(image.shape)


_LOADERS = {
    "OrganCombo": lambda models, model, device: models.load_organcombo_model(model, device=device),
    "AneurysmSeg": lambda models, model, device: models.load_aneurysmseg_model(model, device=device),
    "NucleiMaskylo": lambda models, model, device: models.load_nuclei_model(model, device=device),
    "AxillaryLNDetect": lambda models, model, device: _detector_and_config(models.load_detector(model, device=device)),
}


def _detector_and_config(detector: Any) -> Tuple[Any, Any]:
    return detector, detector.config


def _organs(method: RegionMethod, device: str) -> List[str]:
    _loaded, config = method.load(device)
    return list(config.class_names)


def _organ_context(method: RegionMethod, device: str, spacing: Tuple[float, ...]) -> Tuple[int, int, int]:
    _loaded, config = method.load(device)
    window = tuple(config.window_size or config.patch_size or (0, 0, 0))[-3:]
    return tuple(int(size) // 2 for size in (1,) * (3 - len(window)) + window)


def _segment_organ(method: RegionMethod, image: Volume, structure: str, device: str, progress: Progress) -> np.ndarray:
    from OrganComboLib.pipeline import segment_volume

    loaded, config = method.load(device)
    result = segment_volume(image, loaded.network, config, device=loaded.device, progress=progress)
    return result.labels == config.class_names.index(structure) + 1


def _segment_aneurysm(method: RegionMethod, image: Volume, structure: str, device: str, progress: Progress
                      ) -> np.ndarray:
    from AneurysmSegLib.pipeline import segment_volume

    loaded, config = method.load(device)
    return segment_volume(image, loaded.network, config, device=loaded.device, progress=progress).labels > 0


def _segment_nuclei(method: RegionMethod, image: Volume, structure: str, device: str, progress: Progress
                    ) -> np.ndarray:
    from NucleiMaskyloLib.pipeline import NucleiPipeline, PipelineSettings, labels_and_table

    loaded, stored = method.load(device)
    fields = set(PipelineSettings.__dataclass_fields__)
    settings = PipelineSettings(**{key: value for key, value in stored.items() if key in fields})
    if image.shape[0] != 1 or image.num_channels not in (3, 4):
        raise ValueError("NucleiMaskylo segments RGB H&E images (one slice, 3 colour channels)")
    rgb = np.asarray(image.array[0][..., :3])
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    instances = NucleiPipeline(loaded.network, settings, device=loaded.device).predict(rgb, progress=progress)
    labels, _table = labels_and_table(instances)
    return labels[np.newaxis] > 0


def _lymph_node_context(method: RegionMethod, device: str, spacing: Tuple[float, ...]) -> Tuple[int, int, int]:
    _detector, config = method.load(device)
    half_window_mm = config.input_size / 2.0 * config.stage2_spacing  # the LN network's window at its spacing
    return tuple(int(np.ceil(half_window_mm / size)) for size in spacing)


def _segment_lymph_node(method: RegionMethod, image: Volume, structure: str, device: str, progress: Progress
                        ) -> np.ndarray:
    from AxillaryLNDetectLib.pipeline import single_stage_probability
    from mednets.resampling import resample_to_reference

    detector, config = method.load(device)
    fine, probability = single_stage_probability(image, detector.ln.network, config, device=detector.ln.device,
                                                 progress=progress)
    found = Volume((probability >= config.ln_threshold).astype(np.uint8), ijk_to_ras=fine.ijk_to_ras)
    return resample_to_reference(found, image, interpolator="nearest").array > 0


METHODS: Tuple[RegionMethod, ...] = (
    RegionMethod("OrganCombo", "OrganCombo: organs (Combo loss network)", 3, False, _organs, _segment_organ,
                 _organ_context),
    RegionMethod("AneurysmSeg", "AneurysmSeg: aneurysms (GLIA-Net, CTA)", 3, True,
                 lambda method, device: ["aneurysm"], _segment_aneurysm),
    RegionMethod("NucleiMaskylo", "NucleiMaskylo: nuclei (Mask R-CNN, H&E)", 2, False,
                 lambda method, device: ["nucleus"], _segment_nuclei, lambda method, device, spacing: (0, 64, 64)),
    RegionMethod("AxillaryLNDetect", "AxillaryLNDetect: lymph nodes (stage-2 3D U-Net, CT)", 3, False,
                 lambda method, device: ["lymph node"], _segment_lymph_node, _lymph_node_context),
)


def available_methods() -> List[RegionMethod]:
    """The methods whose module is installed (its ``<Module>Lib`` imports)."""
    return [method for method in METHODS if method.is_available()]
