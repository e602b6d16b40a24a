"""Dynamic convolution decomposition (Li et al., ICLR 2021), registry type ``'DCD'``."""
import math

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_conv_args, check_feature_map, check_int

__all__ = ['RELEASE_KEYS', 'hard_sigmoid2', 'convert_release_state_dict', 'LatentNorm', 'DCDConv']

# The release's (liyunsheng13/dcd, ``conv_dy`` / ``conv_basic_dy``) parameter names that differ from ours.
RELEASE_KEYS = {'conv.weight': 'weight', 'fc.0.weight': 'fc.weight', 'fc.1.fc.0.weight': 'fc_gate.weight'}


def hard_sigmoid2(x):
    """relu6(x + 3) / 3: 0 below -3, 2 above 3, 1 at 0 (the release's ``Hsigmoid``, twice ``F.hardsigmoid``)."""
    return F.relu6(x + 3.0) / 3.0


def convert_release_state_dict(state_dict, prefix=''):
    """Rename, in place, the keys of a release ``conv_dy`` / ``conv_basic_dy`` state dict under ``prefix`` to ours
    (:data:`RELEASE_KEYS`); every other name and every shape is the same."""
    for old, new in RELEASE_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
    return state_dict


class LatentNorm(nn.Module):
    """BatchNorm over the latent channels (dim 1 of (B, C, ...)) that follows its layer's train / eval mode only.

    Parameters and buffers are ``nn.BatchNorm``'s (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``; momentum 0.1, eps 1e-5), so release state dicts load, but it is no ``_BatchNorm``: a
    backbone's ``norm_eval`` (every ``_BatchNorm`` in eval mode) leaves it normalising with batch statistics, whereas
    its initial running statistics (0, 1) would not normalise at all. In training, an input with one value per
    channel (or none) is normalised with the running statistics, which it does not update.
    """

    def __init__(self, channels, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.register_buffer('running_mean', torch.empty(channels))
        self.register_buffer('running_var', torch.empty(channels))
        self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self):
        """γ = 1, β = 0, running mean 0 and variance 1, no batches tracked."""
        with torch.no_grad():
            for t, value in ((self.weight, 1), (self.bias, 0), (self.running_mean, 0), (self.running_var, 1),
                             (self.num_batches_tracked, 0)):
                t.fill_(value)

    def forward(self, z):
        batch_stats = self.training and z.numel() > z.shape[1]
        if batch_stats:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(z, self.running_mean, self.running_var, self.weight, self.bias, batch_stats,
                            self.momentum, self.eps)

    def extra_repr(self):
        return f'{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}'


@MODELS.register_module('DCD')
class DCDConv(nn.Module):
    """``W(x) = Λ(x) W0 + P Φ(x) Qᵀ``: a static kernel W0 scaled per output channel by Λ(x), plus a dynamic residual
    that compresses the input to an L-dimensional latent space (Qᵀ), fuses the latent channels with a per-sample
    L×L matrix Φ(x) (dynamic channel fusion) and expands to the output channels (P).

    The residual sits at the kernel's centre tap (as the release applies it to 3×3 convs: a 1×1 conv with the conv's
    stride), so it is computed on the input sampled at the centre tap of every output position; with the release's
    two BatchNorms in the latent space, the output is
    ``Λ(x) ⊙ conv(x, W0) + P [BN2(Φ(x) u) + u] + bias``, ``u = BN1(Qᵀ x_centre)``, never forming per-sample kernels.
    Φ(x) (B, L, L) and Λ(x) (B, Co) come from the dynamic branch: adaptive average pool to ``pool_size``² cells ->
    ``fc`` (Ci·pool_size² -> S) -> SE gate ``y ⊙ hsig(fc_gate(y))`` -> ``fc_phi`` (S -> L²) and
    ``hsig(fc_scale(y))`` (S -> Co), hsig(z) = relu6(z + 3)/3, all without bias.

    ``groups`` = G > 1: W0 is a grouped kernel and the residual is block-diagonal, one ``P_g Φ_g(x) Q_gᵀ`` per group
    (the paper's sparse dynamic residual with the blocks on the conv's groups), so W(x) stays a grouped kernel.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``
            (kernel sizes odd: the residual needs a centre tap); ``bias`` is static and not scaled by Λ.
        dim: L per group; None: ⌊√(Ci·pool_size²/G)⌋ (the release's ``int(sqrt(inplanes))``, ``int(sqrt(inplanes*4))``
            for its 2×2-pooled BasicBlock conv).
        fc_squeeze: S = max(Ci·pool_size², G·L²) // fc_squeeze, at least 4 (release: 16).
        squeeze: S directly, overriding ``fc_squeeze``.
        pool_size: cells per side of the pooled descriptor (release: 1 in bottlenecks, 2 in BasicBlocks).
        zero_init_residual: start with P = 0 (not the release's init): the layer starts as Λ(x) ⊙ conv(x, W0). In
            eval mode, before its running statistics are trained, the release's init gives a residual quadratic in
            the input (Φ(x) scales with x and BN2 does not normalise yet), which explodes through a frozen stage.

    Shapes: (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as ``nn.Conv2d``. Parameters: ``weight`` W0 (Co, Ci/G, kh, kw),
    ``bias`` (Co,) or None, ``q.weight`` (G·L, Ci/G, 1, 1), ``p.weight`` (Co, L, 1, 1), ``bn1`` / ``bn2`` (G·L),
    ``fc.weight`` (S, Ci·pool_size²), ``fc_gate.weight`` (S, S), ``fc_phi.weight`` (G·L², S), ``fc_scale.weight``
    (Co, S). Initialised as the release: 1×1 and k×k kernels N(0, 2/(k²·out)), BatchNorms γ = 1, β = 0, linear
    layers PyTorch's default.

    State dicts: a release ``conv_dy`` / ``conv_basic_dy`` state dict loads (:data:`RELEASE_KEYS`). A plain conv's
    ``weight`` (and ``bias``) loads into W0 (and the bias) and zeroes ``p.weight`` and ``fc_scale.weight``: Λ = hsig(0)
    = 1 and the residual is 0 for every input, so the converted layer is the plain conv at step 0 (train and eval);
    P and the Λ head still get gradients, and Q, Φ from the first step on. DCD parameters in the same state dict load
    afterwards and take precedence.

    The latent BatchNorms ``bn1`` / ``bn2`` are :class:`LatentNorm`: they follow the layer's train / eval mode, not a
    backbone's ``norm_eval``; with one value per channel (B·Ho·Wo = 1) or none (B = 0) a training-mode forward
    normalises with, and does not update, the running statistics (the release fails there).
    """

    NAME = 'DCD'

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 dim=None, fc_squeeze=16, squeeze=None, pool_size=1, zero_init_residual=False):
        super().__init__()
        name = self.NAME
        (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
         self.groups) = check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                        bias)
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f'{name}: kernel_size must be odd (the dynamic residual sits at the kernel centre), got '
                             f'{kernel_size!r}')
        if not isinstance(zero_init_residual, bool):
            raise TypeError(f'{name}: zero_init_residual must be a bool, got {zero_init_residual!r}')
        self.zero_init_residual = zero_init_residual
        self.pool_size = check_int(name, 'pool_size', pool_size, 1)
        pooled = in_channels * self.pool_size ** 2
        self.dim = max(math.isqrt(pooled // groups), 1) if dim is None else check_int(name, 'dim', dim, 1)
        latent = groups * self.dim
        fc_squeeze = check_int(name, 'fc_squeeze', fc_squeeze, 1)
        self.squeeze = max(max(pooled, latent * self.dim) // fc_squeeze, 4) if squeeze is None \
            else check_int(name, 'squeeze', squeeze, 1)

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.q = nn.Conv2d(in_channels, latent, 1, groups=groups, bias=False)
        self.p = nn.Conv2d(latent, out_channels, 1, groups=groups, bias=False)
        self.bn1 = LatentNorm(latent)
        self.bn2 = LatentNorm(latent)
        self.fc = nn.Linear(pooled, self.squeeze, bias=False)
        self.fc_gate = nn.Linear(self.squeeze, self.squeeze, bias=False)
        self.fc_phi = nn.Linear(self.squeeze, groups * self.dim ** 2, bias=False)
        self.fc_scale = nn.Linear(self.squeeze, out_channels, bias=False)
        self.init_weights()

    def init_weights(self):
        """The release's: conv kernels N(0, 2/(kh·kw·out)), BatchNorms reset, linear layers PyTorch's default; zero
        bias; P zero with ``zero_init_residual``."""
        with torch.no_grad():
            for w in (self.weight, self.q.weight, self.p.weight):
                w.normal_(0.0, math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3])))
            if self.bias is not None:
                self.bias.zero_()
            if self.zero_init_residual:
                self.p.weight.zero_()
        for m in (self.bn1, self.bn2, self.fc, self.fc_gate, self.fc_phi, self.fc_scale):
            m.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Release keys are renamed; a plain conv ``weight`` zeroes ``p.weight`` and ``fc_scale.weight`` first."""
        convert_release_state_dict(state_dict, prefix)
        if prefix + 'weight' in state_dict:
            with torch.no_grad():
                self.p.weight.zero_()
                self.fc_scale.weight.zero_()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _centre_taps(self, x, out_size):
        """x at the centre tap of every output position (zero where that is padding): (B, Ci, Ho, Wo)."""
        pads, starts = [], []
        for size, n, s, p, d, k in zip(x.shape[2:], out_size, self.stride, self.padding, self.dilation,
                                       self.kernel_size):
            offset = d * (k - 1) // 2 - p                               # input index of output 0's centre tap
            before, after = -offset, s * (n - 1) + offset - (size - 1)  # negative: crop
            pads = [before, after] + pads                               # F.pad lists the last dimension first
            starts.append(slice(None, None, s))
        if any(pads):
            x = F.pad(x, pads)
        return x[(Ellipsis, *starts)]

    def forward(self, x):
        check_feature_map(self.NAME, 'input', x, self.in_channels)
        b, g, dim = x.shape[0], self.groups, self.dim
        out = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, g)   # (B, Co, Ho, Wo)
        ho, wo = out.shape[2:]
        y = self.fc(F.adaptive_avg_pool2d(x, self.pool_size).flatten(1))                   # (B, S)
        y = y * hard_sigmoid2(self.fc_gate(y))
        phi = self.fc_phi(y).reshape(b, g, dim, dim)                                        # (B, G, L, L)
        scale = hard_sigmoid2(self.fc_scale(y))                                             # Λ (B, Co)
        u = self.bn1(self.q(self._centre_taps(x, (ho, wo))))                                # (B, G·L, Ho, Wo)
        u = u.reshape(b, g * dim, ho * wo)
        fused = torch.matmul(phi, u.reshape(b, g, dim, ho * wo)).reshape(b, g * dim, ho * wo)
        u = self.bn2(fused) + u
        out = out * scale[:, :, None, None] + self.p(u.reshape(b, g * dim, ho, wo))
        return out if self.bias is None else out + self.bias[:, None, None]

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, groups={self.groups}, '
                f'bias={self.bias is not None}, dim={self.dim}, squeeze={self.squeeze}, pool_size={self.pool_size}, '
                f'zero_init_residual={self.zero_init_residual}')
