"""Writes Resources/UI/NucleiMaskylo.ui from the compact description below (run after changing it)."""
from pathlib import Path
from xml.sax.saxutils import escape

SECTIONS = [
    ("inputsCollapsibleButton", "Inputs", False, [
        ("Input H&E image:", "qMRMLNodeComboBox", "inputSelector",
         {"nodeTypes": ["vtkMRMLVectorVolumeNode"], "noneEnabled": False, "addEnabled": False,
          "removeEnabled": False, "showChildNodeTypes": False, "SlicerParameterName": "inputVolume",
          "toolTip": "An RGB H&E image (a colour vector volume with one slice, e.g. a PNG/JPEG/TIFF tile). It is "
                     "never modified."}),
        ("Model:", "QComboBox", "modelComboBox",
         {"toolTip": "Mask R-CNN weights: the bundled demo weights, imported weights and your training runs."}),
        ("", "QPushButton", "loadWeightsButton", {"text": "Load weights file...",
                                                   "toolTip": "Import a NucleiMaskylo checkpoint (.safetensors)."}),
        ("Device:", "QComboBox", "deviceComboBox", {"SlicerParameterName": "device",
                                                    "toolTip": "Where the network runs; Auto picks a GPU if present."}),
    ]),
    ("advancedCollapsibleButton", "Advanced", True, [
        ("Score threshold:", "ctkSliderWidget", "scoreThresholdSliderWidget",
         {"decimals": 2, "singleStep": 0.05, "minimum": 0.05, "maximum": 0.99, "value": 0.5,
          "SlicerParameterName": "scoreThreshold",
          "toolTip": "Nuclei with a lower confidence are discarded."}),
        ("Tile size:", "QSpinBox", "tileSizeSpinBox",
         {"minimum": 64, "maximum": 2048, "value": 512, "SlicerParameterName": "tileSize",
          "toolTip": "Tiles of this size (512 in the paper) are processed one at a time."}),
        ("Tile overlap:", "QSpinBox", "overlapSpinBox",
         {"minimum": 0, "maximum": 512, "value": 64, "SlicerParameterName": "overlap",
          "toolTip": "Overlap of neighbouring tiles; nuclei up to half of it in radius are never cut."}),
        ("Stain normalisation:", "QComboBox", "stainComboBox",
         {"SlicerParameterName": "stainMethod", "toolTip": "Macenko or Reinhard colour normalisation to the "
                                                           "bundled reference (or none)."}),
        ("YOLO branch (AGPL-3.0):", "QCheckBox", "useYoloCheckBox",
         {"SlicerParameterName": "useYolo", "text": "fuse YOLO detections (optional ultralytics package)",
          "toolTip": "Adds the YOLO branch and fuses it with Mask R-CNN. Needs the optional ultralytics package "
                     "(AGPL-3.0), installed only if you agree, and YOLO weights you trained."}),
        ("Fusion:", "QComboBox", "fusionComboBox", {"SlicerParameterName": "fusion",
                                                    "toolTip": "How branch outputs are combined."}),
        ("Fusion IoU:", "ctkSliderWidget", "fusionIouSliderWidget",
         {"decimals": 2, "singleStep": 0.05, "minimum": 0.1, "maximum": 0.95, "value": 0.5,
          "SlicerParameterName": "fusionIou", "toolTip": "Detections overlapping this much are the same nucleus."}),
    ]),
]
AFTER_INPUTS = [("QPushButton", "applyButton", {"text": "Apply", "enabled": False}),
                ("QProgressBar", "progressBar", {"value": 0}),
                ("QLabel", "statusLabel", {"text": "", "wordWrap": True})]
EVALUATE = ("evaluateCollapsibleButton", "Evaluate", True, [
    ("Result nuclei:", "qMRMLNodeComboBox", "resultSelector",
     {"nodeTypes": ["vtkMRMLLabelMapVolumeNode"], "noneEnabled": True, "addEnabled": False, "removeEnabled": False,
      "showChildNodeTypes": False, "SlicerParameterName": "resultLabelmap",
      "toolTip": "Instance label map to evaluate (the result of Apply)."}),
    ("Reference nuclei:", "qMRMLNodeComboBox", "referenceSelector",
     {"nodeTypes": ["vtkMRMLLabelMapVolumeNode"], "noneEnabled": True, "addEnabled": False, "removeEnabled": False,
      "showChildNodeTypes": False, "SlicerParameterName": "referenceLabelmap",
      "toolTip": "Reference instance label map (one value per nucleus)."}),
    ("", "QPushButton", "evaluateButton", {"text": "Evaluate", "enabled": False}),
    ("", "qMRMLTableView", "metricsTableView", {"toolTip": "Metrics of the last evaluation."}),
    ("", "QLabel", "evaluateStatusLabel", {"text": "", "wordWrap": True}),
])
TRAIN = ("trainCollapsibleButton", "Train", True, [
    ("Training folder:", "ctkPathLineEdit", "trainingFolderPathLineEdit",
     {"filters": "ctkPathLineEdit::Dirs|ctkPathLineEdit::Drives|ctkPathLineEdit::NoDotAndDotDot",
      "SlicerParameterName": "trainingFolder",
      "toolTip": "Tiles in the NuInsSeg layout: <organ>/tissue images/*.png with <organ>/label masks modify/*.tif."}),
    ("Output folder:", "ctkPathLineEdit", "trainingOutputPathLineEdit",
     {"filters": "ctkPathLineEdit::Dirs|ctkPathLineEdit::Drives|ctkPathLineEdit::NoDotAndDotDot",
      "SlicerParameterName": "trainingOutputFolder", "toolTip": "Where checkpoints are written."}),
    ("Iterations:", "QSpinBox", "iterationsSpinBox",
     {"minimum": 1, "maximum": 1000000, "value": 2000, "SlicerParameterName": "iterations",
      "toolTip": "Optimizer steps (batches of 16 tiles)."}),
    ("", "QPushButton", "addCaseButton", {"text": "Add current case to training set", "enabled": False}),
    ("", "QPushButton", "trainButton", {"text": "Train", "enabled": False}),
    ("", "QProgressBar", "trainingProgressBar", {"value": 0}),
    ("", "QLabel", "trainingStatusLabel", {"text": "", "wordWrap": True}),
])


def prop(name, value):
    dynamic = ' stdset="0"' if name == "SlicerParameterName" else ""
    if isinstance(value, bool):
        body = f"<bool>{'true' if value else 'false'}</bool>"
    elif isinstance(value, int):
        body = f"<number>{value}</number>"
    elif isinstance(value, float):
        body = f"<double>{value:.6f}</double>"
    elif isinstance(value, list):
        body = '<stringlist notr="true">' + "".join(f"<string>{escape(v)}</string>" for v in value) + "</stringlist>"
    elif name == "filters":
        body = f"<set>{value}</set>"
    else:
        body = f"<string>{escape(value)}</string>" if value else "<string/>"
    return f'<property name="{name}"{dynamic}>{body}</property>'


def widget(cls, name, props):
    return f'<widget class="{cls}" name="{name}">' + "".join(prop(k, v) for k, v in props.items()) + "</widget>"


def section(name, title, collapsed, rows):
    items = []
    for row, (label, cls, wname, props) in enumerate(rows):
        if label:
            items.append(f'<item row="{row}" column="0"><widget class="QLabel" name="{wname}Label">'
                         f'{prop("text", label)}</widget></item>')
            items.append(f'<item row="{row}" column="1">{widget(cls, wname, props)}</item>')
        else:
            items.append(f'<item row="{row}" column="0" colspan="2">{widget(cls, wname, props)}</item>')
    return (f'<item><widget class="ctkCollapsibleButton" name="{name}">{prop("text", title)}'
            f'{prop("collapsed", collapsed)}<layout class="QFormLayout" name="{name}Layout">{"".join(items)}'
            f'</layout></widget></item>')


def main():
    parts = [section(*SECTIONS[0]), section(*SECTIONS[1])]
    parts += [f"<item>{widget(c, n, p)}</item>" for c, n, p in AFTER_INPUTS]
    parts += [section(*EVALUATE), section(*TRAIN)]
    parts.append('<item><spacer name="verticalSpacer"><property name="orientation"><enum>Qt::Vertical</enum>'
                 '</property></spacer></item>')
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<ui version="4.0">\n <class>NucleiMaskylo</class>\n'
           ' <widget class="qMRMLWidget" name="NucleiMaskylo">\n  <layout class="QVBoxLayout" name="verticalLayout">\n'
           + "\n".join("   " + p for p in parts) + "\n  </layout>\n </widget>\n"
           ' <customwidgets>\n'
           + "".join(f'  <customwidget><class>{c}</class><extends>{e}</extends><header>{h}</header>'
                     f'{"<container>1</container>" if c in ("ctkCollapsibleButton", "qMRMLWidget") else ""}'
                     '</customwidget>\n'
                     for c, e, h in [("ctkCollapsibleButton", "QWidget", "ctkCollapsibleButton.h"),
                                     ("ctkPathLineEdit", "QWidget", "ctkPathLineEdit.h"),
                                     ("ctkSliderWidget", "QWidget", "ctkSliderWidget.h"),
                                     ("qMRMLNodeComboBox", "QWidget", "qMRMLNodeComboBox.h"),
                                     ("qMRMLTableView", "QTableView", "qMRMLTableView.h"),
                                     ("qMRMLWidget", "QWidget", "qMRMLWidget.h")])
           + ' </customwidgets>\n <resources/>\n <connections>\n'
           + "".join(f'  <connection><sender>NucleiMaskylo</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>'
                     f'<receiver>{r}</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection>\n'
                     for r in ("inputSelector", "resultSelector", "referenceSelector"))
           + ' </connections>\n</ui>\n')
    out = Path(__file__).resolve().parents[2] / "Resources" / "UI" / "NucleiMaskylo.ui"
    out.write_text(xml)
    print(out)


if __name__ == "__main__":
    main()
