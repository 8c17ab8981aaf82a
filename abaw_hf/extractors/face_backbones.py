"""Face networks shared by POSTER and POSTER V2: MobileFaceNet (landmark stream) and IR-50 (image stream).

Attribute names follow the official checkpoints' keys (``conv_23.conv_dw.bn``, ``body1.0.res_layer.3``, ...).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNormAct(nn.Module):
    """Conv (no bias) + BatchNorm, + PReLU when ``activation`` (MobileFaceNet's Conv_block / Linear_block)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, padding: int = 0,
        groups: int = 1, activation: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.prelu = nn.PReLU(out_channels) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class DepthwiseUnit(nn.Module):
    """1x1 expand -> depthwise 3x3 -> 1x1 project, optionally residual."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, hidden)
        self.conv_dw = ConvNormAct(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden)
        self.project = ConvNormAct(hidden, out_channels, activation=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class DepthwiseStack(nn.Module):
    def __init__(self, channels: int, blocks: int, hidden: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            *(DepthwiseUnit(channels, channels, hidden, stride=1, residual=True) for _ in range(blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LandmarkHead(nn.Module):
    """MobileFaceNet's GDC head (136 landmark coordinates). Stored in the checkpoints, unused for features."""

    def __init__(self, embedding_size: int = 136) -> None:
        super().__init__()
        self.conv_6_dw = ConvNormAct(512, 512, kernel=7, groups=512, activation=False)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_dw(x).flatten(1)))


class MobileFaceNet(nn.Module):
    """112-px landmark network; returns the 28x28x64, 14x14x128 and 7x7x512 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(3, 64, kernel=3, stride=2, padding=1)
        self.conv2_dw = ConvNormAct(64, 64, kernel=3, padding=1, groups=64)
        self.conv_23 = DepthwiseUnit(64, 64, hidden=128, stride=2, residual=False)
        self.conv_3 = DepthwiseStack(64, blocks=4, hidden=128)
        self.conv_34 = DepthwiseUnit(64, 128, hidden=256, stride=2, residual=False)
        self.conv_4 = DepthwiseStack(128, blocks=6, hidden=256)
        self.conv_45 = DepthwiseUnit(128, 128, hidden=512, stride=2, residual=False)
        self.conv_5 = DepthwiseStack(128, blocks=2, hidden=256)
        self.conv_6_sep = ConvNormAct(128, 512)
        self.output_layer = LandmarkHead()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.conv_23(self.conv2_dw(self.conv1(x)))
        stage3 = self.conv_3(x)
        stage4 = self.conv_4(self.conv_34(stage3))
        conv_features = self.conv_6_sep(self.conv_5(self.conv_45(stage4)))
        return stage3, stage4, conv_features


class IRUnit(nn.Module):
    """ArcFace "IR" residual unit: BN-conv-PReLU-conv(stride)-BN plus a (strided) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # plain subsampling
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


# The three IR-50 stages the POSTER models keep: (in, out, units); the fourth stage is dropped.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14))


def _ir_stage(in_channels: int, depth: int, units: int) -> list[IRUnit]:
    return [IRUnit(in_channels if i == 0 else depth, depth, 2 if i == 0 else 1) for i in range(units)]


class IR50(nn.Module):
    """IR-50 image stream on 112-px input: 56x56x64, 28x28x128 and 14x14x256 stage outputs.

    ``split_stages``: POSTER V2 stores the stages as ``body1..3``, POSTER V1 as one ``body``.
    """

    def __init__(self, split_stages: bool) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        # ArcFace embedding head of the 4-stage network: stored in the checkpoints, unused.
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(0.0), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)
        )
        stages = [_ir_stage(*stage) for stage in IR50_STAGES]
        self.split_stages = split_stages
        if split_stages:
            self.body1, self.body2, self.body3 = (nn.Sequential(*units) for units in stages)
        else:
            self.body = nn.Sequential(*(unit for units in stages for unit in units))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """All three stage outputs (split) or the last one only (single body)."""
        x = self.input_layer(x)
        if not self.split_stages:
            return (self.body(x),)
        stage1 = self.body1(x)
        stage2 = self.body2(stage1)
        return stage1, stage2, self.body3(stage2)


class SEGate(nn.Module):
    """POSTER's SE_block on a vector: x * sigmoid(W2 relu(W1 x))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.linear2(torch.relu(self.linear1(x))))


class ClassificationHead(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


def to_112(pixel_values: torch.Tensor) -> torch.Tensor:
    """Both streams see the 224-px input subsampled to 112 px (the official nearest interpolation)."""
    return nn.functional.interpolate(pixel_values, size=112)
