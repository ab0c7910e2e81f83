"""Segment classes with standard names, colours and DICOM/SNOMED CT terminology, as 3D Slicer stores them.

A model's output classes are described once, as :class:`SegmentClass` entries (name, colour, coded terminology); the
modules turn them into segments with :func:`segment_specs` and :func:`mednets.mrml.new_segmentation_node`, so every
segment carries its terminology tag (Slicer's Segment Editor shows the standard name and colour and DICOM SEG export
writes the codes), never "Segment_1".

Terminology string: the serialisation used by Slicer's ``vtkSlicerTerminologyEntry`` in the segment tag
``TerminologyEntry`` (7 fields separated by ``~``; each code as ``scheme^value^meaning``)::

    <terminology context>~<category>~<type>~<type modifier>~<anatomic context>~<anatomic region>~<region modifier>

Codes are SNOMED CT (scheme designator ``SCT``) as listed in DICOM PS3.16 (CID 7150 segmentation property categories,
CID 7151/7154 segmentation property types, CID 244 laterality). Colours follow 3D Slicer's generic anatomy colour table
where it has the structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["Code", "SegmentClass", "ANATOMICAL_STRUCTURE", "TISSUE", "MORPHOLOGICALLY_ALTERED_STRUCTURE",
           "LEFT", "RIGHT", "STANDARD_CLASSES", "standard_class", "segment_specs"]

TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    """A coded concept: coding scheme designator, code value and code meaning (DICOM PS3.3 code sequence macro)."""

    scheme: str
    value: str
    meaning: str

    def serialize(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
TISSUE = Code("SCT", "85756007", "Tissue")
MORPHOLOGICALLY_ALTERED_STRUCTURE = Code("SCT", "49755003", "Morphologically Altered Structure")
LEFT = Code("SCT", "7771000", "Left")
RIGHT = Code("SCT", "24028007", "Right")
_EMPTY = "^^"


@dataclass(frozen=True)
class SegmentClass:
    """One output class of a model: its segment name, colour and terminology.

    Attributes:
        name: the segment name shown to the user (e.g. ``"left kidney"``).
        color: RGB in [0, 1].
        category: terminology category (e.g. :data:`ANATOMICAL_STRUCTURE`).
        type: terminology type (e.g. ``Code("SCT", "64033007", "Kidney")``).
        modifier: optional type modifier (laterality: :data:`LEFT`, :data:`RIGHT`).
    """

    name: str
    color: Tuple[float, float, float]
    category: Code
    type: Code
    modifier: Optional[Code] = None

    def terminology(self) -> str:
        """The terminology string of Slicer's ``TerminologyEntry`` segment tag."""
        modifier = self.modifier.serialize() if self.modifier is not None else _EMPTY
        return "~".join([TERMINOLOGY_CONTEXT, self.category.serialize(), self.type.serialize(), modifier,
                         ANATOMIC_CONTEXT, _EMPTY, _EMPTY])

    @classmethod
    def from_terminology(cls, name: str, color: Sequence[float], terminology: str) -> "SegmentClass":
        """Rebuild a class from its name, colour and terminology string (e.g. stored in a checkpoint's metadata).

        Raises ``ValueError`` for a string that is not in Slicer's 7-field serialisation.
        """
        fields = str(terminology).split("~")
        if len(fields) != 7:
            raise ValueError(f"a terminology string has 7 '~'-separated fields, got {len(fields)}: {terminology!r}")

        def code(text: str) -> Optional[Code]:
            parts = text.split("^")
            if len(parts) != 3:
                raise ValueError(f"a code is 'scheme^value^meaning', got {text!r}")
            return Code(*parts) if any(parts) else None

        category, type_, modifier = code(fields[1]), code(fields[2]), code(fields[3])
        if category is None or type_ is None:
            raise ValueError(f"terminology {terminology!r} has no category or type code")
        rgb = tuple(float(c) for c in color)
        if len(rgb) != 3:
            raise ValueError(f"a colour has 3 components, got {list(color)}")
        return cls(str(name), rgb, category, type_, modifier)  # type: ignore[arg-type]

    def with_name(self, name: str) -> "SegmentClass":
        return SegmentClass(name, self.color, self.category, self.type, self.modifier)


def _rgb(red: int, green: int, blue: int) -> Tuple[float, float, float]:
    return (red / 255.0, green / 255.0, blue / 255.0)


def _anatomy(name: str, code: str, meaning: str, color: Tuple[int, int, int],
             modifier: Optional[Code] = None) -> SegmentClass:
    return SegmentClass(name, _rgb(*color), ANATOMICAL_STRUCTURE, Code("SCT", code, meaning), modifier)


#: Standard classes the modules use, by lower-case name.
STANDARD_CLASSES: Dict[str, SegmentClass] = {entry.name: entry for entry in [
    _anatomy("brain", "12738006", "Brain", (250, 250, 225)),
    _anatomy("heart", "80891009", "Heart", (206, 110, 84)),
    _anatomy("left kidney", "64033007", "Kidney", (185, 102, 83), LEFT),
    _anatomy("right kidney", "64033007", "Kidney", (185, 102, 83), RIGHT),
    _anatomy("urinary bladder", "89837001", "Urinary bladder", (222, 154, 132)),
    _anatomy("prostate", "41216001", "Prostate", (230, 158, 140)),
    _anatomy("left ventricular myocardium", "87878005", "Left ventricle myocardium", (188, 95, 76)),
    _anatomy("lymph node", "59441001", "Lymph node", (68, 172, 100)),
    _anatomy("liver", "10200004", "Liver", (221, 130, 101)),
    _anatomy("lung", "39607008", "Lung", (197, 165, 145)),
]}


def standard_class(name: str, display_name: Optional[str] = None) -> SegmentClass:
    """The standard :class:`SegmentClass` called ``name`` (case-insensitive), optionally shown as ``display_name``.

    Raises ``KeyError`` naming the known classes.
    """
    key = name.strip().lower()
    if key not in STANDARD_CLASSES:
        raise KeyError(f"no standard segment class {name!r}; known: {sorted(STANDARD_CLASSES)}")
    entry = STANDARD_CLASSES[key]
    return entry if display_name is None else entry.with_name(display_name)


def segment_specs(classes: Sequence[SegmentClass], values: Optional[Iterable[int]] = None
                  ) -> List[Tuple[int, str, Tuple[float, float, float], str]]:
    """``(label value, name, colour, terminology)`` tuples for :func:`mednets.mrml.new_segmentation_node`.

    ``values`` default to 1, 2, ... in the order of ``classes``.
    """
    values = list(values) if values is not None else list(range(1, len(classes) + 1))
    if len(values) != len(classes):
        raise ValueError(f"{len(classes)} classes but {len(values)} label values")
    return [(int(value), entry.name, entry.color, entry.terminology()) for value, entry in zip(values, classes)]
