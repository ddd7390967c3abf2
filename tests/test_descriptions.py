"""Each built-in analysis is described once (``Analysis.options``): its command and its rp.* function agree with it."""

from __future__ import annotations

import inspect

import pytest
from resnet_probe.cli import options as cli_options
from resnet_probe.cli.app import COMMANDS

import resnet_probe.api as api
from resnet_probe.plugins import discover

BUILT_IN = {p.name: p.analysis for p in discover() if p.package == "resnet-probe" and p.analysis is not None}
FUNCTIONS = {"evaluate": api.evaluate, "lesion": api.lesion, "reorder": api.reorder, "paths": api.paths,
             "gradients": api.gradients, "response-std": api.response_std, "prune": api.prune}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_api_function_takes_exactly_the_declared_options(name: str) -> None:
    declared = {o.name: o.default for o in BUILT_IN[name].options}
    params = inspect.signature(FUNCTIONS[name]).parameters.values()
    own = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    assert own == declared


@pytest.mark.parametrize("name", ["evaluate", "lesion", "reorder", "paths", "gradients"])
def test_the_command_takes_the_declared_options_with_their_defaults(name: str) -> None:
    params = inspect.signature(COMMANDS[name], eval_str=True).parameters
    own = {n: p for n, p in params.items() if n not in cli_options.SHARED}
    for option in BUILT_IN[name].options:
        assert option.name in own, f"{name}: {option.flag} is declared but the command lacks it"
        assert own[option.name].default == option.default, f"{name} {option.flag}"


def test_every_resumable_analysis_declares_its_journal_items() -> None:
    resumable = {n: a for n, a in BUILT_IN.items() if a.resumable}
    assert sorted(resumable) == ["gradients", "lesion", "reorder"]
    assert all(a.journal_item is not None for a in resumable.values())
