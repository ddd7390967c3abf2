"""Import what writing a run directory needs (the renderer, matplotlib, seaborn, pandas) while the analysis computes.

About 1.5 s of a CLI run on a 2-core machine is these imports; convolutions release the GIL, so a
thread that imports them during the computation takes that time off the command's total.
Imports are thread-safe (per-module locks): whichever thread gets to a module first initialises
it and the other waits for it.
"""

from __future__ import annotations

import threading


def _import_report_modules() -> None:
    import matplotlib.backends.backend_pdf  # noqa: F401  (figures/*.pdf)
    import matplotlib.backends.backend_svg  # noqa: F401
    import pandas  # noqa: F401  (results.csv)

    from resnet_probe.renderers import renderer

    renderer()  # the report modules, matplotlib and seaborn
    from resnet_probe.reports import analyses  # noqa: F401  (every analysis's figures and reading)


def start() -> threading.Thread:
    """Start the imports in a daemon thread; join it (or not) as you like."""
    thread = threading.Thread(target=_import_report_modules, name="preload-report", daemon=True)
    thread.start()
    return thread
