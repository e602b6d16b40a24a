"""Helpers shared by the tests of the upsampler decode heads (UpsamplerSegformerHead, UpsamplerUPerHead)."""
import torch

from mmdynconv.layers import FADE


def levels(in_channels, h=34, w=26, batch=2):
    """A 1/4, 1/8, ... pyramid with ``in_channels`` per level (odd sizes: each the ceil of half the previous)."""
    out = []
    for c in in_channels:
        out.append(torch.randn(batch, c, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def record_fade_calls(monkeypatch, upsamplers):
    """Patch FADE.forward to record (index in ``upsamplers``, input size, guidance) of every call; returns the list."""
    calls = []
    original = FADE.forward

    def spy(self, x, guidance):
        calls.append((list(upsamplers).index(self), tuple(x.shape[2:]), guidance))
        return original(self, x, guidance)
    monkeypatch.setattr(FADE, 'forward', spy)
    return calls
