"""The structure of a residual network, the one core abstraction: stem -> residual units -> head (``Topology``).

Adapters build a :class:`Topology` from a model; analyses and the executor see only this,
never the model's own attribute names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import Tensor, nn

ShortcutKind = Literal["identity", "zero-pad", "projection", "scaled", "gated", "dropout", "none"]
SHORTCUT_KINDS: tuple[str, ...] = ("identity", "zero-pad", "projection", "scaled", "gated", "dropout", "none")
JOINS: tuple[str, ...] = ("sum", "concat")
IN, OUT = "in", "out"  # a unit's own boundary nodes in its wiring

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Edge:
    """One edge of a unit's internal path graph (the unraveled view).

    ``source`` and ``target`` are ``"in"``, ``"out"`` or a node inside the unit; ``key`` names
    the edge within the unit, ``kind`` labels it, and ``length`` is 1 for an edge that passes a
    residual layer (what a path's length counts), else 0.
    """

    source: str
    target: str
    key: str
    kind: str
    length: int


@dataclass(frozen=True, eq=False)
class Unit:
    """One residual unit ``y = merge(shortcut(x), residual(x))``.

    ``join`` says how the two terms meet: ``"sum"`` is ``post(a + b)``, ``"concat"`` is
    ``post(cat([a, b], 1))`` (a DenseNet layer: ``a`` the features so far, ``b`` its
    ``residual_channels`` new ones; an OSA module: ``post`` the one-shot aggregation).
    ``post`` is ``relu`` for post-activation units (He et al. 2015) and the identity for
    pre-activation ones (He et al. 2016). Scaled and gated units (Identity Mappings) are sums of
    scaled / gated terms: ``shortcut`` returns ``g_s(x) * s(x)``, ``residual`` ``g_b(x) * F(x)``,
    so deleting one keeps the gated shortcut. A plain unit (``shortcut_kind == "none"``) has no
    shortcut: ``y = post(residual(x))``.

    ``wiring`` is the unit's internal path graph when it is more than one shortcut edge and one
    residual edge (an OSA module's chain); empty means that standard pair (see :attr:`edges`).
    ``responses`` are the modules whose outputs are the layer responses of He et al. Fig. 7
    (each 3x3 conv after its BN, before ReLU / addition), as ``(name, module)`` pairs in network
    order; ``responses_channels_last`` says their channels are the last dim (ConvNeXt's NHWC
    LayerNorm, ViT tokens), not dim 1.
    """

    index: int
    name: str
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    downsampling: bool
    shortcut_kind: str
    shortcut: Fn | None
    residual: Fn
    post: Fn
    module: nn.Module
    responses: tuple[tuple[str, nn.Module], ...] = ()
    responses_channels_last: bool = False
    join: str = "sum"
    residual_channels: int = 0  # channels the residual adds to a concatenation (join "concat")
    wiring: tuple[Edge, ...] = ()

    def __post_init__(self) -> None:
        if self.shortcut_kind not in SHORTCUT_KINDS:
            raise ValueError(f"unknown shortcut kind {self.shortcut_kind!r}")
        if (self.shortcut is None) != (self.shortcut_kind == "none"):
            raise ValueError("a unit has a shortcut callable exactly when its kind is not 'none'")
        if self.join not in JOINS:
            raise ValueError(f"unknown join {self.join!r}; valid: {', '.join(JOINS)}")
        if self.join == "concat" and (self.shortcut is None or self.residual_channels < 1):
            raise ValueError("a concatenating unit needs a shortcut and residual_channels >= 1")
        if self.wiring and not (
            any(e.source == IN for e in self.wiring) and any(e.target == OUT for e in self.wiring)
        ):
            raise ValueError(f"the wiring of {self.name} must leave 'in' and reach 'out'")

    @property
    def edges(self) -> tuple[Edge, ...]:
        """The unit's path graph: its ``wiring``, else one shortcut edge (if any) and one residual edge."""
        if self.wiring:
            return self.wiring
        residual = Edge(IN, OUT, "residual", "residual", 1)
        if self.shortcut is None:
            return (residual,)
        return (Edge(IN, OUT, "shortcut", self.shortcut_kind, 0), residual)

    @property
    def deletable(self) -> bool:
        """Whether dropping the residual branch leaves a well-defined unit.

        A residual unit always is (its shortcut carries the signal). A plain unit is only
        when it keeps the shape: deleting it then means skipping it (``y = x``).
        """
        return self.shortcut_kind != "none" or (
            not self.downsampling and self.in_channels == self.out_channels
        )

    def merge(self, shortcut_out: Tensor | None, residual_out: Tensor | None) -> Tensor:
        """``post(a + b)`` or ``post(cat([a, b], 1))``; ``None`` stands for a branch that contributes nothing.

        In a concatenation the missing residual is zeros of its width: the shape is kept.
        """
        if shortcut_out is None and residual_out is None:
            raise ValueError("merge needs at least one branch")
        if self.join == "concat":
            if shortcut_out is None:
                raise ValueError(f"{self.name} concatenates onto its shortcut, which cannot be missing")
            if residual_out is None:
                n, _, *spatial = shortcut_out.shape
                residual_out = shortcut_out.new_zeros((n, self.residual_channels, *spatial))
            return self.post(torch.cat([shortcut_out, residual_out], 1))
        if shortcut_out is None:
            total = residual_out
        elif residual_out is None:
            total = shortcut_out
        else:
            total = shortcut_out + residual_out
            if self.post is relu:
                # The sum is a fresh tensor no one else holds: rectify it in place (one pass over memory
                # less; the stream a prefix shares is the returned tensor, which nothing modifies after).
                return torch.relu_(total)
        assert total is not None
        return self.post(total)

    def forward(self, x: Tensor) -> Tensor:
        """The unit as the model runs it."""
        s = self.shortcut(x) if self.shortcut is not None else None
        return self.merge(s, self.residual(x))

    def forward_deleted(self, x: Tensor) -> Tensor:
        """The unit with its residual branch removed (Veit et al. 2016)."""
        if self.shortcut is None:
            if not self.deletable:
                raise ValueError(f"plain unit {self.name} changes shape and cannot be deleted")
            return x
        return self.merge(self.shortcut(x), None)


@dataclass(frozen=True, eq=False)
class Topology:
    """stem -> units (with optional non-deletable transitions before some of them) -> head.

    ``transitions[i]`` runs right before unit ``i`` (ConvNeXt's downsample layers); it is one
    edge of the path graph and never deleted. ``stem_responses`` are the stem's 3x3 conv
    responses (He et al. Fig. 7 counts the first layer as well), named like ``Unit.responses``.
    """

    family: str
    stem: Fn
    units: tuple[Unit, ...]
    head: Fn
    model: nn.Module
    transitions: dict[int, Fn] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    stem_responses: tuple[tuple[str, nn.Module], ...] = ()
    # How this topology was read (set by resnet_probe.adapters): the same reading of another model
    # object, e.g. a private copy on another device; see :meth:`rebind`.
    reader: Callable[[nn.Module], Topology] | None = field(default=None, repr=False)
    unread: int = 0  # residual additions in the model that close no unit (graph discovery): not unravelled

    def rebind(self, model: nn.Module) -> Topology:
        """The same unit view of ``model`` (a copy of this topology's model), read the way this one was."""
        if self.reader is None:
            raise ValueError(f"this {self.family} topology was built by hand and cannot be read off another model")
        return self.reader(model)

    def __len__(self) -> int:
        return len(self.units)

    @property
    def n_units(self) -> int:
        """Number of residual units."""
        return len(self.units)

    def unit_by_name(self, name: str) -> Unit:
        """The unit called ``name`` (e.g. ``layer2.0``)."""
        for unit in self.units:
            if unit.name == name:
                return unit
        raise KeyError(name)

    def stages(self) -> list[list[int]]:
        """Unit indices grouped by stage, in order."""
        out: dict[int, list[int]] = {}
        for unit in self.units:
            out.setdefault(unit.stage, []).append(unit.index)
        return [out[k] for k in sorted(out)]

    def rows(self) -> list[dict[str, object]]:
        """One row per part in network order: the stem, each transition and unit, the head."""
        out: list[dict[str, object]] = [{"part": "stem", "name": "", "stage": "", "channels": "", "stride": "",
                                         "shortcut": "", "deletable": ""}]
        for u in self.units:
            if u.index in self.transitions:
                out.append({"part": "transition", "name": f"before unit {u.index}", "stage": "", "channels": "",
                            "stride": "", "shortcut": "", "deletable": "no"})
            out.append({
                "part": f"unit {u.index}", "name": u.name, "stage": u.stage,
                "channels": f"{u.in_channels}->{u.out_channels}", "stride": u.stride,
                "shortcut": u.shortcut_kind + (" (downsampling)" if u.downsampling else ""),
                "deletable": "yes" if u.deletable else "no",
            })
        out.append({"part": "head", "name": "", "stage": "", "channels": "", "stride": "", "shortcut": "",
                    "deletable": ""})
        return out

    def __str__(self) -> str:
        lines = [f"{type(self.model).__name__} ({self.family}): stem -> {self.n_units} units -> head"]
        for row in self.rows():
            if row["part"] in ("stem", "head"):
                lines.append(f"  {row['part']}")
            elif row["part"] == "transition":
                lines.append(f"  transition {row['name']}")
            else:
                lines.append(
                    f"  {row['part']:<9} {row['name']:<24} stage {row['stage']}  {row['channels']:<10} "
                    f"stride {row['stride']}  {row['shortcut']}" + ("" if row["deletable"] == "yes" else "  (kept)")
                )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from jinja2 import Environment

        template = Environment(autoescape=True).from_string(_TOPOLOGY_HTML)
        return template.render(title=str(self).splitlines()[0], rows=self.rows(), notes=self.notes)

    def forward(self, x: Tensor) -> Tensor:
        """Run stem, units and head unchanged; must equal ``model(x)``."""
        h = self.stem(x)
        for unit in self.units:
            if unit.index in self.transitions:
                h = self.transitions[unit.index](h)
            h = unit.forward(h)
        return self.head(h)


_TOPOLOGY_HTML = """<div><strong>{{ title }}</strong><table>
<tr>{% for key in rows[0] %}<th>{{ key }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for value in row.values() %}<td>{{ value }}</td>{% endfor %}</tr>{% endfor %}
</table>{% for note in notes %}<p>{{ note }}</p>{% endfor %}</div>"""


def token_unit(
    index: int, name: str, width: int, module: nn.Module, residual: Fn,
    responses: tuple[tuple[str, nn.Module], ...] = (),
) -> Unit:
    """A transformer's attention or MLP unit: ``r + residual(r)`` on (batch, tokens, width), one stage, no stride."""
    return Unit(
        index=index, name=name, stage=1, in_channels=width, out_channels=width, stride=1, downsampling=False,
        shortcut_kind="identity", shortcut=identity, residual=residual, post=identity, module=module,
        responses=responses, responses_channels_last=True,
    )


def count_params(model: nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())


def relu(x: Tensor) -> Tensor:
    """Out-of-place ReLU: in-place ReLUs would corrupt shared prefix activations."""
    return torch.relu(x)


def identity(x: Tensor) -> Tensor:
    """The identity, as a named function (pre-activation merge)."""
    return x
