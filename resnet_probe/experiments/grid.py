"""The three experiments as grids: which zoo nets form the cells, which pairs are compared.

Torch-free: cells are chosen from the registry's names, families and parameter counts. A cell
whose net is not in the zoo is skipped with a note; a grid without its reference net (the one
the others are compared with) is refused, naming what is registered.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_probe.errors import ProbeError, UnknownModelError
from resnet_probe.models.registry import ModelEntry, get_entry, list_models
from resnet_probe.models.zoo.families import PLAIN, RESNET

EXPERIMENTS: tuple[str, ...] = ("depth", "shortcut", "blocks")
QUESTIONS: dict[str, str] = {
    "depth": "Is a deeper net always better?",
    "shortcut": "Does the shortcut work, and which one?",
    "blocks": "Is the residual block better than other conv blocks at matched parameter counts?",
}
DEFAULT_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)
SHORTCUT_DEPTH = 110
# On digits the short recipe's 205 steps do not train the projection nets at 110 (seed 0, 1 thread:
# test error B 72.0 %, C 80.6 %, against A 7.4 %), so no variant can be read against the original
# unit there; at 56 they train (A 1.0 %, B 1.2 %, C 13.4 %) while plain-56 does not (60.0 %).
DIGITS_SHORTCUT_DEPTH = 56
SHORTCUT_KINDS: tuple[str, ...] = ("none", "A", "B", "C")  # shortcut cells that are not a unit variant
BLOCKS_DEPTH = 56  # ResNet-56's 0.85M parameters: pre-activation, DenseNet-BC-100 and VoVNet lie within 10 %
MATCH = 0.25  # a block net is "matched" when its parameters lie within this share of the reference's

# He et al. 2016's unit variants (Tables 1-2), as the zoo names them: resnet{depth}_{variant}.
VARIANTS: tuple[tuple[str, str], ...] = (
    ("const_scaling", "constant scaling"),
    ("exclusive_gating", "exclusive gating"),
    ("shortcut_gating", "shortcut-only gating"),
    ("conv_shortcut", "1x1 conv shortcut"),
    ("dropout_shortcut", "dropout shortcut"),
    ("bn_after_add", "BN after add"),
    ("relu_before_add", "ReLU before add"),
    ("relu_preact", "ReLU-only preact"),
)
# Block kinds of `experiment blocks`: label -> (families, name prefix) of the candidates.
BLOCK_KINDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("basic residual", ("cifar-resnet",), "resnet"),
    ("bottleneck", ("cifar-bottleneck",), "resnet"),
    ("pre-activation", ("cifar-preact",), "preact_resnet"),
    ("DenseNet-BC", ("cifar-densenet",), "densenet_bc"),
    ("VoVNet", ("cifar-vovnet",), "vovnet_cifar"),
)


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: a zoo net and what it stands for in this experiment."""

    label: str  # e.g. "plain-20", "B: projection", "DenseNet-BC"
    model: str  # zoo name
    kind: str  # "plain" | "residual" (depth); the option or variant (shortcut); the block kind (blocks)
    family: str
    params: int  # registered, with 10 classes


@dataclass(frozen=True)
class Grid:
    """An experiment's cells, the pairs it compares (on the same images) and what it skipped."""

    experiment: str
    cells: tuple[Cell, ...]
    pairs: tuple[tuple[str, str], ...]  # (cell label, cell label): the first is the one asked about
    skipped: tuple[str, ...] = ()

    def runs(self, repeats: int, seed: int = 0) -> list[tuple[Cell, int]]:
        """Every (cell, seed) of the grid: cells in order, ``repeats`` seeds each from ``seed``."""
        if repeats < 1:
            raise ProbeError(f"--repeats {repeats}: must be at least 1")
        return [(cell, seed + r) for cell in self.cells for r in range(repeats)]


def _entry(name: str) -> ModelEntry | None:
    try:
        return get_entry(name)
    except UnknownModelError:
        return None


def _cell(label: str, name: str, kind: str) -> Cell | None:
    entry = _entry(name)
    return None if entry is None else Cell(label, name, kind, entry.family, entry.params)


def _depths_with(prefix: str, family: str) -> str:
    found = sorted({int(n[len(prefix):]) for n in list_models(f"{prefix}*")
                    if n[len(prefix):].isdigit() and get_entry(n).family == family})
    return ", ".join(map(str, found)) or "none"


def _basic_resnet(label: str, depth: int, kind: str, option: str) -> Cell:
    """The basic-block ResNet of ``depth`` (the zoo's resnet164 is a bottleneck net: not this)."""
    cell = _cell(label, f"resnet{depth}", kind)
    if cell is None or cell.family != RESNET:
        raise ProbeError(f"{option} {depth}: no basic-block resnet{depth} in the zoo; depths it has: "
                         f"{_depths_with('resnet', RESNET)}")
    return cell


def depth_grid(depths: tuple[int, ...] = DEFAULT_DEPTHS) -> Grid:
    """Plain and residual (option A) nets of each depth (He et al. 2015, Fig. 6 and Table 6)."""
    if not depths:
        raise ProbeError("--depths: give at least one depth, e.g. 20,56")
    cells: list[Cell] = []
    skipped: list[str] = []
    for depth in sorted(set(depths)):
        resnet = _basic_resnet(f"ResNet-{depth}", depth, "residual", "--depths")
        plain = _cell(f"plain-{depth}", f"plain{depth}", "plain")
        if plain is None:
            skipped.append(f"plain{depth} is not in the zoo (plain nets: {_depths_with('plain', PLAIN)}); "
                           f"ResNet-{depth} alone")
        cells += [c for c in (plain, resnet) if c is not None]
    by_depth = sorted({int(c.model.removeprefix("plain").removeprefix("resnet")) for c in cells})
    labels = {c.label for c in cells}
    pairs = [(f"ResNet-{d}", f"plain-{d}") for d in by_depth if f"plain-{d}" in labels]
    shallow = by_depth[0]
    for d in by_depth[1:]:
        pairs += [(f"{k}-{d}", f"{k}-{shallow}") for k in ("plain", "ResNet")
                  if {f"{k}-{d}", f"{k}-{shallow}"} <= labels]
    return Grid("depth", tuple(cells), tuple(pairs), tuple(skipped))


def shortcut_grid(depth: int = SHORTCUT_DEPTH) -> Grid:
    """No shortcut, options A/B/C, He et al. 2016's unit variants and full pre-activation at one depth."""
    reference = _basic_resnet("A zero-pad", depth, "A", "--depth")
    wanted = [
        ("no shortcut", f"plain{depth}", "none"),
        ("A zero-pad", f"resnet{depth}", "A"),
        ("B projection", f"resnet{depth}_b", "B"),
        ("C all projection", f"resnet{depth}_c", "C"),
        *((text, f"resnet{depth}_{v}", v) for v, text in VARIANTS),
        ("full preact", f"preact_resnet{depth}", "full_preact"),
    ]
    cells, skipped = [], []
    for label, name, kind in wanted:
        cell = _cell(label, name, kind)
        if cell is None:
            skipped.append(f"{name} ({label}) is not in the zoo; skipped")
        else:
            cells.append(cell)
    labels = {c.label for c in cells}
    original = "B projection"  # He et al. 2016's "original" unit: what the variants change
    pairs: list[tuple[str, str]] = [(label, reference.label) for label in ("no shortcut", "B projection",
                                                    "C all projection") if label in labels]
    base = original if original in labels else reference.label
    pairs += [(c.label, base) for c in cells if c.kind not in SHORTCUT_KINDS]
    return Grid("shortcut", tuple(cells), tuple(pairs), tuple(skipped))


def blocks_grid(depth: int = BLOCKS_DEPTH, match: float = MATCH, models: tuple[str, ...] = ()) -> Grid:
    """One net per block kind, the nearest in parameters to ResNet-``depth`` (within ``match``); or ``models``."""
    if models:
        return _named_blocks(models)
    reference = _basic_resnet("basic residual", depth, "basic residual", "--depth")
    if not 0 < match:
        raise ProbeError(f"--match {match}: must be a positive share, e.g. 0.25")
    cells, skipped = [reference], []
    for kind, families, prefix in BLOCK_KINDS[1:]:
        entries = [e for e in map(get_entry, list_models(f"{prefix}*")) if e.family in families]
        if not entries:
            skipped.append(f"{kind}: no {prefix}* net of family {'/'.join(families)} in the zoo; skipped")
            continue
        best = min(entries, key=lambda e: (abs(e.params - reference.params), e.name))
        share = best.params / reference.params - 1
        if abs(share) > match:
            skipped.append(
                f"{kind}: the nearest in the zoo, {best.name} ({best.params / 1e6:.2f}M parameters), is "
                f"{100 * share:+.0f} % off {reference.model}'s {reference.params / 1e6:.2f}M, beyond --match "
                f"{match:g}; skipped (a larger --match or another --depth includes it)"
            )
            continue
        cells.append(Cell(kind, best.name, kind, best.family, best.params))
    pairs = [(c.label, reference.label) for c in cells[1:]]
    return Grid("blocks", tuple(cells), tuple(pairs), tuple(skipped))


def _named_blocks(models: tuple[str, ...]) -> Grid:
    """The nets the user named, each its own cell, compared with the first."""
    cells = []
    for name in dict.fromkeys(m.removeprefix("zoo:") for m in models):
        entry = get_entry(name)  # an unknown name lists the valid ones
        kind = next((k for k, fams, prefix in BLOCK_KINDS if entry.family in fams and name.startswith(prefix)), None)
        cells.append(Cell(name, name, kind or entry.family, entry.family, entry.params))
    pairs = [(c.label, cells[0].label) for c in cells[1:]]
    return Grid("blocks", tuple(cells), tuple(pairs))


def build_grid(
    experiment: str,
    *,
    depths: tuple[int, ...] | None = None,
    depth: int | None = None,
    match: float | None = None,
    models: tuple[str, ...] = (),
    dataset: str | None = None,
) -> Grid:
    """The grid of ``experiment`` (depth | shortcut | blocks); options that do not belong to it are refused.

    ``dataset`` picks the default shortcut depth: 110 as in He et al. 2016, 56 on digits.
    """
    if experiment not in EXPERIMENTS:
        raise ProbeError(f"unknown experiment {experiment!r}; valid: {', '.join(EXPERIMENTS)}")
    given = {"--depths": depths is not None, "--depth": depth is not None, "--match": match is not None,
             "--models": bool(models)}
    allowed = {"depth": {"--depths"}, "shortcut": {"--depth"}, "blocks": {"--depth", "--match", "--models"}}
    wrong = [name for name, present in given.items() if present and name not in allowed[experiment]]
    if wrong:
        raise ProbeError(f"{wrong[0]} is not an option of `experiment {experiment}`; it takes "
                         f"{', '.join(sorted(allowed[experiment]))}")
    if experiment == "depth":
        return depth_grid(depths or DEFAULT_DEPTHS)
    if experiment == "shortcut":
        return shortcut_grid(depth or (DIGITS_SHORTCUT_DEPTH if dataset == "digits" else SHORTCUT_DEPTH))
    if models and (depth is not None or match is not None):
        raise ProbeError("--models names the nets itself; it excludes --depth and --match")
    return blocks_grid(depth or BLOCKS_DEPTH, MATCH if match is None else match, models)
