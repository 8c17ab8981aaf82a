"""POSTER V2 (POSTER++): landmark-guided window cross-attention at three scales + a 2-block ViT, 768-d."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Extractor, PreprocessConfig
from .face_backbones import IR50, ClassificationHead, MobileFaceNet, Mlp, SEGate, to_112
from .registry import register_extractor

WINDOWS = (28, 14, 7)
HEADS = (2, 4, 8)
DIMS = (64, 128, 256)
EMBED_DIM = 768
NUM_TOKENS = 3 * 49  # 49 tokens per scale, plus the cls token in front


def _relative_position_index(window: int) -> torch.Tensor:
    """[w*w, w*w] index into a (2w-1)^2 table of relative offsets (as in Swin / GC ViT)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class WindowNorm(nn.Module):
    """LayerNorm over channels of a [B,C,H,W] map; returns [B,H,W,C] (windows and shortcut alike)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1))


class GlobalQueryWindowAttention(nn.Module):
    """Keys/values from image windows, queries from the landmark map, plus a relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim / num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 2)  # named qkv in the checkpoint, holds keys and values only
        self.proj = nn.Linear(dim, dim)

    def forward(self, image_map: torch.Tensor, landmark_map: torch.Tensor) -> torch.Tensor:
        """image_map, landmark_map: [B,H,W,C] with H = W = k * window -> [B,H,W,C]."""
        batch, height, width, channels = image_map.shape
        w, heads, head_dim = self.window, self.num_heads, channels // self.num_heads
        rows, cols = height // w, width // w
        windows = (
            image_map.reshape(batch, rows, w, cols, w, channels).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, channels)
        )
        kv = self.qkv(windows).reshape(-1, w * w, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        # One landmark query per image, shared by all of its windows (the map is window-sized).
        query = landmark_map.reshape(batch, 1, w * w, heads, head_dim).permute(0, 1, 3, 2, 4)
        query = query.expand(batch, rows * cols, heads, w * w, head_dim).reshape(-1, heads, w * w, head_dim)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(w * w, w * w, heads).permute(2, 0, 1)
        out = F.scaled_dot_product_attention(query, kv[0], kv[1], attn_mask=bias, scale=self.scale)
        out = self.proj(out.transpose(1, 2).reshape(-1, w * w, channels))
        return out.reshape(batch, rows, cols, w, w, channels).permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


class ScaledFeedForward(nn.Module):
    """Residual with layer scale around the attention output, then a layer-scaled MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma1 = nn.Parameter(torch.full((dim,), 1e-5))
        self.gamma2 = nn.Parameter(torch.full((dim,), 1e-5))
        self.mlp = Mlp(dim, dim * 4)
        self.norm = nn.LayerNorm(dim)

    def forward(self, attended: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        x = shortcut + self.gamma1 * attended
        return x + self.gamma2 * self.mlp(self.norm(x))


class PatchProjection(nn.Module):
    """1x1 conv to tokens (the checkpoint's PatchEmbed)."""

    def __init__(self, in_channels: int = 256, dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_tokens: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.conv = nn.Conv1d(num_tokens, num_tokens, 1)  # stored in the checkpoint, unused by its forward
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EcaConv(nn.Module):
    """Only its 1-D conv weight is stored; unused by the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=5, padding=2, bias=False)


class TokenViT(nn.Module):
    """The 2-block ViT over 147 fused tokens + cls. Several stored modules are unused by the official
    forward (patch_embed, eca_block, CON1, IRLinear1/2, each block's conv); they are kept for the keys."""

    def __init__(self, num_classes: int, depth: int = 2, dim: int = EMBED_DIM, num_heads: int = 8) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, NUM_TOKENS + 1, dim))
        self.se_block = SEGate(dim)
        self.patch_embed = PatchProjection(256, dim)
        self.head = ClassificationHead(dim, num_classes)
        self.eca_block = EcaConv()
        self.CON1 = nn.Conv2d(256, dim, kernel_size=1, bias=False)
        self.IRLinear1 = nn.Linear(1024, dim)
        self.IRLinear2 = nn.Linear(dim, 512)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, num_heads, NUM_TOKENS + 1) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B,147,768] -> the cls token after the final LayerNorm, [B,768]."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


@register_extractor("poster2")
class PosterV2Extractor(Extractor):
    """POSTER V2 feature: the ViT's cls token after its final LayerNorm (before SE gate and head)."""

    dim = EMBED_DIM
    channels_last = True
    fold_batchnorm = True
    preprocess_cfg = PreprocessConfig(input_size=224)  # PIL RGB, Resize(224), ImageNet mean/std
    layouts = {"7cls": "poster_v2_7cls", "8cls": "poster_v2_8cls"}
    _num_classes = {"7cls": 7, "8cls": 8}

    def __init__(self, variant: str | None = None) -> None:
        super().__init__(variant)
        self.face_landback = MobileFaceNet()
        self.VIT = TokenViT(self._num_classes[self.variant])
        self.ir_back = IR50(split_stages=True)
        for i, (dim, heads, window) in enumerate(zip(DIMS, HEADS, WINDOWS), start=1):
            self.add_module(f"attn{i}", GlobalQueryWindowAttention(dim, heads, window))
            self.add_module(f"window{i}", WindowNorm(dim))
            self.add_module(f"conv{i}", nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1))
            self.add_module(f"ffn{i}", ScaledFeedForward(dim))
        self.last_face_conv = nn.Conv2d(512, 256, kernel_size=3, padding=1)
        self.embed_q = nn.Sequential(
            nn.Conv2d(DIMS[0], EMBED_DIM, 3, stride=2, padding=1), nn.Conv2d(EMBED_DIM, EMBED_DIM, 3, stride=2, padding=1)
        )
        self.embed_k = nn.Sequential(nn.Conv2d(DIMS[1], EMBED_DIM, 3, stride=2, padding=1))
        self.embed_v = PatchProjection(DIMS[2], EMBED_DIM)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        small = to_112(pixel_values)
        face1, face2, face3 = self.face_landback(small)
        landmark_maps = [face1, face2, self.last_face_conv(face3)]
        image_maps = self.ir_back(small)
        fused = []
        for i, (image_map, landmark_map) in enumerate(zip(image_maps, landmark_maps), start=1):
            image_map = getattr(self, f"conv{i}")(image_map)
            normed = getattr(self, f"window{i}")(image_map)  # [B,H,W,C]; the shortcut is the normed map
            attended = getattr(self, f"attn{i}")(normed, landmark_map.permute(0, 2, 3, 1))
            fused.append(getattr(self, f"ffn{i}")(attended, normed).permute(0, 3, 1, 2))
        tokens = torch.cat(
            [
                self.embed_q(fused[0]).flatten(2).transpose(1, 2),
                self.embed_k(fused[1]).flatten(2).transpose(1, 2),
                self.embed_v(fused[2]),
            ],
            dim=1,
        )
        return self.VIT(tokens)

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Expression logits of the official model (SE gate + head on the feature)."""
        return self.VIT.head(self.VIT.se_block(self.forward(pixel_values)))
