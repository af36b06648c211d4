"""Quantify: volumes, involvement, zones and severity of a label map, and what they can claim."""
