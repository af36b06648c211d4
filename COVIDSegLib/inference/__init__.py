"""Infer: a model bundle run on a whole volume, slice by slice, into a label map."""
