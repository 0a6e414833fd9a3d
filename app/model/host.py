"""The host network: a small CNN with one seed slot after its second block.

GroupNorm rather than BatchNorm keeps evaluation independent of batch size and keeps the
seed's isolated path (which runs the head a second time) from touching running statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

from app.model.blueprints import group_count
from app.model.slot import SeedSlot, SlotConfig

SLOT_ID = "block2_post"
# Where the seed's weights sit in the host's state dict (attributes `slot`, then `seed`).
_SEED_PREFIX = "slot.seed."


@dataclass(frozen=True)
class HostOutput:
    """`logits`: the host's prediction, with the seed blended in as its stage allows.
    `seed_logits`: while the seed is TRAINING, the prediction of the isolated seed path
    (train it with its own loss); None otherwise."""

    logits: Tensor
    seed_logits: Tensor | None


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [*_conv_norm(in_channels, out_channels), nn.ReLU()]


def _conv_norm(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.GroupNorm(group_count(out_channels), out_channels),
    ]


def _pooled_conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    """A conv block followed by max pooling, pooled before its ReLU. The two commute
    exactly, gradients included: ReLU keeps positive values as they are, so a window's
    positive maximum comes from the same position either way, and a window whose maximum
    is not positive passes no gradient either way. Pooling first leaves the ReLU only the
    pooled values, in one layout: in the stacked hosts, a ReLU between the GroupNorm and
    the channels-last pooling got a channels-last gradient against its NCHW output, a
    slow strided kernel that took a fifth of a stacked host step under torch.profiler."""
    return [*_conv_norm(in_channels, out_channels), nn.MaxPool2d(2), nn.ReLU()]


class HostCNN(nn.Module):
    """block1 (conv, norm, maxpool 2, ReLU) -> block2 (conv, norm, ReLU) -> seed slot ->
    head (optional block3 conv, global average pool, linear).

    Widths are parameters so the host can be sized to plateau below what a seed adds.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        width: int = 16,
        block2_width: int | None = None,
        block3_width: int | None = None,
        env_id: int | None = None,
        slot_config: SlotConfig | None = None,
    ) -> None:
        super().__init__()
        slot_channels = width if block2_width is None else block2_width
        _check_sizes(in_channels, num_classes, image_size, width, slot_channels, block3_width)
        self.block1 = nn.Sequential(*_pooled_conv_block(in_channels, width))
        self.block2 = nn.Sequential(*_conv_block(width, slot_channels))
        self.slot = SeedSlot(SLOT_ID, slot_channels, env_id, slot_config)
        head: list[nn.Module] = []
        if block3_width is not None:
            head = _conv_block(slot_channels, block3_width)
        head_channels = slot_channels if block3_width is None else block3_width
        head += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(head_channels, num_classes)]
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> HostOutput:
        h = self.block2(self.block1(x))
        logits: Tensor = self.head(self.slot(h))
        isolated = self.slot.isolated(h)
        seed_logits = None if isolated is None else self._frozen_head(isolated)
        return HostOutput(logits=logits, seed_logits=seed_logits)

    def predict(self, x: Tensor) -> Tensor:
        """The logits alone, the seed blended in as its stage allows: what evaluation
        needs (the isolated seed path's prediction only trains the seed)."""
        logits: Tensor = self.head(self.slot(self.block2(self.block1(x))))
        return logits

    def _frozen_head(self, z: Tensor) -> Tensor:
        """The head applied with detached parameters: the seed path's loss can never put
        gradient into the head, however backward is called."""
        detached = {name: p.detach() for name, p in self.head.named_parameters()}
        out: Tensor = functional_call(self.head, detached, (z,))
        return out

    @contextmanager
    def seed_disabled(self) -> Iterator[None]:
        """Run forward as if the slot were empty (the counterfactual host)."""
        with self.slot.disabled():
            yield

    def host_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the seed's, for the host optimizer."""
        seed = {id(p) for p in self.seed_parameters()}
        return [p for p in self.parameters() if id(p) not in seed]

    def seed_parameters(self) -> list[nn.Parameter]:
        """The current seed's parameters (empty without a seed), for a seed optimizer that
        is rebuilt whenever `slot.seed_id` changes."""
        return [] if self.slot.seed is None else list(self.slot.seed.parameters())

    def host_state_dict(self) -> dict[str, Any]:
        """The host's weights without the seed's, e.g. for a rollback snapshot."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_SEED_PREFIX)}

    def load_host_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights from `host_state_dict`, leaving the current seed untouched."""
        result = self.load_state_dict(state, strict=False)
        foreign = list(result.unexpected_keys)
        foreign += [k for k in result.missing_keys if not k.startswith(_SEED_PREFIX)]
        if foreign:
            raise ValueError(f"host state does not match this host: {', '.join(foreign)}")


def _check_sizes(
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: int,
    block2_width: int,
    block3_width: int | None,
) -> None:
    if image_size < 2:
        raise ValueError(f"image_size must be at least 2 (block1 halves it), got {image_size}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    named = {"in_channels": in_channels, "width": width, "block2_width": block2_width}
    if block3_width is not None:
        named["block3_width"] = block3_width
    for name, value in named.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
