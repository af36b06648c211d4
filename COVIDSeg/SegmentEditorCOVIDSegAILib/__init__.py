"""The COVIDSeg AI Segment Editor effect (registered by SegmentEditorCOVIDSegAI.py)."""
from .SegmentEditorEffect import SegmentEditorEffect

__all__ = ["SegmentEditorEffect"]
