"""EVA-ViT-g as E.T. Chat uses it (spec §1.2), with every size a parameter.

Real size: 224 px, patch 14 (256 patches + CLS), width 1408, 16 heads of 88, MLP 6144, LayerNorm eps 1e-6,
absolute position embedding, q/v biases with a zero k bias, no layer scale, no relative position bias, truncated
to 39 of its 40 blocks, no final norm. Frozen: it runs without gradients and takes its input in its own dtype.

Parameter names follow the LAVIS checkpoint `eva_vit_g.pth` (`cls_token`, `pos_embed`, `patch_embed.proj`,
`blocks.N.{norm1,attn.{q_bias,v_bias,qkv,proj},norm2,mlp.{fc1,fc2}}`), nested once more under `vision_tower`
as in the released checkpoints (`model.vision_tower.vision_tower.*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import dot_product_attention


@dataclass(frozen=True)
class VisionSpec:
    image_size: int = 224
    patch_size: int = 14
    width: int = 1408
    depth: int = 39
    num_heads: int = 16
    mlp_hidden_size: int = 6144
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class EVAPatchEmbed(nn.Module):
    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.image_size = spec.image_size
        self.proj = nn.Conv2d(3, spec.width, kernel_size=spec.patch_size, stride=spec.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"vision tower expects {self.image_size}x{self.image_size} frames, got {tuple(images.shape[-2:])}"
            )
        return self.proj(images).flatten(2).transpose(1, 2)


class EVAAttention(nn.Module):
    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.num_heads = spec.num_heads
        self.head_dim = spec.width // spec.num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(spec.width, 3 * spec.width, bias=False)
        # EVA has learnable q and v biases and a fixed zero k bias.
        self.q_bias = nn.Parameter(torch.zeros(spec.width))
        self.v_bias = nn.Parameter(torch.zeros(spec.width))
        self.proj = nn.Linear(spec.width, spec.width)
        self.attn_implementation = "eager"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = dot_product_attention(q, k, v, scale=self.scale, implementation=self.attn_implementation)
        return self.proj(out.transpose(1, 2).reshape(batch, length, -1))


class EVAMlp(nn.Module):
    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.fc1 = nn.Linear(spec.width, spec.mlp_hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(spec.mlp_hidden_size, spec.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EVABlock(nn.Module):
    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.width, eps=spec.layer_norm_eps)
        self.attn = EVAAttention(spec)
        self.norm2 = nn.LayerNorm(spec.width, eps=spec.layer_norm_eps)
        self.mlp = EVAMlp(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EVAVisionTransformer(nn.Module):
    """The ViT itself: patch embedding, CLS, absolute positions, `depth` pre-norm blocks, no final norm."""

    def __init__(self, spec: VisionSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = EVAPatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, spec.num_patches + 1, spec.width))
        self.blocks = nn.ModuleList(EVABlock(spec) for _ in range(spec.depth))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


class EVAVisionTower(nn.Module):
    """Wrapper that owns the ViT as `vision_tower` (the released key layout) and keeps it frozen by default."""

    def __init__(self, spec: VisionSpec, trainable: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.trainable = trainable
        self.vision_tower = EVAVisionTransformer(spec)
        if not trainable:
            self.vision_tower.requires_grad_(False)

    @property
    def num_patches(self) -> int:
        return self.spec.num_patches

    def set_attn_implementation(self, implementation: str) -> None:
        for block in self.vision_tower.blocks:
            block.attn.attn_implementation = implementation

    def forward(self, images: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """`images`: `[N, 3, H, W]` normalised frames -> `[N, 1 + num_patches, width]` in the tower's dtype.

        `chunk_size` bounds how many frames go through the tower at once (memory); results do not depend on it
        beyond floating-point noise.
        """
        dtype = self.vision_tower.cls_token.dtype
        device = self.vision_tower.cls_token.device
        images = images.to(device=device, dtype=dtype)
        chunks = [images] if not chunk_size else list(images.split(chunk_size))
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            outputs = [self.vision_tower(chunk) for chunk in chunks]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
