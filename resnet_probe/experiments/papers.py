"""The papers' CIFAR-10 test errors, shown beside ours when an experiment runs on CIFAR-10.

Quoted from the tables (C10 with the standard crop-and-flip augmentation); numbers read off a
figure are not quoted. He et al. 2016 measured the unit variants at depth 110 (and 164): at
another depth they are shown labelled with the depth they belong to, as a direction, not a target.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """A test error (%) from a paper, where it is printed and at which net."""

    error: float | None  # None: the paper reports that training failed ("fail", > 20 % error)
    source: str
    net: str

    def text(self) -> str:
        """``6.61 % (He 2016 Table 1, ResNet-110)``."""
        value = "fail" if self.error is None else f"{self.error:.2f} %"
        return f"{value} ({self.source}, {self.net})"


HE2015 = "He et al. 2015 Table 6"
HE2016_T1 = "He et al. 2016 Table 1"
HE2016_T2 = "He et al. 2016 Table 2"
HE2016_T4 = "He et al. 2016 Table 4"
HUANG2017 = "Huang et al. 2017 Table 2, C10+"

# By zoo name: the nets the papers trained themselves.
BY_MODEL: dict[str, Published] = {
    "resnet20": Published(8.75, HE2015, "ResNet-20"),
    "resnet32": Published(7.51, HE2015, "ResNet-32"),
    "resnet44": Published(7.17, HE2015, "ResNet-44"),
    "resnet56": Published(6.97, HE2015, "ResNet-56"),
    "resnet110": Published(6.43, HE2015, "ResNet-110"),
    "resnet1202": Published(7.93, HE2015, "ResNet-1202"),
    "resnet110_b": Published(6.61, HE2016_T1, "ResNet-110, original unit"),
    "preact_resnet110": Published(6.37, HE2016_T2, "ResNet-110, full pre-activation"),
    "resnet164": Published(5.93, HE2016_T4, "ResNet-164, original"),
    "preact_resnet164": Published(5.46, HE2016_T4, "ResNet-164, pre-activation"),
    "preact_resnet1001": Published(4.92, HE2016_T4, "ResNet-1001, pre-activation"),
    "densenet40_k12": Published(5.24, HUANG2017, "DenseNet (L=40, k=12)"),
    "densenet100_k12": Published(4.10, HUANG2017, "DenseNet (L=100, k=12)"),
    "densenet_bc100_k12": Published(4.51, HUANG2017, "DenseNet-BC (L=100, k=12)"),
    "densenet_bc250_k24": Published(3.62, HUANG2017, "DenseNet-BC (L=250, k=24)"),
    "densenet_bc190_k40": Published(3.46, HUANG2017, "DenseNet-BC (L=190, k=40)"),
}
# He et al. 2016 at ResNet-110, by the shortcut experiment's cell kind (the zoo's variant names).
AT_110: dict[str, Published] = {
    "B": Published(6.61, HE2016_T1, "ResNet-110, original unit"),
    "const_scaling": Published(12.35, HE2016_T1, "ResNet-110, 0.5 on shortcut and branch"),
    "exclusive_gating": Published(8.70, HE2016_T1, "ResNet-110, gate bias -6"),
    "shortcut_gating": Published(6.91, HE2016_T1, "ResNet-110, gate bias -6"),
    "conv_shortcut": Published(12.22, HE2016_T1, "ResNet-110"),
    "dropout_shortcut": Published(None, HE2016_T1, "ResNet-110"),
    "bn_after_add": Published(8.17, HE2016_T2, "ResNet-110"),
    "relu_before_add": Published(7.84, HE2016_T2, "ResNet-110"),
    "relu_preact": Published(6.71, HE2016_T2, "ResNet-110"),
    "full_preact": Published(6.37, HE2016_T2, "ResNet-110"),
}
# He et al. 2015 Table 3 compares options A/B/C on ImageNet only (top-1, 10-crop): the direction on CIFAR.
IMAGENET_OPTIONS: dict[str, float] = {"none": 28.54, "A": 25.03, "B": 24.52, "C": 24.19}


def published(experiment: str, model: str, kind: str) -> Published | None:
    """The paper's CIFAR-10 error for a cell, or None when no paper printed one."""
    if experiment == "shortcut" and kind in AT_110:
        return AT_110[kind]
    return BY_MODEL.get(model)


def imagenet_options_text() -> str:
    """He et al. 2015 Table 3's ImageNet top-1 errors of the shortcut options, as one clause."""
    names = {"none": "plain-34", "A": "A", "B": "B", "C": "C"}
    return ", ".join(f"{names[k]} {v:.2f} %" for k, v in IMAGENET_OPTIONS.items())
