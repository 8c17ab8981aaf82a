"""POSTER (V1): landmark and image token streams fused by a three-scale cross-attention pyramid, 512-d."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Extractor, PreprocessConfig
from .face_backbones import IR50, ClassificationHead, MobileFaceNet, Mlp, SEGate, to_112
from .registry import register_extractor

EMBED_DIM = 512
DEPTH = 8
NUM_HEADS = 8
STREAM_TOKENS = 49 + 1  # 7x7 tokens + a mean token, per stream
ALL_TOKENS = 2 * STREAM_TOKENS


class CrossAttention(nn.Module):
    """Keys/values from one stream, queries straight from the other stream's (normed) tokens."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, source: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = source.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        k, v = self.kv(source).reshape(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        q = queries.reshape(batch, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, -1, dim))


class CrossFusionBlock(nn.Module):
    """Image tokens attend to landmark queries and vice versa; a 1x1 Conv1d then mixes all 100 tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn_img = CrossAttention(dim, NUM_HEADS)
        self.attn_lm = CrossAttention(dim, NUM_HEADS)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp1 = Mlp(dim, dim * 2)
        self.mlp2 = Mlp(dim, dim * 2)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.norm4 = nn.LayerNorm(dim, eps=1e-6)
        self.conv = nn.Conv1d(ALL_TOKENS, ALL_TOKENS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, landmark = x[:, :STREAM_TOKENS], x[:, STREAM_TOKENS:]
        normed = self.norm1(x)
        image = image + self.attn_img(normed[:, :STREAM_TOKENS], normed[:, STREAM_TOKENS:])
        image = image + self.mlp1(self.norm2(image))
        normed = self.norm3(x)
        landmark = landmark + self.attn_lm(normed[:, STREAM_TOKENS:], normed[:, :STREAM_TOKENS])
        landmark = landmark + self.mlp2(self.norm4(landmark))
        return self.conv(torch.cat([image, landmark], dim=1))


class PyramidLevelBlock(nn.Module):
    """One block at embedding widths 512/256/128; coarser levels are upsampled into finer ones."""

    def __init__(self) -> None:
        super().__init__()
        self.block_l = CrossFusionBlock(EMBED_DIM)
        self.block_m = CrossFusionBlock(EMBED_DIM // 2)
        self.block_s = CrossFusionBlock(EMBED_DIM // 4)
        self.upsample_m = nn.ConvTranspose1d(ALL_TOKENS, ALL_TOKENS, kernel_size=2, stride=2)
        self.upsample_s = nn.ConvTranspose1d(ALL_TOKENS, ALL_TOKENS, kernel_size=2, stride=2)

    def forward(self, levels: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        large, medium, small = self.block_l(levels[0]), self.block_m(levels[1]), self.block_s(levels[2])
        medium = self.upsample_s(small) + medium
        large = large + self.upsample_m(medium)
        return large, medium, small


class PyramidFusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))  # stored, unused: a mean token is used
        self.pos_embed = nn.Parameter(torch.zeros(1, STREAM_TOKENS, EMBED_DIM))
        self.downsample_m = nn.Conv1d(ALL_TOKENS, ALL_TOKENS, kernel_size=2, stride=2)
        self.downsample_s = nn.Conv1d(ALL_TOKENS, ALL_TOKENS, kernel_size=4, stride=4)
        self.blocks = nn.Sequential(*(PyramidLevelBlock() for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(EMBED_DIM, eps=1e-6)

    def forward(self, image_tokens: torch.Tensor, landmark_tokens: torch.Tensor) -> torch.Tensor:
        image = torch.cat([image_tokens.mean(1, keepdim=True), image_tokens], dim=1) + self.pos_embed
        landmark = torch.cat([landmark_tokens.mean(1, keepdim=True), landmark_tokens], dim=1)
        tokens = torch.cat([image, landmark], dim=1)
        large, _, _ = self.blocks((tokens, self.downsample_m(tokens), self.downsample_s(tokens)))
        return self.norm(large)[:, 0]


@register_extractor("poster")
class PosterV1Extractor(Extractor):
    """POSTER feature: the SE-gated image class token (the official ``y_feat``), 512-d.

    The RAF-DB checkpoint was trained on OpenCV (BGR) images, so preprocessing flips RGB input to BGR.
    """

    dim = EMBED_DIM
    fold_batchnorm = True
    onnx_on_cpu = True  # bench_runtime.py: onnxruntime faster on CPU at batch 1, 8 and 32
    preprocess_cfg = PreprocessConfig(input_size=224, color_order="BGR")
    layouts = {"large_7cls": "poster_v1_large_7cls"}

    def __init__(self, variant: str | None = None) -> None:
        super().__init__(variant)
        self.face_landback = MobileFaceNet()
        self.ir_back = IR50(split_stages=False)
        self.ir_layer = nn.Linear(1024, EMBED_DIM)
        self.pyramid_fuse = PyramidFusion()
        self.se_block = SEGate(EMBED_DIM)
        self.head = ClassificationHead(EMBED_DIM, 7)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch = pixel_values.shape[0]
        small = to_112(pixel_values)
        landmark_map = self.face_landback(small)[2]  # [B,512,7,7]
        landmark_tokens = landmark_map.reshape(batch, EMBED_DIM, 49).transpose(1, 2)
        # The official code reads the [B,256,14,14] map's memory as 49 rows of 1024 values.
        image_tokens = self.ir_layer(self.ir_back(small)[0].reshape(batch, 49, 1024))
        return self.se_block(self.pyramid_fuse(image_tokens, landmark_tokens))

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(pixel_values))
