"""The Slicer test runtime (Testing/runtime): qt/ctk/qMRML stand-ins, PythonQt's view of Qt objects, loadUI on
Slicer-style designer files, the parameter node wrapper, and slicer.util functions that need slicer.app/modules.

This module imports ``slicer`` and uses the runtime fixtures, so (like a scripted module) it sees Qt objects the way
PythonQt shows them: ``label.text`` is a string, ``button.enabled = False`` disables the button.
"""

# No "from __future__ import annotations" here: parameterNodeWrapper classes are defined inside test functions, and
# (as in Slicer) the wrapper resolves string annotations against module globals only.
import enum
import pathlib
import textwrap
import typing
from typing import Annotated, List, Optional

import numpy as np
import pytest

import slicer
import slicer_test_runtime
from slicer_test_runtime import pythonqt

HARNESS_UI = pathlib.Path(__file__).resolve().parent / "HarnessThreshold" / "Resources" / "UI" / "HarnessThreshold.ui"

# A designer file as Qt Designer writes it for Slicer: custom widget headers, a dynamic property per parameter, a
# <set> value of a CTK enum, and connections to the qMRML stand-ins and between two native widgets.
FORM_UI = textwrap.dedent("""\
    <?xml version="1.0" encoding="UTF-8"?>
    <ui version="4.0">
     <class>Form</class>
     <widget class="qMRMLWidget" name="Form">
      <layout class="QFormLayout" name="formLayout">
       <item row="0" column="1">
        <widget class="qMRMLNodeComboBox" name="volumeSelector">
         <property name="nodeTypes"><stringlist notr="true"><string>vtkMRMLScalarVolumeNode</string></stringlist></property>
         <property name="noneEnabled"><bool>true</bool></property>
         <property name="SlicerParameterName" stdset="0"><string>volume</string></property>
        </widget>
       </item>
       <item row="1" column="1">
        <widget class="ctkSliderWidget" name="sigmaSlider">
         <property name="decimals"><number>3</number></property>
         <property name="SlicerParameterName" stdset="0"><string>sigma</string></property>
        </widget>
       </item>
       <item row="2" column="1">
        <widget class="QSpinBox" name="iterationsSpinBox">
         <property name="SlicerParameterName" stdset="0"><string>iterations</string></property>
        </widget>
       </item>
       <item row="3" column="1">
        <widget class="QCheckBox" name="enableCheckBox">
         <property name="SlicerParameterName" stdset="0"><string>enabled</string></property>
        </widget>
       </item>
       <item row="4" column="1">
        <widget class="QComboBox" name="modeComboBox">
         <property name="SlicerParameterName" stdset="0"><string>mode</string></property>
        </widget>
       </item>
       <item row="5" column="1">
        <widget class="QLineEdit" name="nameLineEdit">
         <property name="SlicerParameterName" stdset="0"><string>label</string></property>
        </widget>
       </item>
       <item row="6" column="1">
        <widget class="ctkPathLineEdit" name="outputPathLineEdit">
         <property name="filters"><set>ctkPathLineEdit::Dirs|ctkPathLineEdit::Writable</set></property>
         <property name="SlicerParameterName" stdset="0"><string>outputFolder</string></property>
        </widget>
       </item>
       <item row="7" column="1">
        <widget class="QDoubleSpinBox" name="weightSpinBox">
         <property name="enabled"><bool>false</bool></property>
        </widget>
       </item>
      </layout>
     </widget>
     <customwidgets>
      <customwidget><class>qMRMLWidget</class><extends>QWidget</extends><header>qMRMLWidget.h</header><container>1</container></customwidget>
      <customwidget><class>qMRMLNodeComboBox</class><extends>QWidget</extends><header>qMRMLNodeComboBox.h</header></customwidget>
      <customwidget><class>ctkSliderWidget</class><extends>QWidget</extends><header>ctkSliderWidget.h</header></customwidget>
      <customwidget><class>ctkPathLineEdit</class><extends>QWidget</extends><header>ctkPathLineEdit.h</header></customwidget>
     </customwidgets>
     <connections>
      <connection><sender>Form</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>
       <receiver>volumeSelector</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection>
      <connection><sender>enableCheckBox</sender><signal>toggled(bool)</signal>
       <receiver>weightSpinBox</receiver><slot>setEnabled(bool)</slot></connection>
     </connections>
    </ui>
    """)


@pytest.fixture
def form(mrml_scene, tmp_path):
    path = tmp_path / "Form.ui"
    path.write_text(FORM_UI)
    widget = slicer.util.loadUI(str(path))
    yield widget, slicer.util.childWidgetVariables(widget)
    widget.deleteLater()


def addVolume(name: str, shape=(2, 3, 4), className: str = "vtkMRMLScalarVolumeNode"):
    return slicer.util.addVolumeFromArray(np.zeros(shape, np.int16), name=name, nodeClassName=className)


class Recorder:
    def __init__(self) -> None:
        self.calls: List[tuple] = []

    def __call__(self, *args) -> None:
        self.calls.append(args)


# ------------------------------------------------------------------------------------------------------- install, app

def test_install_is_idempotent_and_wires_slicer_app_and_core_modules(slicer_runtime):
    import ctk
    import qt

    assert slicer_test_runtime.install() is slicer_runtime
    assert slicer.app.testingEnabled() and slicer.app.isTestRuntime
    assert slicer.mrmlScene is slicer.app.mrmlScene() and slicer.mrmlScene.IsA("vtkMRMLScene")
    assert qt.QApplication.instance() is slicer_runtime.qapplication  # one QApplication for the session
    expected = {"volumes": "vtkSlicerVolumesLogic", "segmentations": "vtkSlicerSegmentationsModuleLogic",
                "markups": "vtkSlicerMarkupsLogic", "colors": "vtkSlicerColorLogic", "tables": "vtkSlicerTablesLogic",
                "transforms": "vtkSlicerTransformLogic", "subjecthierarchy": "vtkSlicerSubjectHierarchyModuleLogic"}
    for moduleAttribute, logicClass in expected.items():
        logic = getattr(slicer.modules, moduleAttribute).logic()
        assert logic.GetClassName() == logicClass
        assert logic.GetMRMLScene() is slicer.mrmlScene
        moduleName = getattr(slicer.modules, moduleAttribute).name
        assert slicer.app.applicationLogic().GetModuleLogic(moduleName) is logic
        assert slicer.util.getModuleLogic(moduleName) is logic
    assert {"Volumes", "Segmentations", "Markups"} <= set(slicer.util.moduleNames())
    assert slicer.app.applicationLogic().GetColorLogic() is slicer.modules.colors.logic()
    assert qt.QSettings().fileName().startswith(slicer.app.temporaryPath)  # never the user's Slicer settings
    assert isinstance(ctk.ctkSliderWidget(), qt.QWidget)
    from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

    assert (qt.QWidget, qt.QMessageBox, qt.QProgressDialog, qt.QApplication) == (
        QtWidgets.QWidget, QtWidgets.QMessageBox, QtWidgets.QProgressDialog, QtWidgets.QApplication)
    assert (qt.QTimer, qt.QObject, qt.QSettings, qt.QIcon) == (QtCore.QTimer, QtCore.QObject, QtCore.QSettings, QtGui.QIcon)
    assert issubclass(qt.Qt, QtCore.Qt) and qt.Qt.WaitCursor == QtCore.Qt.WaitCursor  # QtGui's Qt extends QtCore's
    assert issubclass(qt.QUiLoader, QtUiTools.QUiLoader)


def test_mrml_scene_fixture_closes_the_scene(mrml_scene):
    addVolume("left over")
    mrml_scene.Clear(0)
    assert slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") == []
    # singletons made by the core logics survive a close, as in Slicer
    assert mrml_scene.GetNodeByID(slicer.modules.colors.logic().GetDefaultLabelMapColorNodeID()) is not None


# ------------------------------------------------------------------------------------------------------- PythonQt view

def test_slicer_code_sees_qt_properties_as_attributes_like_pythonqt(mrml_scene):
    import qt

    lineEdit, button, spinBox = qt.QLineEdit("abc"), qt.QPushButton("Go"), qt.QSpinBox()
    assert lineEdit.text == "abc" and button.enabled is True and spinBox.value == 0
    with pytest.raises(TypeError, match="not callable"):
        lineEdit.text()  # fails in Slicer too: a property wins over the getter of the same name
    button.enabled = False
    lineEdit.text = "changed"
    spinBox.value = 7
    button.name = "goButton"
    # the class still has the getter methods (as PythonQt's unbound methods)
    assert (button.isEnabled(), qt.QLineEdit.text(lineEdit), qt.QSpinBox.value(spinBox), button.objectName) == (
        False, "changed", 7, "goButton")
    timer = qt.QTimer()
    timer.singleShot = True
    assert timer.isSingleShot() and timer.singleShot is True
    assert callable(qt.QTimer.singleShot)  # the class keeps the static method


def test_other_code_keeps_the_pyside_view(mrml_scene):
    namespace = {"__name__": "plain_pyside_code"}
    exec(textwrap.dedent("""\
        from PySide6 import QtWidgets
        edit = QtWidgets.QLineEdit("abc")
        text = edit.text()
        try:
            edit.enabled
            enabledAttribute = True
        except AttributeError:
            enabledAttribute = False
        """), namespace)
    assert namespace["text"] == "abc" and namespace["enabledAttribute"] is False
    import qt

    assert pythonqt.is_slicer_code({"__name__": "SomeModuleLib.widgets", "qt": qt})  # imports the runtime's qt
    assert pythonqt.is_slicer_code({"__name__": "slicer.util"})
    assert not pythonqt.is_slicer_code({"__name__": "matplotlib.backends.backend_qt", "qt": object()})


def test_signature_connect_on_loaded_widgets(form):
    _, ui = form
    clicks, values = Recorder(), Recorder()
    mrmlWidget = slicer.qMRMLWidget()  # a runtime stand-in: PythonQt-style connect is a method of the class
    ui.iterationsSpinBox.connect("valueChanged(int)", values)
    ui.enableCheckBox.connect("toggled(bool)", clicks)
    ui.enableCheckBox.setChecked(True)
    ui.iterationsSpinBox.setValue(4)
    assert clicks.calls == [(True,)] and values.calls == [(4,)]
    assert ui.enableCheckBox.disconnect("toggled(bool)", clicks)
    ui.enableCheckBox.setChecked(False)
    assert clicks.calls == [(True,)]
    scenes = Recorder()
    mrmlWidget.connect("mrmlSceneChanged(vtkMRMLScene*)", scenes)
    mrmlWidget.setMRMLScene(slicer.mrmlScene)
    assert scenes.calls == [(slicer.mrmlScene,)]


# ------------------------------------------------------------------------------------------------------- loadUI

def test_load_ui_builds_stand_ins_and_makes_the_file_connections(form):
    widget, ui = form
    assert type(widget) is slicer.qMRMLWidget and widget.objectName == "Form"
    assert type(ui.volumeSelector) is slicer.qMRMLNodeComboBox and ui.volumeSelector.nodeTypes == ["vtkMRMLScalarVolumeNode"]
    assert ui.volumeSelector.noneEnabled and not ui.volumeSelector.enabled  # disabled until it has a scene
    assert ui.sigmaSlider.decimals == 3
    import ctk

    assert ui.outputPathLineEdit.filters == ctk.ctkPathLineEdit.Dirs | ctk.ctkPathLineEdit.Writable
    assert ui.volumeSelector.property("SlicerParameterName") == "volume"
    widget.setMRMLScene(slicer.mrmlScene)  # <connections>: mrmlSceneChanged(vtkMRMLScene*) -> setMRMLScene
    assert ui.volumeSelector.mrmlScene() is slicer.mrmlScene and ui.volumeSelector.enabled
    ui.enableCheckBox.setChecked(True)  # <connections>: toggled(bool) -> setEnabled(bool), between native widgets
    assert ui.weightSpinBox.enabled


def test_load_ui_of_the_template_style_module(mrml_scene):
    widget = slicer.util.loadUI(str(HARNESS_UI))
    ui = slicer.util.childWidgetVariables(widget)
    assert ui.advancedCollapsibleButton.collapsed and ui.advancedCollapsibleButton.text == "Advanced"
    assert (ui.thresholdSliderWidget.minimum, ui.thresholdSliderWidget.maximum) == (-1024.0, 3071.0)
    assert ui.thresholdSliderWidget.value == 100.0 and ui.applyButton.text == "Apply" and not ui.applyButton.enabled
    assert ui.outputSelector.noneDisplay == "Create new segmentation"
    widget.setMRMLScene(slicer.mrmlScene)
    assert ui.inputSelector.mrmlScene() is slicer.mrmlScene and ui.outputSelector.mrmlScene() is slicer.mrmlScene


def test_load_ui_refuses_a_widget_the_runtime_does_not_have(mrml_scene, tmp_path):
    path = tmp_path / "Unknown.ui"
    path.write_text(FORM_UI.replace('class="QSpinBox"', 'class="qMRMLSubjectHierarchyTreeView"'))
    with pytest.raises(RuntimeError, match="qMRMLSubjectHierarchyTreeView"):
        slicer.util.loadUI(str(path))


# ------------------------------------------------------------------------------------------------------- ctk

def test_ctk_slider_widget_values_range_and_signal(mrml_scene):
    import ctk

    slider = ctk.ctkSliderWidget()
    assert (slider.minimum, slider.maximum, slider.singleStep, slider.decimals, slider.value) == (0.0, 99.99, 1.0, 2, 0.0)
    changes = Recorder()
    slider.valueChanged.connect(changes)
    slider.setRange(-10.0, 10.0)
    slider.singleStep = 0.5
    slider.setValue(3.14159)
    assert slider.value == 3.14 and changes.calls[-1] == (3.14,)  # rounded to 2 decimals, valueChanged(double)
    slider.value = 25.0
    assert slider.value == 10.0  # clamped to the maximum
    slider.slider().setValue(4)  # dragging: 4 steps of 0.5 above the minimum
    assert slider.value == -8.0 and changes.calls[-1] == (-8.0,)


def test_ctk_collapsible_button_hides_and_restores_its_contents(mrml_scene):
    import ctk
    import qt

    button = ctk.ctkCollapsibleButton()
    layout = qt.QVBoxLayout(button)
    inside, hiddenByUser = qt.QLabel("inside"), qt.QLabel("hidden")
    layout.addWidget(inside)
    layout.addWidget(hiddenByUser)
    hiddenByUser.hide()
    events = Recorder()
    button.contentsCollapsed.connect(events)
    button.collapsed = True
    assert inside.isHidden() and not button.checked and events.calls == [(True,)]
    button.setChecked(True)  # clicking the header expands again
    assert not button.collapsed and not inside.isHidden() and hiddenByUser.isHidden()
    assert events.calls == [(True,), (False,)]


def test_ctk_path_range_and_checkable_combo_boxes(mrml_scene):
    import ctk
    import qt

    pathEdit, paths = ctk.ctkPathLineEdit(), Recorder()
    pathEdit.currentPathChanged.connect(paths)
    pathEdit.currentPath = "/data/case1.nrrd"
    assert pathEdit.currentPath == "/data/case1.nrrd" and paths.calls == [("/data/case1.nrrd",)]

    rangeWidget, values = ctk.ctkRangeWidget(), Recorder()
    rangeWidget.valuesChanged.connect(values)
    rangeWidget.setRange(0.0, 10.0)
    rangeWidget.setValues(8.0, 2.0)
    assert (rangeWidget.minimumValue, rangeWidget.maximumValue) == (2.0, 8.0) and values.calls[-1] == (2.0, 8.0)
    rangeWidget.maximumValue = 1.0  # the minimum follows: minimumValue <= maximumValue always
    assert (rangeWidget.minimumValue, rangeWidget.maximumValue) == (1.0, 1.0)

    combo, checked = ctk.ctkCheckableComboBox(), Recorder()
    combo.addItems(["liver", "spleen", "kidney"])
    combo.checkedIndexesChanged.connect(checked)
    combo.setCheckState(2, qt.Qt.Checked)
    combo.setCheckState(combo.model().index(0, 0), qt.Qt.Checked)
    assert [index.row() for index in combo.checkedIndexes()] == [0, 2] and len(checked.calls) == 2
    assert not combo.allChecked() and not combo.noneChecked()


# ------------------------------------------------------------------------------------------------------- qMRML

def test_node_combo_box_follows_the_scene(mrml_scene):
    combo = slicer.qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    combo.noneEnabled = False
    nodes, validity, ids, added, aboutToBeRemoved = Recorder(), Recorder(), Recorder(), Recorder(), Recorder()
    combo.currentNodeChanged.connect(nodes)
    combo.connect("currentNodeChanged(bool)", validity)
    combo.currentNodeIDChanged.connect(ids)
    combo.nodeAdded.connect(added)
    combo.nodeAboutToBeRemoved.connect(aboutToBeRemoved)
    combo.setMRMLScene(slicer.mrmlScene)
    assert combo.currentNode() is None and combo.nodeCount() == 0

    first = addVolume("first")
    assert combo.currentNode() is first  # noneEnabled false: the first node is selected
    assert nodes.calls == [(first,)] and validity.calls == [(True,)] and ids.calls == [(first.GetID(),)]
    second = addVolume("second")
    labelmap = addVolume("labels", className="vtkMRMLLabelMapVolumeNode")  # a child type of scalar volume
    hidden = addVolume("hidden")
    hidden.SetHideFromEditors(True)
    assert combo.nodes() == [first, second, labelmap] and combo.currentNode() is first
    assert [call[0] for call in added.calls] == [first, second, labelmap, hidden]  # hidden only after it was added
    combo.showChildNodeTypes = False
    assert combo.nodes() == [first, second]
    combo.showHidden = True
    assert combo.nodes() == [first, second, hidden]

    second.SetName("renamed")
    assert combo.comboBox().itemText(1) == "renamed"
    combo.setCurrentNode(second)
    assert combo.currentNodeID == second.GetID() and nodes.calls[-1] == (second,)
    slicer.mrmlScene.RemoveNode(second)  # the current node goes: the next one becomes current
    assert aboutToBeRemoved.calls[-1] == (second,) and combo.currentNode() is hidden
    slicer.mrmlScene.Clear(0)
    assert combo.nodeCount() == 0 and combo.currentNode() is None
    assert nodes.calls[-1] == (None,) and validity.calls[-1] == (False,) and ids.calls[-1] == ("",)


def test_node_combo_box_with_none_add_node_and_attribute_filter(mrml_scene):
    combo = slicer.qMRMLNodeComboBox()
    combo.setNodeTypes(["vtkMRMLSegmentationNode"])
    combo.noneEnabled = True
    combo.baseName = "Result"
    combo.setMRMLScene(slicer.mrmlScene)
    existing = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "existing")
    assert combo.currentNode() is None and combo.nodes() == [existing]  # "None" stays selected
    byUser = Recorder()
    combo.nodeAddedByUser.connect(byUser)
    created = combo.addNode()
    assert created.GetName() == "Result" and created.GetDisplayNode() is not None
    assert combo.currentNode() is created and byUser.calls == [(created,)]
    combo.setCurrentNodeID("")
    assert combo.currentNode() is None
    combo.addAttribute("vtkMRMLSegmentationNode", "Purpose", "training")
    assert combo.nodes() == []
    existing.SetAttribute("Purpose", "training")
    assert combo.nodes() == [existing]


def test_segment_selector_lists_segments_of_the_selected_segmentation(mrml_scene):
    selector = slicer.qMRMLSegmentSelectorWidget()
    selector.setMRMLScene(slicer.mrmlScene)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    liver = segmentation.GetSegmentation().AddEmptySegment("", "liver", (1, 0, 0))
    selector.setCurrentNode(segmentation)
    changed = Recorder()
    selector.currentSegmentChanged.connect(changed)
    spleen = segmentation.GetSegmentation().AddEmptySegment("", "spleen", (0, 1, 0))
    assert selector.segmentIDs() == [liver, spleen] and selector.currentSegmentID() == liver
    selector.setCurrentSegmentID(spleen)
    assert selector.currentSegmentID() == spleen and changed.calls == [(spleen,)]
    segmentation.GetSegmentation().RemoveSegment(spleen)
    assert selector.segmentIDs() == [liver] and selector.currentSegmentID() == liver


# ------------------------------------------------------------------------------------------------------- parameter node

class Mode(enum.Enum):
    FAST = 1
    ACCURATE = 2


def _parameterClass():
    from slicer.parameterNodeWrapper import Choice, Decimals, Default, WithinRange, parameterNodeWrapper

    @parameterNodeWrapper
    class Parameters:
        volume: slicer.vtkMRMLScalarVolumeNode
        optionalOutput: Optional[slicer.vtkMRMLSegmentationNode]
        sigma: Annotated[float, WithinRange(0.0, 5.0), Decimals(3)] = 1.5
        iterations: Annotated[int, WithinRange(1, 50)] = 10
        enabled: bool = False
        mode: Mode = Mode.ACCURATE
        label: Annotated[str, Default("unnamed")]
        outputFolder: pathlib.Path
        device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
        classes: List[int]

        def describe(self) -> str:
            return f"{self.label}: sigma {self.sigma}"

    return Parameters


def test_parameter_node_wrapper_round_trip_in_slicer_storage_format(mrml_scene):
    Parameters = _parameterClass()
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    parameters = Parameters(node)
    stored = {name: node.GetParameter(name) for name in ("sigma", "iterations", "enabled", "mode", "label", "device")}
    assert stored == {"sigma": "1.5", "iterations": "10", "enabled": "False", "mode": "ACCURATE", "label": "unnamed",
                      "device": "cpu"}
    assert parameters.volume is None and parameters.classes == [] and parameters.outputFolder == pathlib.Path()
    volume = addVolume("input")
    parameters.volume = volume
    parameters.sigma = 2
    parameters.enabled = True
    parameters.mode = Mode.FAST
    parameters.outputFolder = pathlib.Path("/tmp/out")
    parameters.classes = [1, 3]
    parameters.classes.append(7)  # a list parameter writes itself back when changed
    assert node.GetNodeReference("volume") is volume and node.GetParameter("classes.len") == "3"
    again = Parameters(node)  # another wrapper on the same node reads what was stored
    assert (again.volume, again.sigma, again.enabled, again.mode, again.classes) == (volume, 2.0, True, Mode.FAST, [1, 3, 7])
    assert isinstance(again.sigma, float) and again.outputFolder == pathlib.Path("/tmp/out")
    assert again.describe() == "unnamed: sigma 2.0"
    with pytest.raises(ValueError, match=r"within range \[0.0, 5.0\]"):
        parameters.sigma = 7.5
    with pytest.raises(TypeError):
        parameters.iterations = 2.5
    with pytest.raises(ValueError):
        parameters.device = "tpu"
    with pytest.raises(TypeError):
        parameters.volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert parameters.sigma == 2.0 and parameters.volume is volume  # refused values leave the node unchanged
    from slicer.parameterNodeWrapper import isParameterNodeWrapper

    assert isParameterNodeWrapper(parameters) and typing.get_args(parameters.dataType("iterations"))[0] is int


def test_parameter_node_wrapper_refuses_unsupported_types(slicer_runtime):
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    with pytest.raises(TypeError, match="cannot store"):
        @parameterNodeWrapper
        class Unsupported:
            mapping: dict


def test_connect_gui_binds_widgets_both_ways(form):
    widget, ui = form
    widget.setMRMLScene(slicer.mrmlScene)
    Parameters = _parameterClass()
    parameters = Parameters(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    volume = addVolume("input")
    parameters.volume = volume
    tag = parameters.connectGui(ui)

    # parameter node -> GUI, at connection and on every change
    assert ui.volumeSelector.currentNode() is volume
    assert (ui.sigmaSlider.minimum, ui.sigmaSlider.maximum, ui.sigmaSlider.value) == (0.0, 5.0, 1.5)
    assert (ui.iterationsSpinBox.minimum, ui.iterationsSpinBox.maximum, ui.iterationsSpinBox.value) == (1, 50, 10)
    assert [ui.modeComboBox.itemText(i) for i in range(ui.modeComboBox.count)] == ["FAST", "ACCURATE"]
    assert ui.modeComboBox.currentIndex == 1 and ui.nameLineEdit.text == "unnamed" and not ui.enableCheckBox.checked
    parameters.iterations = 25
    parameters.mode = Mode.FAST
    assert ui.iterationsSpinBox.value == 25 and ui.modeComboBox.currentText == "FAST"

    # GUI -> parameter node
    ui.sigmaSlider.setValue(3.25)
    ui.enableCheckBox.setChecked(True)
    ui.nameLineEdit.setText("run 1")
    ui.outputPathLineEdit.setCurrentPath("/tmp/results")
    ui.volumeSelector.setCurrentNode(None)
    assert (parameters.sigma, parameters.enabled, parameters.label) == (3.25, True, "run 1")
    assert parameters.outputFolder == pathlib.Path("/tmp/results") and parameters.volume is None

    parameters.disconnectGui(tag)
    ui.iterationsSpinBox.setValue(3)
    parameters.sigma = 0.5
    assert parameters.iterations == 25 and ui.sigmaSlider.value == 3.25  # no longer bound


# ------------------------------------------------------------------------------------------------------- slicer.util

def test_slicer_util_segment_and_volume_arrays(mrml_scene):
    rng = np.random.default_rng(1)
    voxels = rng.normal(size=(4, 6, 5)).astype(np.float32)
    volume = slicer.util.addVolumeFromArray(voxels, ijkToRAS=np.diag([0.5, 0.5, 2.0, 1.0]), name="ct")
    assert slicer.util.getNode("ct") is volume
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), voxels)
    mask = (voxels > 0.3).astype(np.uint8)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentId = segmentation.GetSegmentation().AddEmptySegment("", "bright", (1, 1, 0))
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, volume)
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume), mask)
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId), mask)
    assert slicer.util.getNodesByClass("vtkMRMLLabelMapVolumeNode") == []  # the temporary label maps are gone


def test_slicer_util_load_and_save_nodes(mrml_scene, tmp_path):
    voxels = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    volume = slicer.util.addVolumeFromArray(voxels, ijkToRAS=np.diag([-0.7, -0.7, 2.5, 1.0]), name="scan")
    assert slicer.util.saveNode(volume, str(tmp_path / "scan.nrrd"))
    loaded = slicer.util.loadVolume(str(tmp_path / "scan.nrrd"), {"name": "reloaded"})
    assert loaded.GetName() == "reloaded" and loaded.GetSpacing() == pytest.approx((0.7, 0.7, 2.5))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), voxels)
    assert slicer.util.loadVolume(str(tmp_path / "scan.nrrd"), {"labelmap": True}).IsA("vtkMRMLLabelMapVolumeNode")
    with pytest.raises(RuntimeError, match="Failed to load"):
        slicer.util.loadVolume(str(tmp_path / "missing.nrrd"))


def test_slicer_util_messages_are_recorded_and_never_block(mrml_scene, slicer_messages):
    slicer.util.errorDisplay("Something failed")
    slicer.util.warningDisplay("Careful")
    slicer.util.infoDisplay("Done")
    slicer.util.confirmOkCancelDisplay("Install torch?")  # testing mode: no dialog, whatever Slicer's util answers
    slicer.util.delayDisplay("Step 1", 5000)  # would keep a dialog open for 5 s in Slicer's GUI
    assert [(m.kind, m.text) for m in slicer_messages] == [
        ("error", "Something failed"), ("warning", "Careful"), ("info", "Done"), ("confirm", "Install torch?"),
        ("delay", "Step 1")]
    with pytest.raises(ZeroDivisionError):
        with slicer.util.tryWithErrorDisplay("Computation failed", waitCursor=True):
            1 / 0
    import qt

    assert qt.QApplication.overrideCursor() is None  # the wait cursor was restored


def test_slicer_util_progress_dialog_module_lookup_and_temp_directory(mrml_scene):
    progress = slicer.util.createProgressDialog(maximum=10, labelText="Training", windowTitle="Train")
    progress.value = 4
    assert (progress.maximum, progress.value, progress.labelText, progress.windowTitle) == (10, 4, "Training", "Train")
    progress.close()
    assert slicer.util.getModule("Volumes") is slicer.modules.volumes
    with pytest.raises(RuntimeError, match="NoSuchModule"):
        slicer.util.getModule("NoSuchModule")
    temporary = pathlib.Path(slicer.util.tempDirectory("MedNets"))
    assert temporary.is_dir() and str(temporary).startswith(slicer.app.temporaryPath)
    from slicer.i18n import tr, translate

    assert tr("Apply") == "Apply" and translate("qSlicerAbstractCoreModule", "Examples") == "Examples"
