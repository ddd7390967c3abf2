"""The catalogue beyond He et al. 2015: Identity-Mappings variants, bottleneck nets, DenseNets, VoVNets.

What `resnet-probe models` lists without building a net (units, parameters) against the built
nets, and the parameter counts against the papers' tables.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from resnet_probe.adapters import build_topology
from resnet_probe.models.registry import get_entry, list_models
from resnet_probe.models.zoo import catalog
from resnet_probe.models.zoo import identity_mappings as im
from resnet_probe.structure import count_params

from ._helpers import within

NEW_FAMILIES = ("cifar-resnet-variant", "cifar-bottleneck", "cifar-preact-bottleneck", "cifar-densenet", "cifar-vovnet")
# Huang et al. 2017 Table 2 and He et al. 2016 Table 4, in millions of parameters.
PAPER_M = {
    "densenet40_k12": 1.0,
    "densenet100_k12": 7.0,
    "densenet_bc100_k12": 0.8,
    "densenet_bc250_k24": 15.3,
    "densenet_bc190_k40": 25.6,
    "resnet164": 1.7,
    "preact_resnet164": 1.7,
    "preact_resnet1001": 10.2,
}


@pytest.mark.parametrize("name", [n for n in list_models() if get_entry(n).family in NEW_FAMILIES])
def test_declared_counts_are_the_built_nets(name: str) -> None:
    entry = get_entry(name)
    model = entry.builder()
    assert count_params(model) == entry.params
    if "1202" not in name:
        assert build_topology(model).n_units == entry.units


@pytest.mark.parametrize("name", list(PAPER_M))
def test_parameters_within_a_few_per_cent_of_the_papers(name: str) -> None:
    params = get_entry(name).params
    assert within(params, PAPER_M[name], tol=0.04), (name, params)


def test_every_variant_at_every_depth() -> None:
    assert set(catalog.VARIANTS) == set(im.VARIANTS) - {"original", "full_preact"}
    for depth in catalog.DEPTH_N:
        for variant in catalog.VARIANTS:
            entry = get_entry(f"resnet{depth}_{variant}")
            assert entry.family == "cifar-resnet-variant" and entry.units == 3 * catalog.DEPTH_N[depth]
        assert get_entry(f"preact_resnet{depth}").family == "cifar-preact"  # full pre-activation
    # the variants without extra weights have ResNet-110's (option B) 1.73M, the paper's 1.7M
    assert get_entry("resnet110_const_scaling").params == get_entry("resnet110_b").params == 1_730_714
    assert get_entry("resnet110_exclusive_gating").params == 1_730_714 + sum(
        cin * c + c for cin, c in catalog._unit_shapes(18)
    )


def test_vovnet_sizes_sit_next_to_resnet56_and_densenet_bc100() -> None:
    v1, v2 = get_entry("vovnet_cifar").params, get_entry("vovnet_ese_cifar").params
    assert (v1, v2) == (767_274, 827_242)
    for other in ("resnet56", "densenet_bc100_k12"):
        assert abs(v1 / get_entry(other).params - 1) < 0.11 and abs(v2 / get_entry(other).params - 1) < 0.08


def test_models_command_lists_them_without_torch() -> None:
    code = (
        "from resnet_probe.cli.app import main\n"
        "try:\n    main(['models', '--json'])\nexcept SystemExit:\n    pass\n"
        "import sys\nprint('TORCH', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    listing, _, tail = out.rpartition("TORCH")
    assert tail.strip() == "False"
    rows = {r["name"]: r for r in json.loads(listing)}
    assert rows["densenet_bc100_k12"] == {"name": "densenet_bc100_k12", "family": "cifar-densenet", "units": 48,
                                          "params": 769_162}
    assert rows["vovnet_cifar"]["units"] == 6 and rows["preact_resnet1001"]["units"] == 333
    assert {f"resnet56_{v}" for v in catalog.VARIANTS} <= set(rows)
