"""The zoo's family names, as ``resnet-probe models`` and results.json spell them."""

RESNET = "cifar-resnet"
PLAIN = "cifar-plain"
PREACT = "cifar-preact"
VARIANT = "cifar-resnet-variant"  # He et al. 2016 shortcut and activation variants
BOTTLENECK = "cifar-bottleneck"
PREACT_BOTTLENECK = "cifar-preact-bottleneck"
DENSENET = "cifar-densenet"
VOVNET = "cifar-vovnet"
