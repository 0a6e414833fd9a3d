"""Actions are drawn from the masked policy with noise each environment supplies."""

from __future__ import annotations

import torch

from app.rl.networks import mask_logits, sample_actions


def test_sampled_actions_follow_the_softmax_and_never_a_masked_action() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = mask_logits(
        torch.tensor([[1.0, 0.0, 2.0, -1.0]]), torch.tensor([[True, True, True, False]])
    ).expand(200_000, 4)
    actions = sample_actions(logits, torch.rand(logits.shape, generator=generator))
    frequencies = torch.bincount(actions, minlength=4).double() / len(actions)
    expected = torch.tensor([1.0, 0.0, 2.0]).softmax(0).double()
    assert frequencies[3] == 0
    # Three standard errors of a frequency near 0.5 over 200,000 draws are 0.0034.
    torch.testing.assert_close(frequencies[:3], expected, atol=0.004, rtol=0)


def test_a_row_s_action_depends_on_its_own_noise_only() -> None:
    logits = torch.randn(5, 4)
    uniform = torch.rand(5, 4)
    alone = sample_actions(logits[3:4], uniform[3:4])
    assert sample_actions(logits, uniform)[3] == alone[0]
