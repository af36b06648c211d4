"""COVIDSeg: lungs, ground-glass opacity and consolidation in chest CT, with quantification.

Thin Slicer glue. The computation is COVIDSegLib's and the scene logic COVIDSegSlicer's (both
tested without Slicer); COVIDSegGUI holds the worker-thread runner, batch driver, model import
and requirement installer. Nothing that needs PyTorch is imported before the user has agreed
to install the requirements, so the module loads in any Slicer.
"""
import logging
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from COVIDSegGUI.paths import ensure_library_importable

ensure_library_importable()  # COVIDSegLib at the repository root when run from the source folder

DEFAULT_MODEL = "covidseg_multiclass"  # COVIDSegLib.bundle.default_model()


class COVIDSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "COVIDSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Terminologies"]
        self.parent.contributors = ["COVIDSeg developers"]
        self.parent.helpText = (
            "Segments the left and right lung, ground-glass opacity and consolidation in chest CT and "
            "reports volumes, % involvement and a CT severity score. Review and edit the result with the "
            "Segment Editor (effect <i>COVIDSeg AI</i>), measure with Segment Statistics, export as DICOM SEG "
            "or .seg.nrrd. See the <a href=\"https://github.com/covidseg/SlicerCOVIDSeg\">documentation</a>. "
            "Research software, not a medical device.")
        self.parent.acknowledgementText = (
            "Models trained on the MedSeg COVID-19 CT segmentation data (Radiopaedia cases, CC BY-NC-SA). "
            "Module structure after the 3D Slicer scripted-module templates.")


@parameterNodeWrapper
class COVIDSegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    model: str = DEFAULT_MODEL
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode  # None: a new segmentation
    show3D: bool = True
    tta: bool = False
    minComponentMm3: Annotated[float, WithinRange(0.0, 100000.0)] = 10.0
    lungs: bool = True  # the classes (COVIDSegSlicer.segments.ALL_CLASSES) have these names
    ggo: bool = True
    consolidation: bool = True
    batchOutputFolder: Path = Path.home() / "COVIDSeg"


class COVIDSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._runner = None
        self._batch = None
        self._bundles = {}
        self._modelNote = ""

    # ------------------------------------------------------------------ set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from COVIDSegGUI.runner import JobRunner

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/COVIDSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = COVIDSegLogic()
        self._runner = JobRunner(self.ui.progressBar, self.ui.statusLabel)
        self.ui.progressBar.hide()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.processSceneButton.connect("clicked(bool)", self.onProcessScene)
        self.ui.processFolderButton.connect("clicked(bool)", self.onProcessFolder)
        self.initializeParameterNode()
        self.refreshModels()

    def cleanup(self):
        if self._runner is not None:
            self._runner.cleanup()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self._runner.cleanup()  # a result must not land in the next scene
        self._batch = None
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    # ------------------------------------------------------------------ GUI state
    def updateButtons(self, caller=None, event=None):
        p, busy = self._parameterNode, self._runner is not None and self._runner.running
        if p is None:
            return
        index = self.ui.modelComboBox.findText(p.model)
        if index >= 0 and index != self.ui.modelComboBox.currentIndex:
            self.ui.modelComboBox.currentIndex = index
        classes = self.logic.classes(p)
        self.ui.applyButton.enabled = bool(p.inputVolume and p.model and classes) and not busy
        self.ui.applyButton.toolTip = ("Segment the input volume." if p.inputVolume and classes
                                       else "Select an input volume and at least one class.")
        for button in (self.ui.processSceneButton, self.ui.processFolderButton, self.ui.addModelButton):
            button.enabled = not busy
        self.ui.cancelButton.enabled = busy

    def refreshModels(self):
        """Fill the model list (every bundle found once the requirements are installed)."""
        from COVIDSegGUI.models import describe, model_choices

        current = self._parameterNode.model if self._parameterNode else DEFAULT_MODEL
        bundles, self._modelNote = model_choices(current)
        self._bundles = {b["name"]: b for b in bundles}
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for name, bundle in self._bundles.items():
            combo.addItem(name)
            combo.setItemData(combo.count - 1, describe(bundle), qt.Qt.ToolTipRole)
        combo.currentIndex = max(combo.findText(current), 0)
        combo.blockSignals(wasBlocked)
        self.onModelSelected()

    def onModelSelected(self, index=None):
        from COVIDSegGUI.models import describe

        name = self.ui.modelComboBox.currentText
        bundle = self._bundles.get(name, {})
        self.ui.modelInfoLabel.text = self._modelNote or describe(bundle)
        self.ui.consolidationCheckBox.enabled = bundle.get("task") != "binary"
        if self._parameterNode and name:
            self._parameterNode.model = name

    # ------------------------------------------------------------------ running
    def _requirementsReady(self) -> bool:
        from COVIDSegGUI import install

        if not install.ensureRequirements(slicer.util.mainWindow()):
            return False
        if self._modelNote:
            self.refreshModels()  # first run after installing: list the real bundles
        return True

    def _start(self, title, work, onFinished):
        def finished(job):
            self.updateButtons()
            onFinished(job)
        self._runner.start(work, title, finished)
        self.updateButtons()

    def _succeeded(self, job) -> bool:
        if job.cancelled:
            self.ui.statusLabel.text = "Cancelled: the scene was not changed."
        elif job.error is not None:
            self._showError(job.error)
        return job.error is None

    def _showError(self, error):
        from COVIDSegGUI.job import error_message

        logging.error("COVIDSeg: %s", error, exc_info=error)
        self.ui.statusLabel.text = f"Failed: {error_message(error)}"
        slicer.util.errorDisplay(error_message(error), windowTitle="COVIDSeg")

    def onCancel(self):
        self._runner.cancel()

    def onApply(self):
        if not self._requirementsReady():
            return
        from COVIDSegSlicer.volume_bridge import volume_from_node

        p = self._parameterNode
        volumeNode, segmentationNode, show3D = p.inputVolume, p.outputSegmentation, p.show3D
        processor, options = self.logic.processor(), self.logic.options(p)
        try:
            volume = volume_from_node(volumeNode)  # main thread: the worker never touches MRML
        except Exception as error:
            self._showError(error)
            return
        self._start(f"Segmenting {volumeNode.GetName()}",
                    lambda progress, cancel: processor.compute(volume, options, progress, cancel),
                    lambda job: self._onSegmented(job, volumeNode, segmentationNode, show3D))

    def _onSegmented(self, job, volumeNode, segmentationNode, show3D):
        from COVIDSegGUI.job import format_elapsed

        if not self._succeeded(job):
            return
        try:
            with slicer.util.WaitCursor():
                segmentationNode, tableNode = self.logic.processor().apply_result(
                    volumeNode, job.result, segmentationNode, show3D)
        except Exception as error:  # apply_result has left the scene as it was
            self._showError(error)
            return
        self.logic.getParameterNode().outputSegmentation = segmentationNode  # also when the user left the module
        slicer.util.setSliceViewerLayers(background=volumeNode)
        self._showTable(tableNode)
        r = job.result
        self.ui.statusLabel.text = (f"Done in {format_elapsed(job.elapsed)} ({r.model} on {r.device}): "
                                    f"{r.report.grade} {r.report.grade_word}, "
                                    f"{r.report.both_involvement_percent:.1f} % of the lungs involved.")

    def onProcessScene(self):
        if not self._requirementsReady():
            return
        from COVIDSegGUI.batch import SceneBatch

        volumes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if n.GetClassName() == "vtkMRMLScalarVolumeNode"]  # not label maps
        if not volumes:
            slicer.util.infoDisplay("There is no scalar volume in the scene.", windowTitle="COVIDSeg")
            return
        p = self._parameterNode
        self._batch = SceneBatch(self.logic.processor(), volumes, self.logic.options(p), p.show3D)
        self._runNextInBatch()

    def _runNextInBatch(self):
        step = self._batch.next_work()
        if step is None:
            self._showSummary(self._batch.rows)
            self._batch = None
            return
        title, work = step

        def finished(job):
            self._batch.finish(job)
            self._runNextInBatch()
        self._start(title, work, finished)

    def onProcessFolder(self):
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Folder of chest CT files or DICOM series")
        if not folder or not self._requirementsReady():
            return
        from COVIDSegLib.io.paths import folder_inputs

        inputs, outDir = folder_inputs(folder), self._parameterNode.batchOutputFolder
        processor, options = self.logic.processor(), self.logic.options(self._parameterNode)
        self._start(f"Folder {folder}",
                    lambda progress, cancel: processor.process_folder(inputs, outDir, options, progress, cancel),
                    lambda job: self._succeeded(job) and self._showSummary(job.result, outDir))

    def _showSummary(self, rows, outDir=None):
        from COVIDSegSlicer.processing import OK, summary_to_table

        self._showTable(summary_to_table(slicer.mrmlScene, rows))
        done = sum(r.status == OK for r in rows)
        self.ui.statusLabel.text = f"Batch finished: {done} of {len(rows)} succeeded" + (f"; outputs in {outDir}." if outDir else ".")

    def _showTable(self, tableNode):
        self.ui.resultsTableView.setMRMLTableNode(tableNode)
        self.ui.resultsCollapsibleButton.collapsed = False

    # ------------------------------------------------------------------ models
    def onAddModel(self):
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), "Add a COVIDSeg model bundle", "",
                                              "COVIDSeg model (*.json *.safetensors)")
        if not path or not self._requirementsReady():
            return
        from COVIDSegGUI.models import ModelExistsError, import_bundle

        try:
            with slicer.util.WaitCursor():
                try:
                    name = import_bundle(path)
                except ModelExistsError as exists:
                    if not slicer.util.confirmOkCancelDisplay(f"{exists} Replace it?", windowTitle="COVIDSeg"):
                        return
                    name = import_bundle(path, overwrite=True)
        except Exception as error:  # a bad hash or card: nothing was copied
            self._showError(error)
            return
        self._parameterNode.model = name
        self.refreshModels()


class COVIDSegLogic(ScriptedLoadableModuleLogic):
    """Scripting entry point, e.g. ``COVIDSegLogic().process(volumeNode)``; the widget runs the same
    processor with its model computation in a worker thread."""

    _processor = None  # shared by every instance (module widget, effect, scripts): one model in memory

    def getParameterNode(self):
        return COVIDSegParameterNode(super().getParameterNode())

    @staticmethod
    def classes(parameterNode):
        from COVIDSegSlicer.segments import ALL_CLASSES
        return tuple(c for c in ALL_CLASSES if getattr(parameterNode, c))

    def options(self, parameterNode):
        from COVIDSegSlicer.processing import ProcessOptions
        p = parameterNode
        return ProcessOptions(model=p.model, device=p.device, tta=p.tta, min_component_mm3=p.minComponentMm3,
                              classes=self.classes(p))

    def processor(self):
        """The scene processor (it keeps the last model loaded); needs the requirements installed."""
        if COVIDSegLogic._processor is None:
            from COVIDSegSlicer.processing import SceneProcessor
            from COVIDSegSlicer.segments import load_terminology

            try:
                load_terminology(slicer.modules.terminologies.logic())
            except Exception as error:  # segments still get names and colours
                logging.warning("COVIDSeg terminology not loaded: %s", error)
            COVIDSegLogic._processor = SceneProcessor(slicer.mrmlScene, slicer.modules.segmentations.logic())
        return COVIDSegLogic._processor

    def process(self, volumeNode, options=None, segmentationNode=None, show3D=False):
        """Segment ``volumeNode`` now (blocking); returns (segmentation node, report table node)."""
        options = options or self.options(self.getParameterNode())
        return self.processor().process_volume(volumeNode, options, segmentation_node=segmentationNode, show3d=show3D)


class COVIDSegTest(ScriptedLoadableModuleTest):
    """The user's flow on SampleData "CTChest": Apply in the background, report table, then the
    COVIDSeg AI effect previews and applies the lungs of one slice into a new segment."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_COVIDSeg_flow()

    def _waitFor(self, runner, seconds=1800):
        import time
        end = time.time() + seconds
        while runner.running and time.time() < end:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertFalse(runner.running, "the job did not finish in time")

    def test_COVIDSeg_flow(self):
        from COVIDSegSlicer.dependencies import missing_requirements

        if missing_requirements():
            self.delayDisplay(f"Skipped: requirements not installed ({', '.join(missing_requirements())})")
            return
        import SampleData
        volumeNode = SampleData.SampleDataLogic().downloadSample("CTChest")

        self.delayDisplay("Segmenting in the background")
        widget = slicer.modules.covidseg.widgetRepresentation().self()
        widget._parameterNode.inputVolume = volumeNode
        widget._parameterNode.outputSegmentation = None
        widget.ui.applyButton.click()
        self._waitFor(widget._runner)
        segmentationNode = widget._parameterNode.outputSegmentation
        self.assertIsNotNone(segmentationNode, widget.ui.statusLabel.text)
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 4)
        table = widget.ui.resultsTableView.mrmlTableNode().GetTable()
        self.assertEqual(table.GetValue(0, 0).ToString(), "Lung volume")
        self.assertTrue(2000 < table.GetValue(0, 3).ToDouble() < 9000, "implausible lung volume (mL)")

        self.delayDisplay("COVIDSeg AI effect: lungs of the current slice into a new segment")
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
        editor.setSegmentationNode(segmentationNode)
        editor.setSourceVolumeNode(volumeNode)
        segmentId = segmentationNode.GetSegmentation().AddEmptySegment("AI lungs")
        editor.setCurrentSegmentID(segmentId)
        editor.setActiveEffectByName("COVIDSeg AI")
        effect = editor.activeEffect()
        effect.setParameter("Class", "lungs")
        effect.setParameter("Scope", "slice")
        effect.self().onPreview()
        self._waitFor(effect.self()._runner)
        effect.self().onApply()
        written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        self.assertGreater(written.sum(), 1000)
        self.assertEqual(int((written.reshape(len(written), -1).sum(axis=1) > 0).sum()), 1, "one slice only")
        self.delayDisplay("Test passed")
