"""The MobileNetV3 elastic supernet: one module for every preset, OFA-compatible parameter layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from famc.space.arch import Arch
from famc.space.layers import describe
from famc.space.space import SearchSpace
from famc.supernet.elastic import ElasticBatchNorm, ElasticMBConv, _Stage
from famc.supernet.static import StaticMBV3


class ElasticMBV3(nn.Module):
    """Weight-sharing MobileNetV3: ``set_active(arch)`` picks the sub-network ``forward`` runs.

    Block ``0`` is the fixed first block; stage ``s`` owns slots ``1 + s*max_depth ...`` and runs a
    prefix of them (OFA's ``block_group_info``).
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        p = space.preset
        self.space = space
        self.first_conv = _Stage()
        self.first_conv.conv = nn.Conv2d(
            p.in_channels, p.stem_width, 3, p.stem_stride, 1, bias=False
        )
        self.first_conv.bn = ElasticBatchNorm(p.stem_width)
        blocks = [
            ElasticMBConv(p.stem_width, p.first_block_width, (3,), (1,), 1, "relu", False, "crop")
        ]
        c = p.first_block_width
        for stage in p.stages:
            for i in range(p.max_depth):
                blocks.append(
                    ElasticMBConv(c, stage.width, p.kernel_choices, p.expand_choices,
                                  stage.stride if i == 0 else 1, stage.act, stage.se,
                                  p.kernel_transform)
                )  # fmt: skip
                c = stage.width
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = _Stage()
        self.final_expand_layer.conv = nn.Conv2d(c, p.final_expand_width, 1, bias=False)
        self.final_expand_layer.bn = ElasticBatchNorm(p.final_expand_width)
        self.feature_mix_layer = _Stage()
        self.feature_mix_layer.conv = nn.Conv2d(p.final_expand_width, p.last_channel, 1, bias=False)
        self.classifier = _Stage()
        self.classifier.linear = nn.Linear(p.last_channel, p.num_classes)
        self._init_weights()
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = p.bn_momentum, p.bn_eps
        self.active = space.largest()

    def _init_weights(self) -> None:
        """OFA's ``he_fout`` init, so from-scratch training starts where OFA's does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.weight.size(1) ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    # --- running a sub-network -----------------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        self.active = self.space.validate(arch)

    def slots(self, arch: Arch) -> list[tuple[ElasticMBConv, int, int]]:
        """(block, kernel, expand) for every layer ``arch`` runs, first block included."""
        m = self.space.preset.max_depth
        first = self.blocks[0]
        assert isinstance(first, ElasticMBConv)
        out = [(first, 3, 1)]
        for s, (ks, es) in enumerate(zip(arch.ks, arch.e, strict=True)):
            for i, (k, e) in enumerate(zip(ks, es, strict=True)):
                block = self.blocks[1 + s * m + i]
                assert isinstance(block, ElasticMBConv)
                out.append((block, k, e))
        return out

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the active sub-network; ``dropout_mask`` (already scaled by 1/(1-p)) multiplies
        the classifier's input — the trainer draws it so that it is the same under DDP."""
        x = F.hardswish(self.first_conv.bn(self.first_conv.conv(x)))
        for block, k, e in self.slots(self.active):
            x = block(x, k, e)
        x = F.hardswish(self.final_expand_layer.bn(self.final_expand_layer.conv(x)))
        x = F.hardswish(self.feature_mix_layer.conv(x.mean((2, 3), keepdim=True)))
        x = torch.flatten(x, 1)
        if dropout_mask is not None:
            x = x * dropout_mask
        return self.classifier.linear(x)

    # --- extraction ----------------------------------------------------------------------------
    def active_state(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The concrete tensors of ``arch``, keyed like ``StaticMBV3.state_dict()`` (views, no copy)."""
        state: dict[str, torch.Tensor] = {"stem.0.weight": self.first_conv.conv.weight}
        for k, v in self.first_conv.bn.state_dict(keep_vars=True).items():
            state[f"stem.1.{k}"] = v
        for j, (block, kernel, expand) in enumerate(self.slots(arch)):
            for k, v in block.active_state(kernel, expand).items():
                state[f"blocks.{j}.{k}"] = v
        state["final_expand.0.weight"] = self.final_expand_layer.conv.weight
        for k, v in self.final_expand_layer.bn.state_dict(keep_vars=True).items():
            state[f"final_expand.1.{k}"] = v
        state["feature_mix.0.weight"] = self.feature_mix_layer.conv.weight
        state["classifier.weight"] = self.classifier.linear.weight
        state["classifier.bias"] = self.classifier.linear.bias
        return state

    @torch.no_grad()
    def extract(self, arch: Arch) -> StaticMBV3:
        """A static model holding its own copies of ``arch``'s weights, in eval mode.

        Built on the meta device and filled by assignment: no random init, no deep copy of the
        supernet, one clone per tensor.
        """
        self.space.validate(arch)
        layers = describe(self.space, arch)
        with torch.device("meta"):
            model = StaticMBV3(layers)
        device = self.first_conv.conv.weight.device
        state = {k: v.detach().clone() for k, v in self.active_state(arch).items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.to(device)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = self.space.preset.bn_momentum, self.space.preset.bn_eps
        return model.eval()
