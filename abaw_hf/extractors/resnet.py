"""ResNet-18 pre-trained on MS-Celeb-1M (torchvision key names), built from timm's ResNet."""

from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, ResNet

from .base import Extractor, PreprocessConfig
from .registry import register_extractor

# timm's ResNet children in forward order up to the last stage (global_pool and fc follow).
_TRUNK = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4")


@register_extractor("resnet18")
class ResNet18Extractor(Extractor):
    """512-d globally average-pooled ``layer4`` output of a ResNet-18 (file ``resnet18_msceleb.pth``)."""

    dim = 512
    channels_last = True
    onnx_on_cpu = True  # bench_runtime.py: onnxruntime faster on CPU at batch 1, 8 and 32
    fold_batchnorm = True
    preprocess_cfg = PreprocessConfig(input_size=224)
    layouts = {"msceleb": "resnet18_msceleb_torchvision"}

    def __init__(self, variant: str | None = None, num_classes: int = 1000) -> None:
        super().__init__(variant)
        resnet = ResNet(block=BasicBlock, layers=(2, 2, 2, 2), num_classes=num_classes)
        # timm uses torchvision's parameter names; registering its children directly on the
        # extractor makes our state dict keys exactly the checkpoint's (conv1, layer1.0.bn1, fc, ...).
        for name, child in resnet.named_children():
            self.add_module(name, child)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values
        for name in _TRUNK:
            x = getattr(self, name)(x)
        return self.global_pool(x)
