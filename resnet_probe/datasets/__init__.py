"""Data source implementations behind :mod:`resnet_probe.data`."""
