"""SAPA upsampler (Lu et al., NeurIPS 2022), registry type ``'sapa'``; definition in docs/sapa.md."""
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_choice, check_guided_input, check_int
from ..ops.per_sample_conv import conv_dtype
from ..ops.sapa import sapa

__all__ = ['NAME', 'release_name', 'convert_release_state_dict', 'nearest_rows', 'SAPA']

NAME = 'sapa'
QUERIES = ('encoder', 'gated', 'concat')

# Parameter name prefixes of the authors' modules (github.com/poppinace/sapa: SAPA.py's SAPA, SAPAExp.py's SAPAExp)
# -> ours. SAPAExp with q_mode='gate' calls the encoder query projection ``qy``, the others ``q``.
RELEASE_PREFIXES = {'norm_y.': 'guidance_norm.', 'norm_x.': 'input_norm.', 'q.': 'query.', 'qy.': 'query.',
                    'qx.': 'decoder_query.', 'k.': 'key.', 'gate.': 'gate.', 'v.': 'value.'}


def release_name(name):
    """Our parameter name for the release's ``name``; ``KeyError`` naming it if it is not a release parameter."""
    prefix, _, leaf = name.partition('.')
    ours = RELEASE_PREFIXES.get(prefix + '.')
    if ours is None or leaf not in ('weight', 'bias'):
        raise KeyError(f'{NAME}: not a parameter of the released SAPA modules: {name!r}')
    return ours + leaf


def convert_release_state_dict(state_dict):
    """A state dict of the authors' ``SAPA`` or ``SAPAExp`` with our parameter names; the tensors are the same
    (both use ``nn.Linear`` and ``nn.LayerNorm`` over channels)."""
    return {release_name(k): v for k, v in state_dict.items()}


def nearest_rows(low, s):
    """Channels-last ``low`` (B, H, W, D) as (B, H, 1, W, 1, D): broadcasts against a (B, H, S, W, S, D) view of a
    (B, S·H, S·W, D) map, nearest-neighbour upsampling without materialising it."""
    return low[:, :, None, :, None]


@MODELS.register_module(NAME)
class SAPA(nn.Module):
    """Guided ×S upsampling whose kernels are the similarities of the encoder feature (the guidance) at each output
    point to the decoder feature x around it.

    - Keys: k = ``key``(``input_norm``(x)), a linear map C -> D after a layer norm over channels, (B, D, H, W).
    - Queries (B, D, S·H, S·W), ``query_mode`` selecting the release's variant; ``↑`` is nearest ×S upsampling:
      ``'encoder'`` (SAPA-B, the release's ``SAPA``): q = ``query``(``guidance_norm``(guidance));
      ``'gated'`` (SAPA-G): g = sigmoid(``gate``(``input_norm``(x)))↑, q = g · ``query``(``guidance_norm``(guidance))
      + (1 − g) · ``decoder_query``(x)↑ (x without its layer norm, as the release);
      ``'concat'``: q = ``query``([``guidance_norm``(guidance), x↑]) (again x without its norm).
    - Reassembly :func:`mmdynconv.ops.sapa`: per output point the softmax over the k_up² taps of ⟨q, k⟩ with the keys
      of the k_up×k_up low-resolution neighbourhood weights the values there, v = x (or ``value``(``input_norm``(x))
      with ``value_embed``). Taps outside the map count with similarity 0 and value 0, as the release.

    Initialisation as the release: linear weights truncated normal (std 0.02), zero biases, layer norms 1 and 0.
    ``convert_release_state_dict`` renames the authors' parameters to ours.

    Guidance protocol (``takes_guidance = True``): ``forward(x, guidance)``; ``UpsamplerFPN`` passes the lateral of the
    next finer level as the guidance.

    Args:
        channels: C of x. scale_factor: integer S >= 2. up_kernel: odd k_up (5). embedding_dim: D (64).
        guidance_channels: C_g of the guidance; None: C. query_mode: 'encoder', 'gated' or 'concat' (see above).
        value_embed: reassemble a linear map of the normalised x instead of x (False). qkv_bias: biases of the linear
            maps (True).

    Shapes: x (B, C, H, W), guidance (B, C_g, S·H, S·W) -> (B, C, S·H, S·W).
    """

    takes_guidance = True

    def __init__(self, channels, scale_factor=2, up_kernel=5, embedding_dim=64, guidance_channels=None,
                 query_mode='encoder', value_embed=False, qkv_bias=True):
        super().__init__()
        if isinstance(scale_factor, float) and scale_factor.is_integer():
            scale_factor = int(scale_factor)
        guidance_channels = channels if guidance_channels is None else guidance_channels
        check_int(NAME, 'channels', channels, 1)
        check_int(NAME, 'scale_factor', scale_factor, 2)
        check_int(NAME, 'guidance_channels', guidance_channels, 1)
        check_int(NAME, 'embedding_dim', embedding_dim, 1)
        if check_int(NAME, 'up_kernel', up_kernel, 1) % 2 == 0:
            raise ValueError(f'{NAME}: up_kernel must be odd, got {up_kernel}')
        check_choice(NAME, 'query_mode', query_mode, QUERIES)
        for arg, value in (('value_embed', value_embed), ('qkv_bias', qkv_bias)):
            if not isinstance(value, bool):
                raise TypeError(f'{NAME}: {arg} must be True or False, got {value!r}')
        self.channels, self.scale_factor, self.up_kernel = channels, scale_factor, up_kernel
        self.guidance_channels, self.embedding_dim, self.query_mode = guidance_channels, embedding_dim, query_mode
        self.guidance_norm = nn.LayerNorm(guidance_channels)
        self.input_norm = nn.LayerNorm(channels)
        query_in = guidance_channels + channels if query_mode == 'concat' else guidance_channels
        self.query = nn.Linear(query_in, embedding_dim, bias=qkv_bias)
        self.decoder_query = nn.Linear(channels, embedding_dim, bias=qkv_bias) if query_mode == 'gated' else None
        self.gate = nn.Linear(channels, 1, bias=qkv_bias) if query_mode == 'gated' else None
        self.key = nn.Linear(channels, embedding_dim, bias=qkv_bias)
        self.value = nn.Linear(channels, channels, bias=qkv_bias) if value_embed else None
        self.init_weights()

    def init_weights(self):
        """As the release: linear weights N(0, 0.02²) truncated to [−2, 2], zero biases; layer norms 1 and 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def queries(self, x_last, x_normed, guidance_last):
        """Channels-last queries (B, S·H, S·W, D) from x (B, H, W, C), its layer norm and the guidance
        (B, S·H, S·W, C_g)."""
        b, h, w, _ = x_last.shape
        s, d = self.scale_factor, self.embedding_dim
        normed = self.guidance_norm(guidance_last)
        if self.query_mode == 'encoder':
            return self.query(normed)
        if self.query_mode == 'concat':   # the concatenation's product, split: the x half at low resolution
            c_g = self.guidance_channels
            high = F.linear(normed, self.query.weight[:, :c_g], self.query.bias)
            low = F.linear(x_last, self.query.weight[:, c_g:])
            return (high.reshape(b, h, s, w, s, d) + nearest_rows(low, s)).reshape(b, s * h, s * w, d)
        gate = nearest_rows(torch.sigmoid(self.gate(x_normed)), s)
        encoder = self.query(normed).reshape(b, h, s, w, s, d)
        decoder = nearest_rows(self.decoder_query(x_last), s)
        return (gate * encoder + (1 - gate) * decoder).reshape(b, s * h, s * w, d)

    def forward(self, x, guidance):
        """x: (B, C, H, W); guidance: (B, C_g, S·H, S·W). Returns (B, C, S·H, S·W)."""
        check_guided_input(NAME, x, guidance, self.channels, self.guidance_channels, self.scale_factor)
        s = self.scale_factor
        x_last = x.permute(0, 2, 3, 1)                                    # (B, H, W, C), a view
        x_normed = self.input_norm(x_last)
        query = self.queries(x_last, x_normed, guidance.permute(0, 2, 3, 1))
        key = self.key(x_normed)
        value = x if self.value is None else self.value(x_normed).permute(0, 3, 1, 2)
        dtype = conv_dtype(x)   # the autocast dtype under autocast (the op accumulates in fp32 anyway)
        return sapa(query.permute(0, 3, 1, 2).to(dtype), key.permute(0, 3, 1, 2).to(dtype), value.to(dtype),
                    self.up_kernel, s)

    def extra_repr(self):
        return (f'{self.channels}, scale_factor={self.scale_factor}, up_kernel={self.up_kernel}, '
                f'embedding_dim={self.embedding_dim}, guidance_channels={self.guidance_channels}, '
                f'query_mode={self.query_mode!r}, value_embed={self.value is not None}')
