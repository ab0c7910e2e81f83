"""Stand-ins for Slicer's MRML widgets (``slicer.qMRMLNodeComboBox`` ...), registered with the ``.ui`` loader.

They have the class names, Qt properties, signals and slots that Slicer's Qt Designer writes and module code calls, and
they work on the real MRML scene of ``slicer-core``: the node combo box lists the scene's nodes of its ``nodeTypes`` and
follows nodes being added, removed, renamed or hidden through VTK observers, as qMRMLNodeComboBox does.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import shiboken6
import vtk
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Property, Signal

import slicer

from .pythonqt import SignatureConnectMixin

__all__ = [
    "qMRMLWidget",
    "qSlicerWidget",
    "qMRMLNodeComboBox",
    "qMRMLSegmentSelectorWidget",
    "qMRMLTableView",
]


class _SceneObservations:
    """VTK observers calling methods of one widget, removed together (the widgets' VTKObservationMixin).

    Observers hold the widget weakly: an observed scene or node never keeps a widget alive (a widget whose last
    reference went away in the middle of a scene callback would otherwise be deleted under Qt's feet), and a deleted
    widget is never called back. All observers are removed when the widget's C++ object is destroyed.
    """

    def __init__(self, owner: QtCore.QObject) -> None:
        self._tags: List[Tuple[Any, int]] = []
        owner.destroyed.connect(lambda *args, observations=self: observations.removeAll())

    def add(self, obj: Any, event: Any, method: Callable, withNode: bool = False) -> None:
        """Observe ``event`` on ``obj`` with the bound ``method``; with ``withNode`` it also receives the event's node."""
        reference = weakref.WeakMethod(method)

        def dispatch(caller: Any, eventName: Any, node: Any = None) -> None:
            target = reference()
            if target is None or not shiboken6.isValid(target.__self__):
                return
            if withNode:
                target(caller, eventName, node)
            else:
                target(caller, eventName)

        if withNode:
            dispatch = vtk.calldata_type(vtk.VTK_OBJECT)(dispatch)
        self._tags.append((obj, obj.AddObserver(event, dispatch)))

    def removeAll(self, obj: Any = None) -> None:
        kept = []
        for observed, tag in self._tags:
            if obj is None or observed is obj:
                observed.RemoveObserver(tag)
            else:
                kept.append((observed, tag))
        self._tags = kept


class qMRMLWidget(SignatureConnectMixin, QtWidgets.QWidget):
    """A widget holding a MRML scene; ``mrmlSceneChanged(vtkMRMLScene*)`` is emitted when the scene changes.

    A Slicer ``.ui`` file connects its top-level qMRMLWidget's ``mrmlSceneChanged(vtkMRMLScene*)`` to each MRML widget's
    ``setMRMLScene(vtkMRMLScene*)``; the runtime's loader makes those connections, so ``uiWidget.setMRMLScene(scene)``
    reaches every selector exactly as in Slicer.
    """

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._mrmlScene = None

    def mrmlScene(self) -> Any:
        return self._mrmlScene

    def setMRMLScene(self, scene: Any) -> None:
        if scene is self._mrmlScene:
            return
        self._mrmlScene = scene
        self.mrmlSceneChanged.emit(scene)


class qSlicerWidget(qMRMLWidget):
    """Slicer's base widget (a qMRMLWidget that modules derive from)."""


class qMRMLNodeComboBox(SignatureConnectMixin, QtWidgets.QWidget):
    """Selector of a MRML node of given ``nodeTypes`` that follows the scene.

    Behaviour matching qMRMLNodeComboBox: nodes are listed in scene order; nodes hidden from editors are left out unless
    ``showHidden``; with ``noneEnabled`` a "None" item comes first; with ``noneEnabled`` false the first matching node
    is selected as soon as one exists; when the current node is removed the next item is selected; ``addNode()`` creates
    a node of the first type named from ``baseName`` (selecting it when ``selectNodeUponCreation``). The widget is
    disabled until a scene is set. ``currentNodeChanged(vtkMRMLNode*)``, ``currentNodeChanged(bool)`` and
    ``currentNodeIDChanged(QString)`` are emitted on every change of the current node. As in Slicer,
    ``currentNodeID`` and ``nodeTypes`` are properties (``combo.currentNodeID``), ``currentNode()`` is a method.
    """

    currentNodeChanged = Signal((object,), (bool,))
    currentNodeIDChanged = Signal(str)
    nodeActivated = Signal(object)
    nodeAdded = Signal(object)
    nodeAddedByUser = Signal(object)
    nodeAddedByUserAction = Signal(object)
    nodeAboutToBeRemoved = Signal(object)
    currentNodeRenamed = Signal(str)
    nodeAboutToBeEdited = Signal(object)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._comboBox = QtWidgets.QComboBox(self)
        layout.addWidget(self._comboBox)
        self._scene = None
        self._sceneObservations = _SceneObservations(self)
        self._nodeObservations = _SceneObservations(self)
        self._nodeTypes: List[str] = []
        self._hideChildNodeTypes: List[str] = []
        self._attributeFilters: List[Tuple[str, str, Any]] = []
        self._baseNames: Dict[str, str] = {}
        self._showHidden = False
        self._showChildNodeTypes = True
        self._noneEnabled = False
        self._noneDisplay = "None"
        self._addEnabled = True
        self._removeEnabled = True
        self._editEnabled = False
        self._renameEnabled = False
        self._selectNodeUponCreation = True
        self._interactionNodeSingletonTag = "Singleton"
        self._lastNodeID = ""
        self._populating = False
        self._requestedNodeID = ""
        self.setEnabled(False)
        self._comboBox.currentIndexChanged.connect(self._onCurrentIndexChanged)
        self._comboBox.activated.connect(self._onActivated)

    # ------------------------------------------------------------------------------------------------ scene
    def mrmlScene(self) -> Any:
        return self._scene

    def setMRMLScene(self, scene: Any) -> None:
        if scene is self._scene:
            return
        self._sceneObservations.removeAll()
        self._scene = scene
        if scene is not None:
            observe = self._sceneObservations.add
            observe(scene, slicer.vtkMRMLScene.NodeAddedEvent, self._onNodeAdded, withNode=True)
            observe(scene, slicer.vtkMRMLScene.NodeAboutToBeRemovedEvent, self._onNodeAboutToBeRemoved, withNode=True)
            for event in ("EndCloseEvent", "EndBatchProcessEvent", "EndImportEvent", "EndRestoreEvent"):
                observe(scene, getattr(slicer.vtkMRMLScene, event), self._onSceneReset)
        self._repopulate(keepID=self._requestedNodeID or self._lastNodeID)
        self._requestedNodeID = ""
        self.setEnabled(scene is not None)

    def _onSceneReset(self, caller: Any = None, event: Any = None) -> None:
        self._repopulate(keepID=self._lastNodeID)

    def _onNodeAdded(self, caller: Any, event: Any, node: Any) -> None:
        if self._scene is None or self._scene.IsBatchProcessing() or not self._isNodeTypeMatch(node):
            return
        self._observeNode(node)
        if self._isShown(node):
            self._comboBox.addItem(self._displayName(node), node.GetID())
            self.nodeAdded.emit(node)

    def _onNodeAboutToBeRemoved(self, caller: Any, event: Any, node: Any) -> None:
        self._nodeObservations.removeAll(node)
        row = self._rowOf(node.GetID())
        if row >= 0:
            self.nodeAboutToBeRemoved.emit(node)
            self._comboBox.removeItem(row)

    def _observeNode(self, node: Any) -> None:
        self._nodeObservations.add(node, vtk.vtkCommand.ModifiedEvent, self._onNodeModified)

    def _onNodeModified(self, node: Any, event: Any) -> None:
        row = self._rowOf(node.GetID())
        shown = self._isShown(node)
        if row >= 0 and not shown:
            self._comboBox.removeItem(row)
        elif row >= 0:
            if self._comboBox.itemText(row) != self._displayName(node):
                self._comboBox.setItemText(row, self._displayName(node))
                if row == self._comboBox.currentIndex():
                    self.currentNodeRenamed.emit(node.GetName() or "")
        elif shown:
            self._repopulate(keepID=self._lastNodeID)

    # ------------------------------------------------------------------------------------------------ filtering
    def _isNodeTypeMatch(self, node: Any) -> bool:
        if self._showChildNodeTypes:
            matches = any(node.IsA(nodeType) for nodeType in self._nodeTypes)
        else:
            matches = node.GetClassName() in self._nodeTypes
        return matches and not any(node.IsA(hidden) for hidden in self._hideChildNodeTypes)

    def _isShown(self, node: Any) -> bool:
        if not self._isNodeTypeMatch(node):
            return False
        if not self._showHidden and node.GetHideFromEditors():
            return False
        for nodeType, attribute, value in self._attributeFilters:
            if node.IsA(nodeType):
                actual = node.GetAttribute(attribute)
                if actual is None or (value is not None and actual != str(value)):
                    return False
        return True

    @staticmethod
    def _displayName(node: Any) -> str:
        return node.GetName() or node.GetID()

    def _rowOf(self, nodeID: Optional[str]) -> int:
        if not nodeID:
            return 0 if self._noneEnabled else -1
        return self._comboBox.findData(nodeID)

    def _repopulate(self, keepID: str = "") -> None:
        self._populating = True
        try:
            self._nodeObservations.removeAll()
            self._comboBox.clear()
            if self._noneEnabled:
                self._comboBox.addItem(self._noneDisplay, None)
            if self._scene is not None:
                for index in range(self._scene.GetNumberOfNodes()):
                    node = self._scene.GetNthNode(index)
                    if self._isNodeTypeMatch(node):
                        self._observeNode(node)
                        if self._isShown(node):
                            self._comboBox.addItem(self._displayName(node), node.GetID())
            row = self._rowOf(keepID)
            if row < 0 and not self._noneEnabled and self._comboBox.count() > 0:
                row = 0
            self._comboBox.setCurrentIndex(row)
        finally:
            self._populating = False
        self._onCurrentIndexChanged(self._comboBox.currentIndex())

    # ------------------------------------------------------------------------------------------------ selection
    def _onCurrentIndexChanged(self, index: int) -> None:
        if self._populating:
            return
        node = self.currentNode()
        nodeID = node.GetID() if node is not None else ""
        if nodeID == self._lastNodeID:
            return
        self._lastNodeID = nodeID
        self.currentNodeChanged[object].emit(node)
        self.currentNodeChanged[bool].emit(node is not None)
        self.currentNodeIDChanged.emit(nodeID)

    def _onActivated(self, index: int) -> None:
        self.nodeActivated.emit(self.currentNode())

    def currentNode(self) -> Any:
        nodeID = self._comboBox.currentData()
        if not nodeID or self._scene is None:
            return None
        return self._scene.GetNodeByID(nodeID)

    def _currentNodeID(self) -> str:
        node = self.currentNode()
        return node.GetID() if node is not None else ""

    def setCurrentNodeID(self, nodeID: str) -> None:
        if self._scene is None:
            self._requestedNodeID = nodeID or ""
            return
        self._comboBox.setCurrentIndex(self._rowOf(nodeID))  # an unknown ID selects nothing (-1), as in Slicer

    currentNodeID = Property(str, _currentNodeID, setCurrentNodeID, notify=currentNodeIDChanged)

    def setCurrentNode(self, node: Any) -> None:
        if isinstance(node, str):
            self.setCurrentNodeID(node)
        else:
            self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeIndex(self, index: int) -> None:
        self._comboBox.setCurrentIndex(index + (1 if self._noneEnabled else 0))

    def nodeCount(self) -> int:
        return self._comboBox.count() - (1 if self._noneEnabled else 0)

    def nodeFromIndex(self, index: int) -> Any:
        nodeID = self._comboBox.itemData(index + (1 if self._noneEnabled else 0))
        return self._scene.GetNodeByID(nodeID) if nodeID and self._scene is not None else None

    def nodes(self) -> List[Any]:
        return [self.nodeFromIndex(i) for i in range(self.nodeCount())]

    # ------------------------------------------------------------------------------------------------ actions
    def addNode(self, nodeType: Optional[str] = None) -> Any:
        """Create a node of ``nodeType`` (default: the first of ``nodeTypes``) named after ``baseName``."""
        if self._scene is None or not self._nodeTypes:
            return None
        nodeType = nodeType or self._nodeTypes[0]
        if nodeType not in self._nodeTypes:
            raise ValueError(f"addNode: {nodeType} is not one of this selector's node types {self._nodeTypes}")
        node = self._scene.AddNewNodeByClass(nodeType, self._scene.GenerateUniqueName(self.baseNameFor(nodeType)))
        for filterType, attribute, value in self._attributeFilters:
            if node.IsA(filterType) and value is not None:
                node.SetAttribute(attribute, str(value))
        if node.IsA("vtkMRMLDisplayableNode"):
            node.CreateDefaultDisplayNodes()
        if self._selectNodeUponCreation:
            self.setCurrentNode(node)
        self.nodeAddedByUser.emit(node)
        self.nodeAddedByUserAction.emit(node)
        return node

    def removeCurrentNode(self) -> None:
        node = self.currentNode()
        if node is not None:
            self._scene.RemoveNode(node)

    def renameCurrentNode(self) -> None:
        node = self.currentNode()
        if node is None:
            return
        name, accepted = QtWidgets.QInputDialog.getText(self, "Rename", "New name:", text=node.GetName() or "")
        if accepted and name:
            node.SetName(name)

    def editCurrentNode(self) -> None:
        self.nodeAboutToBeEdited.emit(self.currentNode())

    def addAttribute(self, nodeType: str, attributeName: str, attributeValue: Any = None) -> None:
        self._attributeFilters.append((nodeType, attributeName, attributeValue))
        self._repopulate(keepID=self._lastNodeID)

    def removeAttribute(self, nodeType: str, attributeName: str) -> None:
        self._attributeFilters = [f for f in self._attributeFilters if (f[0], f[1]) != (nodeType, attributeName)]
        self._repopulate(keepID=self._lastNodeID)

    def baseNameFor(self, nodeType: str) -> str:
        if nodeType in self._baseNames:
            return self._baseNames[nodeType]
        tag = self._scene.GetTagByClassName(nodeType) if self._scene is not None else None
        return tag or nodeType.replace("vtkMRML", "").replace("Node", "")

    def setBaseName(self, baseName: str, nodeType: str = "") -> None:
        for typeName in ([nodeType] if nodeType else self._nodeTypes):
            self._baseNames[typeName] = str(baseName)

    def _baseName(self) -> str:
        return self.baseNameFor(self._nodeTypes[0]) if self._nodeTypes else ""

    baseName = Property(str, _baseName, setBaseName)

    # ------------------------------------------------------------------------------------------------ properties
    def _getNodeTypes(self) -> List[str]:
        return list(self._nodeTypes)

    def setNodeTypes(self, nodeTypes: Sequence[str]) -> None:
        self._nodeTypes = [str(t) for t in nodeTypes]
        self._repopulate(keepID=self._lastNodeID)

    nodeTypes = Property("QStringList", _getNodeTypes, setNodeTypes)

    def _getHideChildNodeTypes(self) -> List[str]:
        return list(self._hideChildNodeTypes)

    def setHideChildNodeTypes(self, nodeTypes: Sequence[str]) -> None:
        self._hideChildNodeTypes = [str(t) for t in nodeTypes]
        self._repopulate(keepID=self._lastNodeID)

    hideChildNodeTypes = Property("QStringList", _getHideChildNodeTypes, setHideChildNodeTypes)

    def _getShowHidden(self) -> bool:
        return self._showHidden

    def setShowHidden(self, show: bool) -> None:
        self._showHidden = bool(show)
        self._repopulate(keepID=self._lastNodeID)

    showHidden = Property(bool, _getShowHidden, setShowHidden)

    def _getShowChildNodeTypes(self) -> bool:
        return self._showChildNodeTypes

    def setShowChildNodeTypes(self, show: bool) -> None:
        self._showChildNodeTypes = bool(show)
        self._repopulate(keepID=self._lastNodeID)

    showChildNodeTypes = Property(bool, _getShowChildNodeTypes, setShowChildNodeTypes)

    def _getNoneEnabled(self) -> bool:
        return self._noneEnabled

    def setNoneEnabled(self, enabled: bool) -> None:
        self._noneEnabled = bool(enabled)
        self._repopulate(keepID=self._lastNodeID)

    noneEnabled = Property(bool, _getNoneEnabled, setNoneEnabled)

    def _getNoneDisplay(self) -> str:
        return self._noneDisplay

    def setNoneDisplay(self, text: str) -> None:
        self._noneDisplay = str(text)
        if self._noneEnabled:
            self._comboBox.setItemText(0, self._noneDisplay)

    noneDisplay = Property(str, _getNoneDisplay, setNoneDisplay)

    def _flagProperty(attribute: str) -> Property:  # noqa: N805 - a class-body helper, not a method
        def getter(self: "qMRMLNodeComboBox") -> bool:
            return getattr(self, attribute)

        def setter(self: "qMRMLNodeComboBox", value: bool) -> None:
            setattr(self, attribute, bool(value))

        return Property(bool, getter, setter)

    addEnabled = _flagProperty("_addEnabled")
    removeEnabled = _flagProperty("_removeEnabled")
    editEnabled = _flagProperty("_editEnabled")
    renameEnabled = _flagProperty("_renameEnabled")
    selectNodeUponCreation = _flagProperty("_selectNodeUponCreation")
    del _flagProperty

    def setAddEnabled(self, enabled: bool) -> None:
        self._addEnabled = bool(enabled)

    def setRemoveEnabled(self, enabled: bool) -> None:
        self._removeEnabled = bool(enabled)

    def setEditEnabled(self, enabled: bool) -> None:
        self._editEnabled = bool(enabled)

    def setRenameEnabled(self, enabled: bool) -> None:
        self._renameEnabled = bool(enabled)

    def setSelectNodeUponCreation(self, select: bool) -> None:
        self._selectNodeUponCreation = bool(select)

    def _getInteractionNodeSingletonTag(self) -> str:
        return self._interactionNodeSingletonTag

    def setInteractionNodeSingletonTag(self, tag: str) -> None:
        self._interactionNodeSingletonTag = str(tag)

    interactionNodeSingletonTag = Property(str, _getInteractionNodeSingletonTag, setInteractionNodeSingletonTag)

    def comboBox(self) -> QtWidgets.QComboBox:
        return self._comboBox


class qMRMLSegmentSelectorWidget(SignatureConnectMixin, QtWidgets.QWidget):
    """Selector of a segmentation node and one of its segments (a minimal qMRMLSegmentSelectorWidget).

    ``currentNodeChanged(vtkMRMLNode*)`` follows the segmentation selector, ``currentSegmentChanged(QString)`` the
    segment (by ID). The segment list follows segments being added, removed or renamed.
    """

    currentNodeChanged = Signal(object)
    currentSegmentChanged = Signal(str)

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._nodeComboBox = qMRMLNodeComboBox(self)
        self._nodeComboBox.setNodeTypes(["vtkMRMLSegmentationNode"])
        self._nodeComboBox.setNoneEnabled(True)
        self._segmentComboBox = QtWidgets.QComboBox(self)
        layout.addWidget(self._nodeComboBox)
        layout.addWidget(self._segmentComboBox)
        self._observations = _SceneObservations(self)
        self._segmentationNode = None
        self._nodeComboBox.currentNodeChanged[object].connect(self._onNodeChanged)
        self._segmentComboBox.currentIndexChanged.connect(self._onSegmentIndexChanged)

    def setMRMLScene(self, scene: Any) -> None:
        self._nodeComboBox.setMRMLScene(scene)

    def mrmlScene(self) -> Any:
        return self._nodeComboBox.mrmlScene()

    def currentNode(self) -> Any:
        return self._nodeComboBox.currentNode()

    def setCurrentNode(self, node: Any) -> None:
        self._nodeComboBox.setCurrentNode(node)

    def _currentNodeID(self) -> str:
        return self._nodeComboBox.currentNodeID

    def setCurrentNodeID(self, nodeID: str) -> None:
        self._nodeComboBox.setCurrentNodeID(nodeID)

    currentNodeID = Property(str, _currentNodeID, setCurrentNodeID)

    def _getNoneEnabled(self) -> bool:
        return self._nodeComboBox.noneEnabled

    def setNoneEnabled(self, enabled: bool) -> None:
        self._nodeComboBox.setNoneEnabled(enabled)

    noneEnabled = Property(bool, _getNoneEnabled, setNoneEnabled)

    def _getSelectorVisible(self) -> bool:
        return not self._nodeComboBox.isHidden()

    def setSegmentationNodeSelectorVisible(self, visible: bool) -> None:
        self._nodeComboBox.setVisible(bool(visible))

    segmentationNodeSelectorVisible = Property(bool, _getSelectorVisible, setSegmentationNodeSelectorVisible)

    def currentSegmentID(self) -> str:
        return self._segmentComboBox.currentData() or ""

    def setCurrentSegmentID(self, segmentID: str) -> None:
        self._segmentComboBox.setCurrentIndex(self._segmentComboBox.findData(segmentID))

    def segmentIDs(self) -> List[str]:
        return [self._segmentComboBox.itemData(i) for i in range(self._segmentComboBox.count())]

    def _onNodeChanged(self, node: Any) -> None:
        self._observations.removeAll()
        self._segmentationNode = node
        if node is not None:
            for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.SegmentModified):
                self._observations.add(node, event, self._refreshSegments)
        self._refreshSegments()
        self.currentNodeChanged.emit(node)

    def _refreshSegments(self, caller: Any = None, event: Any = None) -> None:
        previous = self.currentSegmentID()
        blocked = self._segmentComboBox.blockSignals(True)
        self._segmentComboBox.clear()
        if self._segmentationNode is not None:
            segmentation = self._segmentationNode.GetSegmentation()
            for index in range(segmentation.GetNumberOfSegments()):
                segmentID = segmentation.GetNthSegmentID(index)
                self._segmentComboBox.addItem(segmentation.GetSegment(segmentID).GetName(), segmentID)
        row = self._segmentComboBox.findData(previous) if previous else -1
        self._segmentComboBox.setCurrentIndex(row if row >= 0 else (0 if self._segmentComboBox.count() else -1))
        self._segmentComboBox.blockSignals(blocked)
        if self.currentSegmentID() != previous:
            self.currentSegmentChanged.emit(self.currentSegmentID())

    def _onSegmentIndexChanged(self, index: int) -> None:
        self.currentSegmentChanged.emit(self.currentSegmentID())


class qMRMLTableView(SignatureConnectMixin, QtWidgets.QTableView):
    """Shows a vtkMRMLTableNode's cells (a minimal, read-only qMRMLTableView).

    As in Slicer, ``setMRMLTableNode(node)`` shows a table node and follows its changes, ``mrmlTableNode()`` returns
    it, ``tableModel()`` is the model holding the cells (column names as horizontal headers, values as Slicer shows
    them) and ``model()`` a sort proxy on it; ``transposed`` swaps rows and columns. Editing, copy/paste and plotting
    the selection are not provided.
    """

    def __init__(self, parent: Optional[QtWidgets.QWidget] = None) -> None:
        super().__init__(parent)
        self._scene = None
        self._tableNode = None
        self._transposed = False
        self._observations = _SceneObservations(self)
        self._tableModel = QtGui.QStandardItemModel(self)
        self._proxyModel = QtCore.QSortFilterProxyModel(self)
        self._proxyModel.setSourceModel(self._tableModel)
        self.setModel(self._proxyModel)
        self.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)

    def mrmlScene(self) -> Any:
        return self._scene

    def setMRMLScene(self, scene: Any) -> None:
        self._scene = scene
        if self._tableNode is not None and (scene is None or not scene.IsNodePresent(self._tableNode)):
            self.setMRMLTableNode(None)

    def mrmlTableNode(self) -> Any:
        return self._tableNode

    def setMRMLTableNode(self, node: Any) -> None:
        if node is not None and not node.IsA("vtkMRMLTableNode"):
            node = None
        self._observations.removeAll()
        self._tableNode = node
        if node is not None:
            self._observations.add(node, vtk.vtkCommand.ModifiedEvent, self._refresh)
        self._refresh()

    def tableModel(self) -> Any:
        return self._tableModel

    def sortFilterProxyModel(self) -> Any:
        return self._proxyModel

    def _getTransposed(self) -> bool:
        return self._transposed

    def setTransposed(self, transposed: bool) -> None:
        self._transposed = bool(transposed)
        self._refresh()

    transposed = Property(bool, _getTransposed, setTransposed)

    def _refresh(self, caller: Any = None, event: Any = None) -> None:
        model = self._tableModel
        model.clear()
        table = self._tableNode.GetTable() if self._tableNode is not None else None
        if table is None:
            return
        columns = [table.GetColumnName(c) or "" for c in range(table.GetNumberOfColumns())]
        cells = [[table.GetValue(r, c).ToString() for c in range(len(columns))] for r in range(table.GetNumberOfRows())]
        if self._transposed:
            model.setRowCount(len(columns))
            model.setColumnCount(len(cells))
            model.setVerticalHeaderLabels(columns)
            for r, row in enumerate(cells):
                for c, text in enumerate(row):
                    model.setItem(c, r, QtGui.QStandardItem(text))
        else:
            model.setRowCount(len(cells))
            model.setColumnCount(len(columns))
            model.setHorizontalHeaderLabels(columns)
            for r, row in enumerate(cells):
                for c, text in enumerate(row):
                    model.setItem(r, c, QtGui.QStandardItem(text))


DESIGNER_CLASSES = (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget, qMRMLTableView)
