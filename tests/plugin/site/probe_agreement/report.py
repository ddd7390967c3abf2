"""The report of ``agreement``: a reading and a table (registered on import through its entry point)."""

from __future__ import annotations

from resnet_probe.reports.content import Table, interval_text, pct, register

from probe_agreement.analysis import AgreementResult
from resnet_probe.results import RunRecord


@register(AgreementResult)
def agreement_reading(result: AgreementResult, record: RunRecord) -> list[str]:
    """Which deletion changes the most predictions."""
    worst = min(range(len(result.agree)), key=result.agree.__getitem__)
    share = result.agree[worst] / result.n
    return [f"Deleting {result.units[worst]} keeps the prediction of only {pct(share)} of {result.n} images "
            f"({interval_text(result.ci[worst])}), the fewest of any unit."]


@register(AgreementResult)
def agreement_tables(result: AgreementResult, record: RunRecord) -> list[Table]:
    """One row per unit."""
    rows = [[u, a, pct(a / result.n), interval_text(c)]
            for u, a, c in zip(result.units, result.agree, result.ci, strict=True)]
    return [Table("Predictions kept per deleted unit", ["unit", "kept", "share", "interval"], rows)]
