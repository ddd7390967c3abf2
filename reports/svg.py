"""Draw figures with matplotlib's Agg backend: inline SVG markup, and SVG + PDF files for papers."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from resnet_probe.reports.content import Figure  # noqa: E402

_XML_DECL = re.compile(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


@dataclass(frozen=True)
class Drawn:
    """One figure drawn once: its SVG document and, when asked for, its PDF bytes."""

    svg: str
    pdf: bytes | None = None

    @property
    def inline(self) -> str:
        """The ``<svg>`` element without XML declaration, to sit inside HTML."""
        return _XML_DECL.sub("", self.svg)


def draw(fig_spec: Figure, *, pdf: bool = False) -> Drawn:
    """Draw ``fig_spec`` on fresh axes and serialise it (SVG always, PDF on request)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, fig_spec.panels, figsize=(fig_spec.width, fig_spec.height), squeeze=False)
    try:
        fig_spec.draw(list(axes[0]))
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        pdf_bytes = None
        if pdf:
            pbuf = io.BytesIO()
            fig.savefig(pbuf, format="pdf", metadata={"CreationDate": None})
            pdf_bytes = pbuf.getvalue()
    finally:
        plt.close(fig)
    return Drawn(buf.getvalue(), pdf_bytes)


def figure_svg(fig_spec: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML declaration, no external refs)."""
    return draw(fig_spec).inline
