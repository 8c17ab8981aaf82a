"""EAC (Erasing Attention Consistency) ResNet-50: the VGGFace2 Caffe-style ResNet-50, 2048-d."""

from __future__ import annotations

import torch
from torch import nn

from .base import Extractor, PreprocessConfig
from .registry import register_extractor

# The VGGFace2 release expects Caffe-style input: BGR, 0..255, minus its mean image, no scaling.
VGGFACE2_MEAN_BGR = (91.4953, 103.8827, 131.0912)
_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # (width, blocks) of layer1..layer4
_EXPANSION = 4


class CaffeBottleneck(nn.Module):
    """Bottleneck with the stride on the first 1x1 conv (Caffe / VGGFace2), not on the 3x3 as in
    torchvision v1.5 and timm; that is why timm blocks cannot reproduce this network."""

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * _EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _resnet50_trunk() -> list[tuple[str, nn.Module]]:
    """(name, module) of the VGGFace2 ResNet-50 in forward order, before pooling."""
    modules: list[tuple[str, nn.Module]] = [
        ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)),
        ("bn1", nn.BatchNorm2d(64)),
        ("relu", nn.ReLU(inplace=True)),
        ("maxpool", nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)),
    ]
    in_channels = 64
    for index, (width, blocks) in enumerate(_STAGES):
        stride = 1 if index == 0 else 2
        layer = []
        for block in range(blocks):
            layer.append(CaffeBottleneck(in_channels, width, stride if block == 0 else 1))
            in_channels = width * _EXPANSION
        modules.append((f"layer{index + 1}", nn.Sequential(*layer)))
    return modules


@register_extractor("eac")
class EACExtractor(Extractor):
    """2048-d average-pooled ``layer4`` output.

    Variant ``7cls``: the EAC model (keys ``features.0`` = conv1, ``features.1`` = bn1,
    ``features.4..7`` = layer1..4, ``fc`` 7 classes). Variant ``vggface2``: the VGGFace2 backbone that EAC
    starts from (``resnet50_ft_weight.pkl``, a pickle of numpy arrays: load with ``allow_pickle=True``),
    with the VGGFace2 release's own BGR mean-subtraction preprocessing.
    """

    dim = 2048
    onnx_on_cpu = True  # bench_runtime.py: onnxruntime faster on CPU at batch 1, 8 and 32
    channels_last = True
    fold_batchnorm = True
    preprocess_cfg = PreprocessConfig(input_size=224)  # EAC: PIL RGB, Resize(224), ImageNet mean/std
    variant_preprocess = {
        "vggface2": PreprocessConfig(
            input_size=224,
            mean=tuple(m / 255 for m in VGGFACE2_MEAN_BGR),
            std=(1 / 255,) * 3,  # (x/255 - m/255) / (1/255) = x - m
            color_order="BGR",
        )
    }
    layouts = {"7cls": "eac_model_7cls", "vggface2": "vggface2_resnet50_backbone"}
    _num_classes = {"7cls": 7, "vggface2": 8631}

    def __init__(self, variant: str | None = None) -> None:
        super().__init__(variant)
        trunk = _resnet50_trunk()
        if self.variant == "vggface2":
            for name, module in trunk:
                self.add_module(name, module)
            self._trunk_names = [name for name, _ in trunk]
        else:
            self.features = nn.Sequential(*(module for _, module in trunk))
        self.fc = nn.Linear(512 * _EXPANSION, self._num_classes[self.variant])

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "vggface2":
            for name in self._trunk_names:
                x = getattr(self, name)(x)
            return x
        return self.features(x)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # The official AvgPool2d(7) over the 7x7 map of a 224 input is the global mean.
        return self._trunk(pixel_values).mean(dim=(2, 3))

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward(pixel_values))
