"""HTML reports: seaborn figures per result type and Jinja2 templates, one self-contained file."""

from resnet_probe.reports.render import render_report, write_report

__all__ = ["render_report", "write_report"]
