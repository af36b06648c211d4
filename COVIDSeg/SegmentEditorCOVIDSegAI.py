"""Hidden module that registers the "COVIDSeg AI" Segment Editor effect.

The effect itself is ``SegmentEditorCOVIDSegAILib/SegmentEditorEffect.py``; it is exercised by
the COVIDSeg module's self-test (COVIDSegTest).
"""
import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class SegmentEditorCOVIDSegAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SegmentEditorCOVIDSegAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["COVIDSeg developers"]
        self.parent.hidden = True
        self.parent.helpText = ("Registers the COVIDSeg AI effect of the Segment Editor: the COVIDSeg models "
                                "write lungs, ground-glass opacity or consolidation into the selected segment.")
        self.parent.acknowledgementText = "Built on the Segment Editor effect template of 3D Slicer."
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

        instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
        effectFilename = os.path.join(os.path.dirname(__file__), self.__class__.__name__ + "Lib/SegmentEditorEffect.py")
        instance.setPythonSource(effectFilename.replace("\\", "/"))
        instance.self().register()
