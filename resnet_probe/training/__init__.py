"""The pieces behind :func:`resnet_probe.train.train_model`: recipes and resumable state."""
