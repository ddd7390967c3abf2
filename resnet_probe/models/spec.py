"""Model names with a source and a tag, parsed once into a frozen :class:`ModelSpec`.

``resnet110`` and ``zoo:resnet110`` are the CIFAR zoo, ``tv:resnet50`` torchvision,
``timm:resnet50.a1_in1k`` timm (name ``resnet50``, pretrained tag ``a1_in1k``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from resnet_probe.errors import UnknownModelError
from resnet_probe.models.registry import get_entry

SOURCES: dict[str, str] = {
    "zoo": "resnet-probe's CIFAR zoo",
    "tv": "torchvision.models",
    "timm": "timm",
    "export": "a torch.export program file (net.pt2)",
    "python": "your own code: path/to/file.py:factory or package.module:factory (it is run)",
    "hf": "a Hugging Face causal LM: a save_pretrained directory or a name in the local cache (offline)",
}
#: sources whose name is a path or an import target, not a library's model name
FILE_SOURCES = ("export", "python")
#: a module passed in from Python: it has no name a command line could load
MODULE_SOURCE = "module"

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name: ``source:name[.tag]``."""

    source: str
    name: str
    tag: str | None = None

    def __str__(self) -> str:
        tag = f".{self.tag}" if self.tag else ""
        return f"{self.source}:{self.name}{tag}"

    @property
    def full_name(self) -> str:
        """Name with tag, as the source library spells it."""
        return f"{self.name}.{self.tag}" if self.tag else self.name

    @property
    def label(self) -> str:
        """A short name for file names and titles (a file's stem, a factory's name)."""
        if self.source == "export":
            return Path(self.name).stem
        if self.source == "python":
            return self.name.rpartition(":")[2]
        return self.full_name


def parse(text: str) -> ModelSpec:
    """Parse ``[source:]name[.tag]``; a bare name means the zoo.

    Example:
        >>> parse("timm:resnet50.a1_in1k")
        ModelSpec(source='timm', name='resnet50', tag='a1_in1k')
    """
    text = text.strip()
    if not text:
        raise UnknownModelError("empty model name; try `resnet-probe models` for the zoo")
    file_spec = _file_spec(text)
    if file_spec is not None:
        return file_spec
    source, sep, rest = text.partition(":")
    if not sep:
        source, rest = "zoo", text
    source = source.lower()
    if source == MODULE_SOURCE:
        raise UnknownModelError(
            f"{text!r} names a module passed in from Python; on the command line use file.py:factory or a .pt2 file"
        )
    if source not in SOURCES:
        valid = ", ".join(f"{k}: ({v})" for k, v in SOURCES.items())
        raise UnknownModelError(f"unknown model source {source!r} in {text!r}; valid sources: {valid}")
    if source == "hf":
        if not rest.strip():
            raise UnknownModelError(f"malformed hf model {text!r}; expected hf:DIRECTORY or hf:org/name")
        return ModelSpec("hf", rest.strip())
    if source in FILE_SOURCES:
        found = _file_spec(rest)
        if found is None or found.source != source:
            raise UnknownModelError(f"malformed {source} model {text!r}; expected {SOURCES[source]}")
        return found
    if not rest or not _NAME.match(rest):
        raise UnknownModelError(f"malformed model name {text!r}; expected e.g. zoo:resnet56, tv:resnet50")
    name, _, tag = rest.partition(".")
    if source == "zoo":
        get_entry(rest)  # raises with the list of valid names
        return ModelSpec("zoo", rest, None)
    return ModelSpec(source, name, tag or None)


_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _file_spec(text: str) -> ModelSpec | None:
    """``net.pt2`` as an export program; ``file.py:factory`` / ``package.module:factory`` as your code."""
    if text.lower().endswith(".pt2") and not text.lower().startswith(("zoo:", "tv:", "timm:")):
        return ModelSpec("export", text.removeprefix("export:"))
    where, sep, factory = text.rpartition(":")
    if not sep or not _FACTORY.match(factory):
        return None
    where = where.removeprefix("python:")
    if where.endswith(".py") or _MODULE_PATH.match(where):
        return ModelSpec("python", f"{where}:{factory}")
    return None


def parse_with_checkpoint(text: str) -> tuple[ModelSpec, Path | None]:
    """Parse ``SPEC[=CHECKPOINT]`` as used by ``--compare`` and ``std-report --model``."""
    spec_text, sep, ckpt = text.partition("=")
    return parse(spec_text), (Path(ckpt) if sep and ckpt else None)
