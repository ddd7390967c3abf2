"""`resnet-probe eval`: accuracy of the unchanged model."""

from __future__ import annotations

from resnet_probe.analyses.accuracy import EvalAnalysis, EvalResult

from . import options as o
from .console import out
from .pipeline import run_analysis


def evaluate(
    model: o.Model,
    checkpoint: o.Checkpoint = None,
    dataset: o.Dataset = None,
    data: o.Data = None,
    limit: o.Limit = None,
    batch_size: o.BatchSize = 256,
    device: o.Device = "auto",
    seed: o.Seed = 0,
    out_dir: o.Out = None,
    force: o.Force = False,
    title: o.Title = None,
    random_init: o.RandomInit = False,
    pretrained: o.Pretrained = False,
    download: o.Download = False,
    precision: o.Precision = "fp32",
    split: o.Split = "test",
) -> None:
    """Top-1 accuracy of a model on a data set; writes results.json and report.html."""
    common = o.Common(
        model, checkpoint, dataset, data, limit, batch_size, device, seed, out_dir, force, title,
        random_init, pretrained, download, precision, split,
    )
    _, _, result = run_analysis(EvalAnalysis(), common, {})
    assert isinstance(result, EvalResult)
    out.print(
        f"accuracy {100 * result.accuracy:.2f} % ({result.correct}/{result.n} correct), "
        f"loss {result.loss:.4f}"
    )
