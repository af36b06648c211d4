"""The "COVIDSeg AI" Segment Editor effect: a COVIDSeg model's lungs, ground-glass opacity,
consolidation or infection, previewed on the views and written into the selected segment.

Preview runs the model on the current slice (the axial slice at the centre of the Red view) or
the whole source volume in a worker thread and shows the mask as a preview segmentation. Apply
writes it through the editor's modifier labelmap (``modifySelectedSegmentByLabelmap``, as one
undoable step), so the editable area, intensity range and overwrite mode apply as with the
built-in effects; with "current slice" only that slice of the segment changes. Cancel stops the
run or discards the preview. The pure parts are ``COVIDSegSlicer.effect_logic``.
"""
import os

import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

CLASS_TITLES = {"infection": "Infection (GGO and consolidation)", "ggo": "Ground-glass opacity",
                "consolidation": "Consolidation", "lungs": "Lungs"}
SCOPE_TITLES = {"slice": "Current slice", "volume": "Whole volume"}
PREVIEW_NAME = "COVIDSeg AI preview"


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "COVIDSeg AI"
        scriptedEffect.perSegment = True  # writes into the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self._runner = None
        self._preview = None  # (source volume node, mask, scope mask) on the source volume's grid
        self._previewNode = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return ("<html>Fill the selected segment with a COVIDSeg model's result.<p>"
                "Choose the class and the scope, click <b>Preview</b>, check the preview on the views, then "
                "<b>Apply</b> (undoable; the editable area and overwrite settings apply) or <b>Cancel</b>.</html>")

    def createCursor(self, widget):
        return slicer.util.mainWindow().cursor  # no painting: keep the normal cursor

    # ------------------------------------------------------------------ options
    def setupOptionsFrame(self):
        from COVIDSegGUI.paths import ensure_library_importable

        ensure_library_importable()
        from COVIDSegGUI.runner import JobRunner
        from COVIDSegSlicer.effect_logic import EFFECT_CLASSES, SCOPES

        self.modelComboBox = qt.QComboBox()
        self.modelComboBox.toolTip = "Model bundle (the COVIDSeg module's “Add model…” imports more)."
        self.classComboBox = qt.QComboBox()
        for name in EFFECT_CLASSES:
            self.classComboBox.addItem(CLASS_TITLES.get(name, name), name)
        self.scopeComboBox = qt.QComboBox()
        for name in SCOPES:
            self.scopeComboBox.addItem(SCOPE_TITLES.get(name, name), name)
        self.minimumIslandSpinBox = qt.QDoubleSpinBox()
        self.minimumIslandSpinBox.setRange(0.0, 100000.0)
        self.minimumIslandSpinBox.suffix = " mm³"
        self.minimumIslandSpinBox.toolTip = "Size threshold: infection islands smaller than this are dropped."
        self.thresholdSpinBox = qt.QDoubleSpinBox()
        self.thresholdSpinBox.setRange(0.0, 0.99)
        self.thresholdSpinBox.singleStep = 0.05
        self.thresholdSpinBox.specialValueText = "model's decision"
        self.thresholdSpinBox.toolTip = ("Probability threshold of the class (lower: larger preview). At the minimum, "
                                         "the model's own decision is used. Not available for the lungs.")
        for label, widget in (("Model:", self.modelComboBox), ("Class:", self.classComboBox),
                              ("Scope:", self.scopeComboBox), ("Threshold:", self.thresholdSpinBox),
                              ("Minimum island:", self.minimumIslandSpinBox)):
            self.scriptedEffect.addLabeledOptionsWidget(label, widget)

        buttons = qt.QWidget()
        layout = qt.QHBoxLayout(buttons)
        layout.setContentsMargins(0, 0, 0, 0)
        self.previewButton = qt.QPushButton("Preview")
        self.applyButton = qt.QPushButton("Apply")
        self.cancelButton = qt.QPushButton("Cancel")
        for button, tip in ((self.previewButton, "Run the model and show its result as a preview."),
                            (self.applyButton, "Write the preview into the selected segment."),
                            (self.cancelButton, "Stop the model run, or discard the preview.")):
            button.toolTip = tip
            button.objectName = self.__class__.__name__ + button.text
            layout.addWidget(button)
        self.scriptedEffect.addOptionsWidget(buttons)
        self.progressBar = qt.QProgressBar()
        self.progressBar.hide()
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        self._runner = JobRunner(self.progressBar, self.statusLabel)

        for combo in (self.modelComboBox, self.classComboBox, self.scopeComboBox):
            combo.connect("currentIndexChanged(int)", self.updateMRMLFromGUI)
        self.minimumIslandSpinBox.connect("valueChanged(double)", self.updateMRMLFromGUI)
        self.thresholdSpinBox.connect("valueChanged(double)", self.updateMRMLFromGUI)
        self.previewButton.connect("clicked()", self.onPreview)
        self.applyButton.connect("clicked()", self.onApply)
        self.cancelButton.connect("clicked()", self.onCancel)

    def setMRMLDefaults(self):
        from COVIDSeg import DEFAULT_MODEL

        self.scriptedEffect.setParameterDefault("Model", DEFAULT_MODEL)
        self.scriptedEffect.setParameterDefault("Class", "infection")
        self.scriptedEffect.setParameterDefault("Scope", "slice")
        self.scriptedEffect.setParameterDefault("MinimumIslandMm3", 10.0)
        self.scriptedEffect.setParameterDefault("Threshold", 0.0)  # 0: the model's decision

    def activate(self):
        """Refresh the model list (bundles may have been added since)."""
        from COVIDSegGUI.models import model_choices

        wasBlocked = self.modelComboBox.blockSignals(True)
        self.modelComboBox.clear()
        for bundle in model_choices(self.scriptedEffect.parameter("Model"))[0]:
            self.modelComboBox.addItem(bundle["name"])
        self.modelComboBox.blockSignals(wasBlocked)
        self.updateGUIFromMRML()

    def updateGUIFromMRML(self):
        widgets = (self.modelComboBox, self.classComboBox, self.scopeComboBox, self.minimumIslandSpinBox,
                   self.thresholdSpinBox)
        wasBlocked = [w.blockSignals(True) for w in widgets]
        self.modelComboBox.currentIndex = max(self.modelComboBox.findText(self.scriptedEffect.parameter("Model")), 0)
        self.classComboBox.currentIndex = max(self.classComboBox.findData(self.scriptedEffect.parameter("Class")), 0)
        self.scopeComboBox.currentIndex = max(self.scopeComboBox.findData(self.scriptedEffect.parameter("Scope")), 0)
        self.minimumIslandSpinBox.value = self.scriptedEffect.doubleParameter("MinimumIslandMm3")
        self.thresholdSpinBox.value = self.scriptedEffect.doubleParameter("Threshold")
        self.thresholdSpinBox.enabled = self.scriptedEffect.parameter("Class") != "lungs"
        for w, blocked in zip(widgets, wasBlocked):
            w.blockSignals(blocked)
        self._updateButtons()

    def updateMRMLFromGUI(self):
        self.scriptedEffect.setParameter("Model", self.modelComboBox.currentText)
        self.scriptedEffect.setParameter("Class", self.classComboBox.currentData)
        self.scriptedEffect.setParameter("Scope", self.scopeComboBox.currentData)
        self.scriptedEffect.setParameter("MinimumIslandMm3", self.minimumIslandSpinBox.value)
        self.scriptedEffect.setParameter("Threshold", self.thresholdSpinBox.value)
        self.thresholdSpinBox.enabled = self.classComboBox.currentData != "lungs"

    def _updateButtons(self):
        running = self._runner is not None and self._runner.running
        self.previewButton.enabled = not running
        self.applyButton.enabled = self._preview is not None and not running
        self.cancelButton.enabled = running or self._preview is not None

    def deactivate(self):
        if self._runner is not None:
            self._runner.cleanup()
        self._discardPreview()

    # ------------------------------------------------------------------ preview
    def _sourceVolumeNode(self):
        node = self.scriptedEffect.parameterSetNode()
        return node.GetSourceVolumeNode() if hasattr(node, "GetSourceVolumeNode") else node.GetMasterVolumeNode()

    @staticmethod
    def _redSliceCenter():
        matrix = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed").GetSliceToRAS()
        return [matrix.GetElement(row, 3) for row in range(3)]

    def onPreview(self):
        from COVIDSegGUI import install

        if not install.ensureRequirements(slicer.util.mainWindow()):
            return
        from COVIDSeg import COVIDSegLogic
        from COVIDSegSlicer.effect_logic import compute_preview, scope_mask, slice_index_at
        from COVIDSegSlicer.processing import ProcessOptions
        from COVIDSegSlicer.volume_bridge import volume_from_node

        self._discardPreview()
        sourceNode = self._sourceVolumeNode()
        cls, scope = self.scriptedEffect.parameter("Class"), self.scriptedEffect.parameter("Scope")
        try:
            if sourceNode is None:
                raise ValueError("select a source volume")
            volume = volume_from_node(sourceNode)
            sliceIndex = slice_index_at(sourceNode, self._redSliceCenter()) if scope == "slice" else None
            region = scope_mask(volume.shape, scope, sliceIndex)  # raises when the Red view is off the volume
        except Exception as error:
            self.statusLabel.text = f"Cannot preview: {error}"
            return
        options = ProcessOptions(model=self.scriptedEffect.parameter("Model"),
                                 min_component_mm3=self.scriptedEffect.doubleParameter("MinimumIslandMm3"))
        processor = COVIDSegLogic().processor()
        threshold = self.scriptedEffect.doubleParameter("Threshold")
        threshold = threshold if threshold > 0 and cls != "lungs" else None
        self._runner.start(lambda progress, cancel: compute_preview(processor, volume, options, cls, scope, sliceIndex,
                                                                    progress, cancel, threshold),
                           "COVIDSeg AI preview", lambda job: self._onPreviewDone(job, sourceNode, region))
        self._updateButtons()

    def _onPreviewDone(self, job, sourceNode, region):
        from COVIDSegGUI.job import error_message

        self._updateButtons()
        if job.error is not None:
            self.statusLabel.text = "Preview cancelled." if job.cancelled else f"Preview failed: {error_message(job.error)}"
            return
        self._preview = (sourceNode, job.result, region)
        self._showPreview(sourceNode, job.result)
        self.statusLabel.text = (f"Preview: {int(job.result.sum())} voxels. Apply writes it into the selected "
                                 "segment; Cancel discards it.")
        self._updateButtons()

    def _showPreview(self, sourceNode, mask):
        from COVIDSegSlicer.volume_bridge import image_on_volume_grid

        editorNode = self.scriptedEffect.parameterSetNode()
        selected = editorNode.GetSegmentationNode().GetSegmentation().GetSegment(editorNode.GetSelectedSegmentID())
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
        node.SetHideFromEditors(True)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(sourceNode)
        node.SetAndObserveTransformNodeID(sourceNode.GetTransformNodeID())
        segmentId = node.GetSegmentation().AddEmptySegment("preview", PREVIEW_NAME,
                                                           selected.GetColor() if selected else (1.0, 1.0, 0.0))
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            image_on_volume_grid(sourceNode, mask), node, segmentId)
        node.GetDisplayNode().SetOpacity2DFill(0.6)
        node.GetDisplayNode().SetVisibility3D(False)
        self._previewNode = node

    def _discardPreview(self):
        self._preview = None
        if self._previewNode is not None and slicer.mrmlScene.IsNodePresent(self._previewNode):
            slicer.mrmlScene.RemoveNode(self._previewNode)
        self._previewNode = None
        if self._runner is not None:
            self._updateButtons()

    # ------------------------------------------------------------------ apply / cancel
    def onApply(self):
        from COVIDSegSlicer.effect_logic import fill_modifier
        from COVIDSegSlicer.volume_bridge import image_on_volume_grid

        editorNode = self.scriptedEffect.parameterSetNode()
        segmentId = editorNode.GetSelectedSegmentID()
        modifier = self.scriptedEffect.defaultModifierLabelmap()
        if self._preview is None or not segmentId or modifier is None:
            self.statusLabel.text = "Select a segment and compute a preview first."
            return
        sourceNode, mask, region = self._preview

        # Inside the scope the segment becomes the preview; outside it, it stays as it is.
        fill_modifier(modifier, editorNode.GetSegmentationNode(), segmentId, image_on_volume_grid(sourceNode, mask),
                      "replace", image_on_volume_grid(sourceNode, region))
        self.scriptedEffect.saveStateForUndo()
        self.scriptedEffect.modifySelectedSegmentByLabelmap(modifier, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet)
        self._discardPreview()
        self.statusLabel.text = "Applied (Undo reverts it)."

    def onCancel(self):
        if self._runner.running:
            self._runner.cancel()
        else:
            self._discardPreview()
            self.statusLabel.text = "Preview discarded."
