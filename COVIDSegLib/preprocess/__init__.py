"""Normalise: intensity spaces, windows, crops, resampling and letterboxing for the models."""
