"""PreResNet-20 for CIFAR (protocol §2): pre-activation residual blocks, 16/32/64 channels.

The same network serves as teacher and student; B2 (protocol §9) also has a deeper teacher of the
same family, PreResNet-56 (9 blocks per stage). `norm="layer"` swaps every BatchNorm for
GroupNorm(1, C), the LayerNorm variant that the paper's Section 6 experiments used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

NORMS = ("batch", "layer")
DEPTHS = (20, 56)  # PreResNet-(6n + 2): n = 3 and 9 blocks per stage


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # GroupNorm with one group normalises over (C, H, W) per example: LayerNorm for conv maps.
    return nn.GroupNorm(1, channels)


class PreActBlock(nn.Module):
    """h = conv1(relu(norm1(x))); out = conv2(relu(norm2(h))) + shortcut(x)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.norm1 = _norm(norm, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm2 = _norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        # The projection reads the raw x (not the normalised one), as in the original gnosis code.
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(h)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreResNet(nn.Module):
    """Stem conv, three stages of `blocks_per_stage` blocks, norm-relu-pool-linear head."""

    def __init__(self, num_classes: int = 100, norm: str = "batch", blocks_per_stage: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.norm = norm
        self.num_classes = num_classes
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        stages, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(PreActBlock(in_ch, width, stride, norm))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_norm = _norm(norm, in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init as in the original PreResNet code: N(0, sqrt(2 / (k * k * out_channels))).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # nn.Linear keeps PyTorch's default init (protocol §2).

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the three stages, before the final norm (protocol §2, for CKA).

        Shapes for 32x32 input: (B, 16, 32, 32), (B, 32, 16, 16), (B, 64, 8, 8).
        """
        h = self.stem(x)
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        return features

    def head(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.final_norm(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage_features(x)[-1])


def preresnet(num_classes: int = 100, norm: str = "batch", depth: int = 20) -> PreResNet:
    """PreResNet-`depth`: 1 stem conv + 3 stages x n blocks x 2 convs + 1 linear = 6n + 2 layers
    (20: n = 3; 56: n = 9)."""
    if isinstance(depth, bool) or depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}, got {depth!r}")
    return PreResNet(num_classes=num_classes, norm=norm, blocks_per_stage=(depth - 2) // 6)


def preresnet20(num_classes: int = 100, norm: str = "batch") -> PreResNet:
    """PreResNet-20, the paper's teacher and student."""
    return preresnet(num_classes, norm, 20)


def build_model(norm: str, seed: int, num_classes: int = 100, depth: int = 20) -> PreResNet:
    """A PreResNet-`depth` whose initial weights depend only on `seed` (and `norm`, `depth`).

    Initialisation draws from a private CPU generator, so it is the same on every device and
    does not disturb the global RNG; this lets a student start from "the teacher's initial
    weights" (E4) by rebuilding them from the teacher's seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return preresnet(num_classes=num_classes, norm=norm, depth=depth)


def architecture(model: nn.Module) -> tuple:
    """What must match for two models to be interchangeable (ensembles, interpolation)."""
    return (type(model).__name__, getattr(model, "norm", None), getattr(model, "num_classes", None),
            tuple((k, tuple(v.shape)) for k, v in model.state_dict().items()))
