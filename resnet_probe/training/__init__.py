"""The pieces behind :func:`resnet_probe.training.loop.train_model`: recipes and resumable state."""
