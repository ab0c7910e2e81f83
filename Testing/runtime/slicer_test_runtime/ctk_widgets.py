"""Stand-ins for the CTK widgets that Slicer module UIs use, importable as ``ctk`` once the runtime is installed.

Each class has the name, Qt properties (settable from a ``.ui`` file and readable as attributes, as in PythonQt),
signals and slots of its CTK original, so a designer file written for Slicer loads unchanged and module code reads
``self.ui.thresholdSlider.value`` exactly as it does in Slicer. Look and feel are not reproduced. Only what module code
realistically touches is provided; a missing member raises ``AttributeError`` rather than doing nothing.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, Signal

from .pythonqt import SignatureConnectMixin

__all__ = [
    "ctkCollapsibleButton",
    "ctkCollapsibleGroupBox",
    "ctkSliderWidget",
    "ctkDoubleSpinBox",
    "ctkRangeWidget",
    "ctkPathLineEdit",
    "ctkDirectoryButton",
    "ctkCheckBox",
    "ctkComboBox",
    "ctkCheckableComboBox",
    "ctkMenuButton",
    "ctkColorPickerButton",
    "ctkMessageBox",
]


class _CollapsibleContents:
    """Hide a container's child widgets while it is collapsed and show them again when it expands (as CTK does)."""

    def _initCollapsible(self) -> None:
        self._collapsed = False
        self._hiddenByCollapse: List[QtWidgets.QWidget] = []

    def _childWidgets(self) -> List[QtWidgets.QWidget]:
        return [c for c in self.children() if isinstance(c, QtWidgets.QWidget) and not c.isWindow()]

    def _applyCollapsed(self, collapsed: bool) -> None:
        if collapsed:
            self._hiddenByCollapse = [c for c in self._childWidgets() if not c.isHidden()]
            for child in self._hiddenByCollapse:
                child.hide()
        else:
            for child in self._hiddenByCollapse:
                child.show()
            self._hiddenByCollapse = []

    def childEvent(self, event: QtCore.QChildEvent) -> None:
        super().childEvent(event)
        child = event.child()
        if self._collapsed and event.type() == QtCore.QEvent.ChildPolished and isinstance(child, QtWidgets.QWidget):
            if not child.isWindow() and not child.isHidden():
                child.hide()
                self._hiddenByCollapse.append(child)


class ctkCollapsibleButton(SignatureConnectMixin, _CollapsibleContents, QtWidgets.QAbstractButton):
    """A checkable header button whose contents (its layout) are shown when expanded; ``collapsed`` hides them."""

    contentsCollapsed = Signal(bool)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._initCollapsible()
        self._collapsedHeight = 14
        self.setCheckable(True)
        self.setChecked(True)
        self.setSizePolicy(QtWidgets.QSizePolicy.Preferred, QtWidgets.QSizePolicy.Preferred)
        self.setContentsMargins(0, self._headerHeight(), 0, 0)
        self.toggled.connect(self._onToggled)

    def _headerHeight(self) -> int:
        return self.fontMetrics().height() + 8

    def _onToggled(self, checked: bool) -> None:
        self.setCollapsed(not checked)

    def _isCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, collapsed: bool) -> None:
        collapsed = bool(collapsed)
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        if self.isChecked() == collapsed:
            self.setChecked(not collapsed)
        self._applyCollapsed(collapsed)
        self.updateGeometry()
        self.contentsCollapsed.emit(collapsed)

    collapsed = Property(bool, _isCollapsed, setCollapsed)

    def _getCollapsedHeight(self) -> int:
        return self._collapsedHeight

    def setCollapsedHeight(self, height: int) -> None:
        self._collapsedHeight = int(height)

    collapsedHeight = Property(int, _getCollapsedHeight, setCollapsedHeight)

    def hitButton(self, pos: QtCore.QPoint) -> bool:
        return 0 <= pos.y() < self._headerHeight()

    def sizeHint(self) -> QtCore.QSize:
        header = QtCore.QSize(self.fontMetrics().horizontalAdvance(self.text()) + 30, self._headerHeight())
        layout = self.layout()
        if self._collapsed or layout is None:
            return QtCore.QSize(header.width(), header.height() + self._collapsedHeight)
        contents = layout.sizeHint()
        return QtCore.QSize(max(header.width(), contents.width()), header.height() + contents.height())

    def minimumSizeHint(self) -> QtCore.QSize:
        return self.sizeHint()

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtWidgets.QStylePainter(self)
        option = QtWidgets.QStyleOptionButton()
        option.initFrom(self)
        option.rect = QtCore.QRect(0, 0, self.width(), self._headerHeight())
        option.text = ("+ " if self._collapsed else "- ") + self.text()
        painter.drawControl(QtWidgets.QStyle.CE_PushButton, option)


class ctkCollapsibleGroupBox(SignatureConnectMixin, _CollapsibleContents, QtWidgets.QGroupBox):
    """A group box whose check box collapses (hides) its contents."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._initCollapsible()
        self.setCheckable(True)
        self.setChecked(True)
        self.toggled.connect(lambda checked: self.setCollapsed(not checked))

    def _isCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, collapsed: bool) -> None:
        collapsed = bool(collapsed)
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        if self.isChecked() == collapsed:
            self.setChecked(not collapsed)
        self._applyCollapsed(collapsed)

    collapsed = Property(bool, _isCollapsed, setCollapsed)


class ctkDoubleSpinBox(SignatureConnectMixin, QtWidgets.QDoubleSpinBox):
    """CTK's double spin box (value, minimum, maximum, singleStep, decimals, prefix, suffix; ``valueChanged(double)``)."""


class ctkSliderWidget(SignatureConnectMixin, QtWidgets.QWidget):
    """A slider coupled to a double spin box: ``value`` in [``minimum``, ``maximum``], rounded to ``decimals``.

    ``valueChanged(double)`` is emitted when the value changes (``valueIsChanging(double)`` too, while dragging with
    tracking off). Defaults are CTK's: range [0, 99.99], single step 1, page step 10, 2 decimals.
    """

    valueChanged = Signal(float)
    valueIsChanging = Signal(float)

    _MAX_SLIDER_STEPS = 1_000_000_000

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._slider = QtWidgets.QSlider(QtCore.Qt.Horizontal, self)
        self._spinBox = QtWidgets.QDoubleSpinBox(self)
        self._spinBox.setRange(0.0, 99.99)
        self._spinBox.setSingleStep(1.0)
        self._spinBox.setDecimals(2)
        self._pageStep = 10.0
        self._tracking = True
        layout.addWidget(self._slider, 1)
        layout.addWidget(self._spinBox)
        self._syncSlider()
        self._spinBox.valueChanged.connect(self._onSpinBoxValueChanged)
        self._slider.valueChanged.connect(self._onSliderValueChanged)

    # value <-> slider position
    def _sliderSteps(self) -> int:
        span = self._spinBox.maximum() - self._spinBox.minimum()
        step = self._spinBox.singleStep() or 1.0
        if not math.isfinite(span):
            return self._MAX_SLIDER_STEPS
        return int(min(round(span / step), self._MAX_SLIDER_STEPS))

    def _syncSlider(self) -> None:
        blocked = self._slider.blockSignals(True)
        self._slider.setRange(0, self._sliderSteps())
        step = self._spinBox.singleStep() or 1.0
        position = (self._spinBox.value() - self._spinBox.minimum()) / step
        self._slider.setValue(int(round(position)) if math.isfinite(position) else 0)
        self._slider.setPageStep(max(1, int(round(self._pageStep / step))))
        self._slider.blockSignals(blocked)

    def _onSliderValueChanged(self, position: int) -> None:
        self._spinBox.setValue(self._spinBox.minimum() + position * (self._spinBox.singleStep() or 1.0))

    def _onSpinBoxValueChanged(self, value: float) -> None:
        self._syncSlider()
        self.valueIsChanging.emit(value)
        self.valueChanged.emit(value)

    # properties (CTK's names; readable as attributes, writable with set...() or by assignment)
    def _value(self) -> float:
        return self._spinBox.value()

    def setValue(self, value: float) -> None:
        self._spinBox.setValue(float(value))

    value = Property(float, _value, setValue)

    def _minimum(self) -> float:
        return self._spinBox.minimum()

    def setMinimum(self, minimum: float) -> None:
        self._spinBox.setMinimum(float(minimum))
        self._syncSlider()

    minimum = Property(float, _minimum, setMinimum)

    def _maximum(self) -> float:
        return self._spinBox.maximum()

    def setMaximum(self, maximum: float) -> None:
        self._spinBox.setMaximum(float(maximum))
        self._syncSlider()

    maximum = Property(float, _maximum, setMaximum)

    def setRange(self, minimum: float, maximum: float) -> None:
        self._spinBox.setRange(float(minimum), float(maximum))
        self._syncSlider()

    def _singleStep(self) -> float:
        return self._spinBox.singleStep()

    def setSingleStep(self, step: float) -> None:
        self._spinBox.setSingleStep(float(step))
        self._syncSlider()

    singleStep = Property(float, _singleStep, setSingleStep)

    def _getPageStep(self) -> float:
        return self._pageStep

    def setPageStep(self, step: float) -> None:
        self._pageStep = float(step)
        self._syncSlider()

    pageStep = Property(float, _getPageStep, setPageStep)

    def _decimals(self) -> int:
        return self._spinBox.decimals()

    def setDecimals(self, decimals: int) -> None:
        self._spinBox.setDecimals(int(decimals))
        self._syncSlider()

    decimals = Property(int, _decimals, setDecimals)

    def _prefix(self) -> str:
        return self._spinBox.prefix()

    def setPrefix(self, prefix: str) -> None:
        self._spinBox.setPrefix(prefix)

    prefix = Property(str, _prefix, setPrefix)

    def _suffix(self) -> str:
        return self._spinBox.suffix()

    def setSuffix(self, suffix: str) -> None:
        self._spinBox.setSuffix(suffix)

    suffix = Property(str, _suffix, setSuffix)

    def _getTracking(self) -> bool:
        return self._tracking

    def setTracking(self, tracking: bool) -> None:
        self._tracking = bool(tracking)
        self._slider.setTracking(self._tracking)

    tracking = Property(bool, _getTracking, setTracking)

    def _spinBoxVisible(self) -> bool:
        return not self._spinBox.isHidden()

    def setSpinBoxVisible(self, visible: bool) -> None:
        self._spinBox.setVisible(bool(visible))

    spinBoxVisible = Property(bool, _spinBoxVisible, setSpinBoxVisible)

    def reset(self) -> None:
        self.setValue(0.0)

    def slider(self) -> QtWidgets.QSlider:
        return self._slider

    def spinBox(self) -> QtWidgets.QDoubleSpinBox:
        return self._spinBox


class ctkRangeWidget(SignatureConnectMixin, QtWidgets.QWidget):
    """Two coupled spin boxes holding ``minimumValue`` <= ``maximumValue`` within [``minimum``, ``maximum``]."""

    valuesChanged = Signal(float, float)
    minimumValueChanged = Signal(float)
    maximumValueChanged = Signal(float)
    rangeChanged = Signal(float, float)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._minimumSpinBox = QtWidgets.QDoubleSpinBox(self)
        self._maximumSpinBox = QtWidgets.QDoubleSpinBox(self)
        for spinBox in (self._minimumSpinBox, self._maximumSpinBox):
            spinBox.setRange(0.0, 99.99)
            spinBox.setDecimals(2)
            layout.addWidget(spinBox)
        self._maximumSpinBox.setValue(99.99)
        self._minimumSpinBox.valueChanged.connect(self._onMinimumChanged)
        self._maximumSpinBox.valueChanged.connect(self._onMaximumChanged)

    def _onMinimumChanged(self, value: float) -> None:
        if value > self._maximumSpinBox.value():
            self._maximumSpinBox.setValue(value)
        self.minimumValueChanged.emit(value)
        self.valuesChanged.emit(value, self._maximumSpinBox.value())

    def _onMaximumChanged(self, value: float) -> None:
        if value < self._minimumSpinBox.value():
            self._minimumSpinBox.setValue(value)
        self.maximumValueChanged.emit(value)
        self.valuesChanged.emit(self._minimumSpinBox.value(), value)

    def _minimumValue(self) -> float:
        return self._minimumSpinBox.value()

    def setMinimumValue(self, value: float) -> None:
        self._minimumSpinBox.setValue(float(value))

    minimumValue = Property(float, _minimumValue, setMinimumValue)

    def _maximumValue(self) -> float:
        return self._maximumSpinBox.value()

    def setMaximumValue(self, value: float) -> None:
        self._maximumSpinBox.setValue(float(value))

    maximumValue = Property(float, _maximumValue, setMaximumValue)

    def setValues(self, minimumValue: float, maximumValue: float) -> None:
        low, high = sorted((float(minimumValue), float(maximumValue)))
        self._maximumSpinBox.setValue(high)
        self._minimumSpinBox.setValue(low)

    def _minimum(self) -> float:
        return self._minimumSpinBox.minimum()

    def setMinimum(self, minimum: float) -> None:
        self.setRange(minimum, max(float(minimum), self._maximum()))

    minimum = Property(float, _minimum, setMinimum)

    def _maximum(self) -> float:
        return self._maximumSpinBox.maximum()

    def setMaximum(self, maximum: float) -> None:
        self.setRange(min(float(maximum), self._minimum()), maximum)

    maximum = Property(float, _maximum, setMaximum)

    def setRange(self, minimum: float, maximum: float) -> None:
        for spinBox in (self._minimumSpinBox, self._maximumSpinBox):
            spinBox.setRange(float(minimum), float(maximum))
        self.rangeChanged.emit(float(minimum), float(maximum))

    def _singleStep(self) -> float:
        return self._minimumSpinBox.singleStep()

    def setSingleStep(self, step: float) -> None:
        for spinBox in (self._minimumSpinBox, self._maximumSpinBox):
            spinBox.setSingleStep(float(step))

    singleStep = Property(float, _singleStep, setSingleStep)

    def _decimals(self) -> int:
        return self._minimumSpinBox.decimals()

    def setDecimals(self, decimals: int) -> None:
        for spinBox in (self._minimumSpinBox, self._maximumSpinBox):
            spinBox.setDecimals(int(decimals))

    decimals = Property(int, _decimals, setDecimals)


class ctkPathLineEdit(SignatureConnectMixin, QtWidgets.QWidget):
    """A line edit holding a file or directory path, with a browse button.

    ``filters`` takes ctkPathLineEdit's flag values (``Dirs``, ``Files``, ``Readable``...; designer ``<set>`` values are
    translated by the runtime's UI loader); ``nameFilters`` the file dialog's patterns.
    """

    currentPathChanged = Signal(str)
    validInputChanged = Signal(bool)

    Dirs, Files, Drives, NoSymLinks = 0x001, 0x002, 0x004, 0x008
    AllEntries = Dirs | Files | Drives
    Readable, Writable, Executable = 0x010, 0x020, 0x040
    Modified, Hidden, System = 0x080, 0x100, 0x200
    AllDirs, CaseSensitive, NoDotAndDotDot = 0x400, 0x800, 0x1000
    NoFilter = -1

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._lineEdit = QtWidgets.QLineEdit(self)
        self._browseButton = QtWidgets.QToolButton(self)
        self._browseButton.setText("...")
        layout.addWidget(self._lineEdit, 1)
        layout.addWidget(self._browseButton)
        self._filters = self.AllEntries
        self._nameFilters: List[str] = []
        self._settingKey = ""
        self._history: List[str] = []
        self._lineEdit.textChanged.connect(self.currentPathChanged.emit)
        self._browseButton.clicked.connect(self.browse)

    def _currentPath(self) -> str:
        return self._lineEdit.text()

    def setCurrentPath(self, path: str) -> None:
        self._lineEdit.setText(str(path))

    currentPath = Property(str, _currentPath, setCurrentPath)

    def _getFilters(self) -> int:
        return self._filters

    def setFilters(self, filters: int) -> None:
        self._filters = int(filters)

    filters = Property(int, _getFilters, setFilters)

    def _getNameFilters(self) -> List[str]:
        return list(self._nameFilters)

    def setNameFilters(self, nameFilters: Sequence[str]) -> None:
        self._nameFilters = [str(f) for f in nameFilters]

    nameFilters = Property("QStringList", _getNameFilters, setNameFilters)

    def _getSettingKey(self) -> str:
        return self._settingKey

    def setSettingKey(self, key: str) -> None:
        self._settingKey = str(key)

    settingKey = Property(str, _getSettingKey, setSettingKey)

    def _showBrowseButton(self) -> bool:
        return not self._browseButton.isHidden()

    def setShowBrowseButton(self, visible: bool) -> None:
        self._browseButton.setVisible(bool(visible))

    showBrowseButton = Property(bool, _showBrowseButton, setShowBrowseButton)

    def addCurrentPathToHistory(self) -> None:
        path = self._currentPath()
        if path and path not in self._history:
            self._history.insert(0, path)

    def browse(self) -> None:
        """Ask for a path with a file dialog (directory dialog when ``filters`` has ``Dirs`` but not ``Files``)."""
        if self._filters & self.Dirs and not self._filters & self.Files:
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Select a directory", self._currentPath())
        elif self._filters & self.Writable:
            path = QtWidgets.QFileDialog.getSaveFileName(self, "Select a file", self._currentPath(),
                                                         ";;".join(self._nameFilters))[0]
        else:
            path = QtWidgets.QFileDialog.getOpenFileName(self, "Select a file", self._currentPath(),
                                                         ";;".join(self._nameFilters))[0]
        if path:
            self.setCurrentPath(path)

    DESIGNER_ENUMS = {"filters": {f"ctkPathLineEdit::{name}": value for name, value in (
        ("Dirs", Dirs), ("Files", Files), ("Drives", Drives), ("NoSymLinks", NoSymLinks), ("AllEntries", AllEntries),
        ("Readable", Readable), ("Writable", Writable), ("Executable", Executable), ("Modified", Modified),
        ("Hidden", Hidden), ("System", System), ("AllDirs", AllDirs), ("CaseSensitive", CaseSensitive),
        ("NoDotAndDotDot", NoDotAndDotDot), ("NoFilter", NoFilter))}}


class ctkDirectoryButton(SignatureConnectMixin, QtWidgets.QWidget):
    """A button showing a directory and opening a directory dialog; ``directory`` holds the path."""

    directoryChanged = Signal(str)
    directorySelected = Signal(str)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._button = QtWidgets.QPushButton(self)
        layout.addWidget(self._button)
        self._directory = ""
        self._caption = "Select a directory"
        self._button.clicked.connect(self.browse)

    def _getDirectory(self) -> str:
        return self._directory

    def setDirectory(self, directory: str) -> None:
        directory = str(directory)
        changed = directory != self._directory
        self._directory = directory
        self._button.setText(directory)
        if changed:
            self.directoryChanged.emit(directory)
        self.directorySelected.emit(directory)

    directory = Property(str, _getDirectory, setDirectory)

    def _getCaption(self) -> str:
        return self._caption

    def setCaption(self, caption: str) -> None:
        self._caption = str(caption)

    caption = Property(str, _getCaption, setCaption)

    def browse(self) -> None:
        directory = QtWidgets.QFileDialog.getExistingDirectory(self, self._caption, self._directory)
        if directory:
            self.setDirectory(directory)


class ctkCheckBox(SignatureConnectMixin, QtWidgets.QCheckBox):
    """CTK's check box (a QCheckBox with an optional indicator icon)."""


class ctkComboBox(SignatureConnectMixin, QtWidgets.QComboBox):
    """A combo box that can show ``defaultText`` instead of the current item (``forceDefault``)."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._defaultText = ""
        self._forceDefault = False

    def _getDefaultText(self) -> str:
        return self._defaultText

    def setDefaultText(self, text: str) -> None:
        self._defaultText = str(text)
        self.setPlaceholderText(self._defaultText)

    defaultText = Property(str, _getDefaultText, setDefaultText)

    def _getForceDefault(self) -> bool:
        return self._forceDefault

    def setForceDefault(self, force: bool) -> None:
        self._forceDefault = bool(force)

    forceDefault = Property(bool, _getForceDefault, setForceDefault)


class ctkCheckableComboBox(SignatureConnectMixin, QtWidgets.QComboBox):
    """A combo box whose items carry check boxes; ``checkedIndexesChanged()`` fires when the checked set changes."""

    checkedIndexesChanged = Signal()

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self.model().rowsInserted.connect(self._makeRowsCheckable)
        self.model().dataChanged.connect(self._onDataChanged)

    def _makeRowsCheckable(self, parent: QtCore.QModelIndex, first: int, last: int) -> None:
        model = self.model()
        for row in range(first, last + 1):
            item = model.item(row)
            if item is not None:
                item.setFlags(item.flags() | QtCore.Qt.ItemIsUserCheckable)
                if item.data(QtCore.Qt.CheckStateRole) is None:
                    item.setData(QtCore.Qt.Unchecked, QtCore.Qt.CheckStateRole)

    def _onDataChanged(self, topLeft: QtCore.QModelIndex, bottomRight: QtCore.QModelIndex, roles: Sequence[int] = ()) -> None:
        if not roles or QtCore.Qt.CheckStateRole in roles:
            self.checkedIndexesChanged.emit()

    def _index(self, indexOrRow: Any) -> QtCore.QModelIndex:
        return indexOrRow if isinstance(indexOrRow, QtCore.QModelIndex) else self.model().index(int(indexOrRow), 0)

    def checkState(self, index: Any) -> QtCore.Qt.CheckState:
        return QtCore.Qt.CheckState(self.model().data(self._index(index), QtCore.Qt.CheckStateRole))

    def setCheckState(self, index: Any, state: QtCore.Qt.CheckState) -> None:
        self.model().setData(self._index(index), QtCore.Qt.CheckState(state), QtCore.Qt.CheckStateRole)

    def checkedIndexes(self) -> List[QtCore.QModelIndex]:
        return [self.model().index(row, 0) for row in range(self.count())
                if self.checkState(row) == QtCore.Qt.Checked]

    def allChecked(self) -> bool:
        return len(self.checkedIndexes()) == self.count()

    def noneChecked(self) -> bool:
        return not self.checkedIndexes()


class ctkMenuButton(SignatureConnectMixin, QtWidgets.QPushButton):
    """A push button with a drop-down menu (``setMenu``)."""


class ctkColorPickerButton(SignatureConnectMixin, QtWidgets.QPushButton):
    """A button holding a ``color``; clicking it opens a colour dialog."""

    colorChanged = Signal(QtGui.QColor)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._color = QtGui.QColor(QtCore.Qt.black)
        self.clicked.connect(self.changeColor)

    def _getColor(self) -> QtGui.QColor:
        return QtGui.QColor(self._color)

    def setColor(self, color: QtGui.QColor) -> None:
        color = QtGui.QColor(color)
        if color != self._color:
            self._color = color
            self.colorChanged.emit(QtGui.QColor(color))

    color = Property(QtGui.QColor, _getColor, setColor)

    def changeColor(self) -> None:
        color = QtWidgets.QColorDialog.getColor(self._color, self)
        if color.isValid():
            self.setColor(color)


class ctkMessageBox(SignatureConnectMixin, QtWidgets.QMessageBox):
    """A message box with a "don't show again" setting key."""

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._dontShowAgainSettingsKey = ""
        self._dontShowAgainVisible = False

    def _getKey(self) -> str:
        return self._dontShowAgainSettingsKey

    def setDontShowAgainSettingsKey(self, key: str) -> None:
        self._dontShowAgainSettingsKey = str(key)

    dontShowAgainSettingsKey = Property(str, _getKey, setDontShowAgainSettingsKey)

    def _getVisible(self) -> bool:
        return self._dontShowAgainVisible

    def setDontShowAgainVisible(self, visible: bool) -> None:
        self._dontShowAgainVisible = bool(visible)

    dontShowAgainVisible = Property(bool, _getVisible, setDontShowAgainVisible)


DESIGNER_CLASSES = (
    ctkCollapsibleButton, ctkCollapsibleGroupBox, ctkSliderWidget, ctkDoubleSpinBox, ctkRangeWidget, ctkPathLineEdit,
    ctkDirectoryButton, ctkCheckBox, ctkComboBox, ctkCheckableComboBox, ctkMenuButton, ctkColorPickerButton,
)
