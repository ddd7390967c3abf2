"""The zoo's family names, as ``resnet-probe models`` and results.json spell them."""

RESNET = "cifar-resnet"
PLAIN = "cifar-plain"
PREACT = "cifar-preact"
