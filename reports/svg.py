"""Draw figures with matplotlib's Agg backend and inline them as SVG markup."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .content import Figure  # noqa: E402

_XML_DECL = re.compile(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


def figure_svg(fig_spec: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML declaration, no external refs)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(
        1, fig_spec.panels, figsize=(fig_spec.width, fig_spec.height), squeeze=False
    )
    try:
        fig_spec.draw(list(axes[0]))
        fig.tight_layout()
        buf = io.StringIO()
        # Unique ids per figure: several inline SVGs share one HTML id space.
        fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    return _XML_DECL.sub("", buf.getvalue())
