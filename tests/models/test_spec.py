"""Model names parse once into a frozen spec; unknown names list the valid ones."""

from __future__ import annotations

import pytest

from resnet_probe.errors import UnknownModelError
from resnet_probe.models.spec import ModelSpec, parse, parse_with_checkpoint


def test_bare_name_means_the_zoo() -> None:
    assert parse("resnet110") == ModelSpec("zoo", "resnet110")
    assert str(parse("zoo:resnet56")) == "zoo:resnet56"


def test_source_and_tag() -> None:
    spec = parse("timm:resnet50.a1_in1k")
    assert (spec.source, spec.name, spec.tag) == ("timm", "resnet50", "a1_in1k")
    assert spec.full_name == "resnet50.a1_in1k"
    assert parse("tv:resnet18") == ModelSpec("tv", "resnet18")


def test_unknown_zoo_name_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError, match="valid: .*resnet20"):
        parse("resnet21")


def test_unknown_source() -> None:
    with pytest.raises(UnknownModelError, match="unknown model source 'keras'"):
        parse("keras:resnet50")


def test_spec_with_checkpoint() -> None:
    spec, ckpt = parse_with_checkpoint("plain20=weights/p20.safetensors")
    assert spec == ModelSpec("zoo", "plain20") and str(ckpt) == "weights/p20.safetensors"
    assert parse_with_checkpoint("resnet20") == (ModelSpec("zoo", "resnet20"), None)
