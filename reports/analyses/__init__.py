"""Report content (figures, tables, reading) of the built-in analyses, one module each.

Importing this package imports every module in it, which registers their singledispatch
implementations in :mod:`resnet_probe.reports.content`.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
