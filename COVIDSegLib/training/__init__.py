"""Training: data sets, losses, the trainer, cross-validation and the metrics that judge a model."""
