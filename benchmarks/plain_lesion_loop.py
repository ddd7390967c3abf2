"""The single-delete sweep as a user would write it in plain PyTorch: one full forward per deletion.

    python benchmarks/plain_lesion_loop.py --model resnet56 --json counts.json

The published akamaster weights and the 846 shipped CIFAR-10 test images, fp32, NCHW, batch
256, ``torch.inference_mode``: for each residual block, its forward is replaced by
``relu(shortcut(x))`` (the block without its residual branch), the whole test set is run,
the correct predictions are counted, the block is restored. Prints the compute seconds (the
loop alone) and writes the counts, so ``cli_vs_loop.py`` can time the whole process and
compare every configuration's count with resnet-probe's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resnet_probe.data.known import SAMPLE_FILE
from resnet_probe.models.weights import PUBLISHED
from resnet_probe.models.zoo.cifar import CifarResNet

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # akamaster's ImageNet normalisation
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def main(argv: list[str] | None = None) -> int:
    """Load, sweep, print the time, write the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", choices=("resnet20", "resnet56"))
    parser.add_argument("--json", type=Path, required=True, help="where the correct counts go")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    depth = int(args.model.removeprefix("resnet"))
    model = CifarResNet((depth - 2) // 6, num_classes=10)
    state = torch.load(PUBLISHED[(args.model, "cifar10")].path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    model.eval()
    with np.load(SAMPLE_FILE) as f:
        images = torch.from_numpy(f["images"]).permute(0, 3, 1, 2).float().div(255)
        labels = torch.from_numpy(f["labels"]).long()
    x_all = (images - MEAN) / STD
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3) for b in layer]

    def correct() -> int:
        hits = 0
        with torch.inference_mode():
            for start in range(0, len(x_all), args.batch_size):
                logits = model(x_all[start : start + args.batch_size])
                hits += int((logits.argmax(1) == labels[start : start + args.batch_size]).sum())
        return hits

    started = time.perf_counter()
    counts = {"baseline": correct()}
    for i, block in enumerate(blocks):
        block.forward = lambda x, b=block: F.relu(b.shortcut(x))  # type: ignore[method-assign]
        counts[str(i)] = correct()
        del block.forward  # back to the class's forward
    seconds = time.perf_counter() - started
    args.json.write_text(json.dumps({"seconds": seconds, "counts": counts}))
    print(f"plain loop: {len(blocks) + 1} full passes over {len(x_all)} images in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
