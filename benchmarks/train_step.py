"""Seconds per training step: the plain fp32 loop against `train --precision bf16` on this machine.

    python benchmarks/train_step.py --model densenet_bc190_k40 --batch 32 --rounds 3

The plain loop is what a user writes (fp32, NCHW: forward, cross-entropy, backward, SGD step);
the other way is the training loop's own step (``training.loop._step``) under bf16 autocast with
the model and batches channels-last, as ``resnet-probe train --precision bf16`` runs it. Both
start from the same random-weight zoo model and take the same batches; each round times
``--steps`` steps after one untimed warm-up step, best of ``--rounds``. Prints seconds per step,
the ratio, and the two losses of the last step (bf16 rounds, so they agree only roughly).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from common import setup

from resnet_probe.models.load import load_model
from resnet_probe.training.loop import _step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch", type=int, default=32, help="images per step (the digits recipe's 32)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="repeats; the best is kept")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", choices=("cpu",), help="CPU only: GPUs train bf16 by default")
    args = parser.parse_args()
    device = setup(args)
    base = load_model(f"zoo:{args.model}", weights="random", num_classes=10).model
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)

    def plain(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def ours(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
        return _step(model, opt, scaler, x, y, torch.bfloat16, device)[0]

    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ways = {"plain loop, fp32": (plain, False), "train --precision bf16": (ours, True)}
    best: dict[str, float] = {}
    last: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (step, channels_last) in ways.items():
            model = copy.deepcopy(base).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            step(model, opt)  # warm-up: allocator, oneDNN primitives
            started = time.perf_counter()
            for _ in range(args.steps):
                last[name] = step(model, opt)
            per_step = (time.perf_counter() - started) / args.steps
            best[name] = min(best.get(name, float("inf")), per_step)
    threads = torch.get_num_threads()
    print(f"{args.model}, batch {args.batch}, {threads} threads; best of {args.rounds} x {args.steps} steps")
    naive = best["plain loop, fp32"]
    for name, seconds in best.items():
        print(f"{name:24s} {seconds:8.3f} s/step  {naive / seconds:5.2f}x  last loss {last[name]:.4f}")


if __name__ == "__main__":
    main()
