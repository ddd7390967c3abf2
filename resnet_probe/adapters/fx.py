"""Any residual network, found from its graph: the torch.fx discovery adapter.

The model is traced (:mod:`resnet_probe.adapters.tracing`: timm's and torchvision's fx helpers,
a submodule that cannot be traced kept whole) and the traced graph is read
(:mod:`resnet_probe.adapters.discovery`): each residual addition ``x + f(x)`` or
``proj(x) + f(x)`` that closes a stretch of the graph fed by one tensor is a unit, a block
with two such additions (a transformer block: attention, then MLP) gives two units,
activations right after an addition are the unit's ``post``, everything between units
(blocks without a skip, downsampling layers, patch merging, norms) is a transition, what comes
before the first unit is the stem and what follows the last the head. Stochastic depth,
DropPath and layer scale lie on the branch side of the addition, so they are part of the
residual branch. Every part calls the model's own submodules: the model is shared, never
copied or changed.

Only chains are read: a residual addition that closes no unit (a skip across several units,
a residual inside a residual branch, a size carried past it) is refused with one
:class:`AdapterError` line, as is a model that torch.fx cannot trace.
"""

from __future__ import annotations

from torch import nn

from resnet_probe.adapters.discovery import Discovered, discover
from resnet_probe.adapters.tracing import refuse, trace
from resnet_probe.structure import Fn, Topology, Unit, identity

__all__ = ["FAMILY", "assemble", "build", "matches", "nested_note", "refuse", "structure_notes"]

FAMILY = "fx"

FALLBACK_NOTE = (
    "Found by tracing (torch.fx): a unit is a stretch of the traced graph that takes one tensor and ends in "
    "the addition of two tensors computed from it; a block with two such additions gives two units."
)
POST_NOTE = "Activations right after an addition are the unit's post (y = act(shortcut(x) + residual(x)))."
TRANSITION_NOTE = (
    "Other layers between units (blocks without a skip, downsampling, patch merging, norms) are transitions: "
    "one non-deletable edge before the next unit."
)
PROJECTION_NOTE = (
    "Where neither operand of the addition is the unit's input, the operand with fewer operations is taken as "
    "the (projection) shortcut; a layer both branches read first (a pre-activation norm) comes before the unit, "
    "as the previous unit's post or a transition."
)
ZERO_PAD_NOTE = (
    "Shortcuts that only slice and zero-pad their input (option A) are zero-pad shortcuts: deleting such a unit "
    "leaves its padded channels zero."
)
SCALED_NOTE = "Shortcuts multiplied by a constant or parameter (x * scale + f(x)) are scaled shortcuts."
LAYOUT_NOTE = (
    "Reshapes and permutes right after an addition commute with it: they are applied to both the shortcut and "
    "the residual branch."
)
BRANCH_NOTE = (
    "Stochastic depth / DropPath and layer scale sit on the branch side of the addition, so they are part of "
    "the residual branch (DropPath is the identity in eval mode)."
)
CHANNELS_NOTE = (
    "Channel counts come from the first and last Linear / Conv layer of each branch (0 where there is none); "
    "strides from the convolutions and pools of the residual branch."
)
EVAL_NOTE = "The model is traced in eval mode: Python-level `self.training` checks take their eval branch."
NO_RESPONSES_NOTE = "Units read by tracing expose no response layers, so response-std does not apply."


def matches(model: nn.Module) -> bool:
    """Any module: discovery is tried last, after every hand-written adapter refused the model."""
    return isinstance(model, nn.Module)


def build(model: nn.Module) -> Topology:
    """The topology of a residual model, found by tracing.

    Example:
        >>> topo = build(timm.create_model("deit_tiny_patch16_224"))
        >>> [u.name for u in topo.units][:2]
        ['blocks.0.attn', 'blocks.0.mlp']
    """
    traced = trace(model)
    found = discover(model, traced.graph_module)
    units, transitions = assemble(model, found)
    notes = _notes(units, transitions, found, traced.opaque)
    return Topology(FAMILY, found.stem, tuple(units), found.head, model, transitions, notes,
                    unread=len(found.nested))


def assemble(model: nn.Module, found: Discovered) -> tuple[list[Unit], dict[int, Fn]]:
    """The units (with stages) and transitions of a discovered graph.

    A unit opens a new stage after a transition or where it downsamples (projects, changes the
    width or strides); its module is the model's submodule of the unit's name, where there is one.
    """
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    stage = 1
    for i, f in enumerate(found.units):
        downsampling = f.shortcut_kind == "projection" or f.in_channels != f.out_channels or f.stride > 1
        if f.transition is not None:
            transitions[i] = f.transition
        if i > 0 and (f.transition is not None or downsampling):
            stage += 1
        units.append(
            Unit(
                index=i,
                name=f.name,
                stage=stage,
                in_channels=f.in_channels,
                out_channels=f.out_channels,
                stride=f.stride,
                downsampling=downsampling,
                shortcut_kind=f.shortcut_kind,
                shortcut=f.shortcut,
                residual=f.residual,
                post=f.post,
                module=_module(model, f.name, f.residual),
            )
        )
    return units, transitions


def structure_notes(units: list[Unit], transitions: dict[int, Fn], found: Discovered) -> list[str]:
    """The notes on what discovery found: posts, transitions, kinds of shortcut, layout, branches, widths."""
    notes = []
    if any(u.post is not identity for u in units):
        notes.append(POST_NOTE)
    if transitions:
        notes.append(TRANSITION_NOTE)
    if any(u.shortcut_kind == "projection" for u in units):
        notes.append(PROJECTION_NOTE)
    if any(u.shortcut_kind == "zero-pad" for u in units):
        notes.append(ZERO_PAD_NOTE)
    if any(u.shortcut_kind == "scaled" for u in units):
        notes.append(SCALED_NOTE)
    if any(f.layout for f in found.units):
        notes.append(LAYOUT_NOTE)
    return [*notes, BRANCH_NOTE, CHANNELS_NOTE]


def nested_note(nested: tuple[tuple[str, str | None, str], ...]) -> str:
    """One sentence on the residual additions that close no unit."""
    inside = [(where, unit) for where, unit, _ in nested if unit is not None]
    outside = [(where, why) for where, unit, why in nested if unit is None]
    parts = []
    if inside:
        where, unit = inside[0]
        parts.append(f"{len(inside)} inside residual branches, as part of them (e.g. one {where}, in unit {unit})")
    if outside:
        where, why = outside[0]
        parts.append(f"{len(outside)} in the stem, transitions or head (e.g. one {where}: {why})")
    one = len(nested) == 1
    return (
        f"{len(nested)} residual addition{'' if one else 's'} close{'s' if one else ''} no unit and stay"
        f"{'s' if one else ''} inside the part that holds {'it' if one else 'them'}: {'; '.join(parts)}. "
        "The path graph does not unravel them."
    )


def _module(model: nn.Module, name: str, residual: Fn) -> nn.Module:
    """The model's submodule of that name, else the residual branch's GraphModule."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if isinstance(module, nn.Module) and module is not model:
        return module
    return residual if isinstance(residual, nn.Module) else model


def _notes(
    units: list[Unit], transitions: dict[int, Fn], found: Discovered, opaque: tuple[tuple[str, str, str], ...]
) -> tuple[str, ...]:
    notes = [FALLBACK_NOTE, *structure_notes(units, transitions, found), EVAL_NOTE]
    if found.nested:
        notes.append(nested_note(found.nested))
    if opaque:
        listed = ", ".join(f"{path} ({kind})" for path, kind, _ in opaque[:6])
        more = f" and {len(opaque) - 6} more" if len(opaque) > 6 else ""
        notes.append(
            f"torch.fx cannot trace into {listed}{more}: each runs whole, inside the part that calls it "
            f"(first reason: {opaque[0][2]})."
        )
    notes.append(NO_RESPONSES_NOTE)
    return tuple(notes)


