"""Lungs: left and right lung masks, training-free or with the learned lung model."""
