"""The ``resnet-probe`` command line (installed as ``resnet_probe.cli``)."""
