"""Analyses are plugins: entry-point group ``resnet_probe.analyses``, built-ins included."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from resnet_probe.analyses.base import Analysis
from resnet_probe.errors import ProbeError

GROUP = "resnet_probe.analyses"
# Older names (commands and results.json files of earlier versions) and Python spellings.
ALIASES = {
    "eval": "evaluate",
    "std-report": "response-std",
    "response_std": "response-std",
    "train-report": "train-curves",
    "train_curves": "train-curves",
}


@dataclass(frozen=True)
class PluginInfo:
    """An installed analysis: its name, the distribution that ships it, and its class."""

    name: str
    package: str
    version: str
    analysis: type[Analysis] | None
    error: str | None = None


def discover() -> list[PluginInfo]:
    """Every analysis installed under the entry-point group; broken ones carry an error."""
    found: dict[str, PluginInfo] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist
        package = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Analysis)):
                raise TypeError(f"{ep.value} is not an Analysis subclass")
            info = PluginInfo(ep.name, package, version, cls)
        except Exception as exc:  # a broken plugin must never take the CLI down
            info = PluginInfo(ep.name, package, version, None, f"{type(exc).__name__}: {exc}")
        found.setdefault(ep.name, info)
    return sorted(found.values(), key=lambda p: p.name)


def get_analysis(name: str) -> type[Analysis]:
    """The analysis class registered as ``name``; unknown or broken ones are user errors."""
    plugins = {p.name: p for p in discover()}
    info = plugins.get(name) or plugins.get(ALIASES.get(name, ""))
    if info is None:
        valid = ", ".join(sorted(plugins)) or "none"
        raise ProbeError(f"unknown analysis {name!r}; installed: {valid} (see `resnet-probe analyses`)")
    if info.analysis is None:
        raise ProbeError(f"analysis {name!r} from {info.package} failed to load: {info.error}")
    return info.analysis
