"""Report content for the layer-response std (He et al. 2015, Fig. 7)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from resnet_probe.reports.content import Figure, Table, level_value, p_text, register

from resnet_probe.analyses.response_std import ModelStd, ResponseStdResult
from resnet_probe.results import RunRecord

if TYPE_CHECKING:
    import pandas as pd


WEAK_ACCURACY = 0.5  # below this recorded test accuracy the reading flags a model as barely trained
TENSOR_TEXT = {"norm": "after BN", "conv": "3x3 conv output", "mixed": "mixed", "": ""}
PREACT_REASON = (
    "in pre-activation units each BN comes before a conv, not after it, so the last conv's output is what the "
    "unit adds to its shortcut"
)
DENSE_REASON = (
    "a DenseNet layer's 3x3 output is its new feature maps, concatenated as they are and normalised later by "
    "each following layer's own BN"
)


def _label(model: ModelStd) -> str:
    return model.spec.removeprefix("zoo:")


def _frame(result: ResponseStdResult) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for model in result.models:
        ranked = sorted(model.stds, reverse=True)
        for i, (std, sorted_std) in enumerate(zip(model.stds, ranked, strict=True), start=1):
            rows.append({"model": _label(model), "layer": i, "std": std, "sorted std": sorted_std})
    return pd.DataFrame(rows)


@register(ResponseStdResult)
def response_std_figures(result: ResponseStdResult, record: RunRecord) -> list[Figure]:
    """Two panels: std per layer in network order, and the same values sorted descending."""
    import seaborn as sns

    frame = _frame(result)
    order = [_label(m) for m in result.models]
    dashes = {_label(m): "" if m.residual else (4, 2) for m in result.models}
    positive = [v for v in frame["std"] if v > 0]
    # Untrained deep nets reach stds 1000x a trained net's: a linear axis would flatten the rest.
    log = bool(positive) and max(positive) > 100 * min(positive)

    def draw(axes: list[Axes]) -> None:
        for ax, y, title in ((axes[0], "std", "network order"), (axes[1], "sorted std", "sorted (descending)")):
            sns.lineplot(
                data=frame,
                x="layer",
                y=y,
                hue="model",
                hue_order=order,
                style="model",
                style_order=order,
                dashes=dashes,
                ax=ax,
                linewidth=1.4,
            )
            ax.set_title(title)
            ax.set_xlabel("layer index (3x3 conv, in units)")
            ax.set_ylabel("std of response" + (" (log scale)" if log else ""))
            if log:
                ax.set_yscale("log")
        legend = axes[1].get_legend()
        if legend is not None:
            legend.remove()

    caption = (
        "Std of each 3x3 conv's response after BN, before ReLU / addition (He et al. 2015, Fig. 7): "
        "left in network order, right sorted descending. Solid: residual nets; dashed: plain nets."
    )
    return [Figure(caption, draw, panels=2, width=11.0, height=4.2)]


@register(ResponseStdResult)
def response_std_tables(result: ResponseStdResult, record: RunRecord) -> list[Table]:
    """A summary per model, then every layer's std side by side."""
    summary = Table(
        f"Response std per model over {result.n_images} images",
        [
            "model", "kind", "layers", "mean std", "median std", "max std", "min std", "test accuracy when trained",
            "responses",
        ],
        [
            [
                _label(m),
                "residual" if m.residual else "plain",
                len(m.layers),
                round(statistics.fmean(m.stds), 4),
                round(statistics.median(m.stds), 4),
                round(max(m.stds), 4),
                round(min(m.stds), 4),
                "n/a" if m.accuracy is None else f"{100 * m.accuracy:.2f} %",
                TENSOR_TEXT.get(m.tensor, m.tensor),
            ]
            for m in result.models
            if m.layers
        ],
    )
    depth = max((len(m.layers) for m in result.models), default=0)
    per_layer = Table(
        "Std of every response layer (network order; empty where a model has fewer layers)",
        ["layer"] + [_label(m) for m in result.models],
        [
            [i + 1]
            + [(f"{m.layers[i].name}: {m.layers[i].std:.4f}" if i < len(m.layers) else "") for m in result.models]
            for i in range(depth)
        ],
    )
    return [summary, per_layer]


@register(ResponseStdResult)
def response_std_reading(result: ResponseStdResult, record: RunRecord) -> list[str]:
    """Residual against plain at equal depth, and deeper ResNets against shallower ones."""
    models = [m for m in result.models if m.layers]
    if not models:
        return []
    mean = {m.spec: statistics.fmean(m.stds) for m in models}
    sentences = [
        "Mean response std: "
        + ", ".join(f"{_label(m)} {mean[m.spec]:.3f}" for m in models)
        + f" (over {result.n_images} images)."
    ]
    plain = {m.depth: m for m in models if not m.residual and m.depth}
    for res in models:
        if not res.residual or res.depth is None or res.depth not in plain:
            continue
        twin = plain[res.depth]
        smaller = mean[res.spec] < mean[twin.spec]
        from scipy.stats import mannwhitneyu  # scipy.stats takes a while to import: only here

        # Every comparison a test: are the two nets' layer stds drawn from one distribution?
        p = float(mannwhitneyu(res.stds, twin.stds, alternative="two-sided").pvalue)
        differ = p < 1 - level_value(record)
        verdict = (
            ("as He et al. 2015 (Fig. 7) report, the residual functions are closer to zero than the plain layers: "
             "this run agrees." if smaller
             else "He et al. 2015 (Fig. 7) report the opposite (smaller responses in ResNets): this run disagrees.")
            if differ
            else "the two sets of layer stds do not differ significantly, so these nets neither support nor "
            "contradict He et al. 2015's finding (Fig. 7): this run cannot tell."
        )
        sentences.append(
            f"{_label(res)} responds {'more weakly' if smaller else 'more strongly'} than its plain twin "
            f"{_label(twin)} ({mean[res.spec]:.3f} vs {mean[twin.spec]:.3f} mean std over "
            f"{len(res.stds)} and {len(twin.stds)} layers; Mann–Whitney p = {p_text(p)}): {verdict}"
        )
    residual = sorted((m for m in models if m.residual and m.depth), key=lambda m: m.depth or 0)
    if len(residual) > 1:
        values = [mean[m.spec] for m in residual]
        falling = all(b < a for a, b in zip(values, values[1:], strict=False))
        trail = ", ".join(f"{_label(m)} {mean[m.spec]:.3f}" for m in residual)
        sentences.append(
            f"With depth the ResNets' mean response std goes {trail}: "
            + (
                "it shrinks as the nets get deeper, as in He et al. (each layer modifies the signal less)."
                if falling
                else "not monotonically smaller with depth, unlike He et al.'s CIFAR-10 finding."
            )
        )
    weak = [m for m in models if m.accuracy is not None and m.accuracy < WEAK_ACCURACY]
    if weak:
        sentences.append(
            "Trained only weakly: "
            + ", ".join(f"{_label(m)} ({100 * (m.accuracy or 0):.1f} % test accuracy when trained)" for m in weak)
            + "; their responses are those of barely trained nets, so read comparisons with them with care."
        )
    return sentences + _tensors_taken(models)


def _tensors_taken(models: list[ModelStd]) -> list[str]:
    """Which tensor each model's responses are, and why where it is not the BN output."""
    by_tensor: dict[str, list[ModelStd]] = {}
    for m in models:
        by_tensor.setdefault(m.tensor, []).append(m)
    sentences = []
    if "norm" in by_tensor:
        names = ", ".join(_label(m) for m in by_tensor["norm"])
        sentences.append(f"Responses of {names}: each 3x3 conv's output after its BN, before the ReLU or the addition.")
    if "conv" in by_tensor:
        convs = by_tensor["conv"]
        dense = [m for m in convs if "densenet" in m.family]
        reasons = ([PREACT_REASON] if len(dense) < len(convs) else []) + ([DENSE_REASON] if dense else [])
        sentences.append(
            f"Responses of {', '.join(_label(m) for m in convs)}: the raw 3x3 conv outputs, because no BN follows "
            f"the conv inside their units: {'; '.join(reasons)}."
        )
    if "mixed" in by_tensor:
        names = ", ".join(_label(m) for m in by_tensor["mixed"])
        sentences.append(f"Responses of {names}: BN outputs and raw conv outputs, as the layer names say.")
    return sentences
