"""`resnet-probe experiment depth|shortcut|blocks`: a grid of trainings over the cache, one report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, print_reading, rich_progress
from resnet_probe.cli.training import training_progress
from rich.table import Table

from resnet_probe.errors import ProbeError
from resnet_probe.settings import CONFIDENCE, RunSettings, reads_digits

if TYPE_CHECKING:
    from resnet_probe.experiments.result import ExperimentResult

Which = Annotated[str, typer.Argument(help="depth | shortcut | blocks.")]
Depths = Annotated[
    Optional[str], typer.Option("--depths", help="depth: the depths, e.g. 20,32,44,56,110 (the default).")
]
Depth = Annotated[
    Optional[int],
    typer.Option("--depth", min=1, help="shortcut: the depth of every variant (default 110; digits 56); blocks: the basic ResNet whose parameters the others match (default 56)."),
]
Match = Annotated[
    Optional[float],
    typer.Option("--match", min=0.01, help="blocks: a net matches when its parameters lie within this share of the ResNet's (default 0.25)."),
]
BlockModels = Annotated[
    Optional[list[str]], typer.Option("--models", "-m", help="blocks: these zoo nets instead (repeatable), compared with the first.")
]
Repeats = Annotated[int, typer.Option("--repeats", "-n", min=1, max=100, help="Seeds per cell (--seed, --seed+1, ...): mean ± std and the best.")]
Then = Annotated[
    Optional[str],
    typer.Option("--then", help="Analyses to run on every trained net, e.g. lesion,response-std; the report links them."),
]


def experiment(
    which: Which,
    depths: Depths = None,
    depth: Depth = None,
    match: Match = None,
    models: BlockModels = None,
    repeats: Repeats = 1,
    dataset: o.Dataset = None,
    data: o.Data = None,
    limit: o.Limit = None,
    epochs: o.Epochs = None,
    iters: o.Iters = None,
    lr: o.LearningRate = None,
    batch_size: o.TrainBatch = None,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    precision: o.TrainPrecision = "auto",
    out_dir: o.Out = None,
    force: o.Force = False,
    title: o.Title = None,
    download: o.Download = False,
    confidence: o.Confidence = CONFIDENCE,
    then: Then = None,
    train_missing: o.TrainMissing = True,
) -> None:
    """Train a grid of nets with He et al.'s recipe (digits: a short one) and answer the experiment's question.

    depth: plain and residual nets of each depth. shortcut: no shortcut, options A/B/C and He et al. 2016's variants at one depth. blocks: basic, bottleneck, pre-activation, DenseNet-BC and VoVNet nets at matched parameters.

    Every run is cached by (model, data, recipe, seed): a second run, or one after a kill, trains only what is missing; --no-train renders from the cache alone.

    Example: resnet-probe experiment depth --depths 20,32 --repeats 3
    """
    from resnet_probe import distributed
    from resnet_probe.experiments import ExperimentSettings, TrainOptions, build_grid, open_splits, run_into

    grid = build_grid(which, depths=_depths(depths), depth=depth, match=match, models=tuple(models or ()),
                      dataset="digits" if reads_digits(dataset, data) else dataset)
    train_src, test_src = open_splits(dataset, data, limit, download)
    options = TrainOptions(epochs=epochs, iters=iters, lr=lr, batch_size=batch_size, device=device, precision=precision)
    stored = {"experiment": which, "depths": _depths(depths), "depth": depth, "match": match, "models": models,
              "repeats": repeats, "epochs": epochs, "iters": iters, "lr": lr, "batch_size": batch_size,
              "limit": limit, "then": then}
    then_settings = RunSettings(model="", dataset=dataset, data=data, limit=limit, device=device, seed=seed,
                                force=force, confidence=confidence, download=download)
    settings = ExperimentSettings(repeats, seed, options, confidence, train_missing)
    out_path, result, outcome = run_into(
        out_dir, grid, train_src, test_src, settings, force=force,
        then=[t.strip() for t in (then or "").split(",") if t.strip()], then_settings=then_settings, title=title,
        stored_options={k: v for k, v in stored.items() if v is not None},
        progress=training_progress, then_progress=rich_progress, log=lambda text: out.print(text, markup=False),
    )
    if not distributed.is_main():
        out.quiet = True
        return
    out.print(f"wrote {out_path / 'report.html'}, results.json, results.csv and figures/ "
              f"({outcome.trained} runs trained, {outcome.cached} from the cache, {outcome.seconds:.0f} s)")
    out.print(cells_table(result))
    assert result.run is not None
    print_reading(result.run, result)


def _depths(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ProbeError(f"--depths {text!r}: expected whole numbers separated by commas, e.g. 20,32,56") from None
    if not values:
        raise ProbeError("--depths: give at least one depth, e.g. 20,56")
    return values


def cells_table(result: ExperimentResult) -> Table:
    """One row per cell: parameters, train and test error (mean ± std, best) with the test interval."""
    many = result.repeats > 1
    table = Table(title=f"experiment {result.experiment} on {result.dataset}")
    named = any(c.cell != c.model for c in result.cells)
    columns = ["cell"] + ["model"] * named + ["params", "train err %", "test err % [interval]"]
    columns += ["best test %"] if many else []
    columns += ["MFLOPs", "train img/s", "infer img/s"] if result.experiment == "blocks" else []
    columns += ["paper %"] if any(c.paper for c in result.cells) else []
    for column in columns:
        table.add_column(column)
    for c in result.cells:
        row = [c.cell] + [c.model] * named + [f"{c.params / 1e6:.2f}M", _mean_std(c.train_error_mean, c.train_error_std),
               f"{_mean_std(c.test_error_mean, c.test_error_std)} [{100 * c.test_ci[0]:.1f}, {100 * c.test_ci[1]:.1f}]"]
        row += [f"{100 * c.test_error_best:.2f}"] if many else []
        if result.experiment == "blocks":
            row += [f"{c.flops / 1e6:.1f}", _rate(c.train_images_per_s), _rate(c.inference_images_per_s)]
        if any(x.paper for x in result.cells):
            row += [c.paper or ""]
        table.add_row(*row)
    return table


def _mean_std(mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"
