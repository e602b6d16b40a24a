"""KernelWarehouse (Li & Yao, ICML 2024), registry type ``'KernelWarehouse'``: kernels assembled from cells of a
warehouse that the convs of a stage share.

Kernel partition: a conv's kernel W (Co, Ci/G, kh, kw) is cut into m cells of shape (c_o, c_i) (1×1 spatially):
Go = Co/c_o output blocks, Gi = (Ci/G)/c_i input blocks and kh·kw taps, m = kh·kw·Go·Gi. Cell t is the block at tap
s = t // (Go·Gi), output block o = (t // Gi) % Go, input block g = t % Gi (tap-major, as the release orders them).

Warehouse: n cells E (n, c_o, c_i) shared by several convs (:class:`Warehouse`). Each conv mixes, per sample, every
one of its cells from the whole warehouse, ``w_t = Σ_j α_tj E_j``, and assembles its kernel from the m mixtures.

Attention (the paper's contrasting-driven attention function): GAP -> ``fc1`` (no bias) -> ``norm`` (BatchNorm1d)
-> ReLU -> ``fc2`` gives logits z (B, m, n + 1), one per warehouse cell plus one for a zero cell; then

    α_tj = (1 − τ) · z_tj / (Σ_{j' ≤ n+1} |z_tj'| + ε) + τ · β_tj,      j ≤ n (the zero cell's column is dropped),

β the fixed one-hot assignment of each cell to a warehouse cell of its own (or to the zero cell) and τ the
temperature, annealed from 1 to 0 at the start of training (:class:`~mmdynconv.layers.TemperatureAnnealHook`).

Cell counts (``cell_num_ratio`` r, the paper's "KW (r×)"): n = r · Σ m over the warehouse's convs. r ≥ 1 (an
integer): cell t of a conv is assigned warehouse cell ``first + r·t`` (the conv's span holds r·m cells). r = 1/k:
cell t has a warehouse cell of its own when t mod k = ⌊t / k⌋ mod k (consecutive cells in the conv's span) and the
zero cell otherwise, so roughly m/k cells per conv.
"""
import math

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_conv_args, check_feature_map, check_int, check_positive
from ..ops.per_sample_conv import ConvShape, per_sample_conv_forward

NAME = 'KernelWarehouse'

__all__ = ['NAME', 'check_cell_num_ratio', 'check_cell_ratio', 'own_cell_offsets', 'Warehouse', 'AttentionNorm',
           'KernelWarehouseAttention', 'KernelWarehouseConv']


def check_cell_num_ratio(owner, value):
    """``value`` as a float if it is an integer >= 1 or 1/k for an integer k >= 2; ValueError otherwise."""
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0:
        if value >= 1 and float(value).is_integer():
            return float(value)
        if value < 1 and abs(1 / value - round(1 / value)) < 1e-9:
            return 1 / round(1 / value)
    raise ValueError(f'{owner}: cell_num_ratio must be an integer >= 1 or 1/k for an integer k >= 2 (e.g. 4, 1, 0.5, '
                     f'0.25), got {value!r}')


def check_cell_ratio(owner, name, value):
    """``value`` as a float if it is a number in (0, 1]; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f'{owner}: {name} must be a number in (0, 1], got {value!r}')
    return float(value)


def own_cell_offsets(num_mixtures, cell_num_ratio):
    """(offsets (m,) long: each cell's assigned warehouse cell relative to the conv's first cell, -1 for the zero
    cell; span: how many warehouse cells the conv's span holds)."""
    t = torch.arange(num_mixtures)
    if cell_num_ratio >= 1:
        stride = int(cell_num_ratio)
        return t * stride, stride * num_mixtures
    k = round(1 / cell_num_ratio)
    own = t % k == (t // k) % k
    offsets = torch.full((num_mixtures,), -1, dtype=torch.long)
    offsets[own] = torch.arange(int(own.sum()))
    return offsets, int(own.sum())


class Warehouse(nn.Module):
    """n kernel cells ``cells`` (n, c_o, c_i) shared by the convs of ``kernel_shapes`` (their slots, in order).

    Args:
        kernel_shapes: the kernel shape (Co, Ci/G, kh, kw) of each conv that draws on the warehouse.
        cell_num_ratio: r (:func:`check_cell_num_ratio`): n = r · Σ m, the convs' cells counted together.
        cell_in_ratio, cell_out_ratio: c_i = ⌊gcd(Ci/G) · cell_in_ratio⌋ and c_o = ⌊gcd(Co) · cell_out_ratio⌋ (at least
            1; the gcd over the convs), which must divide every conv's channels (the release's 1/2× uses 0.5).

    The convs' spans are consecutive, in slot order (``first_cell(slot)``); each span is initialised N(0, 2/(Co·kh·kw)),
    the Kaiming (fan_out) initialisation of its conv.
    """

    def __init__(self, kernel_shapes, cell_num_ratio=1, cell_in_ratio=1, cell_out_ratio=1):
        super().__init__()
        owner = f'{NAME} warehouse'
        shapes = [tuple(check_int(owner, 'kernel_shapes', int(v), 1) for v in s) for s in kernel_shapes]
        if not shapes or any(len(s) != 4 for s in shapes):
            raise ValueError(f'{owner}: kernel_shapes must be a non-empty list of (Co, Ci/groups, kh, kw), got '
                             f'{kernel_shapes!r}')
        self.kernel_shapes = tuple(shapes)
        self.cell_num_ratio = check_cell_num_ratio(owner, cell_num_ratio)
        self.cell_in_ratio = check_cell_ratio(owner, 'cell_in_ratio', cell_in_ratio)
        self.cell_out_ratio = check_cell_ratio(owner, 'cell_out_ratio', cell_out_ratio)
        self.cell_out = self._cell_size('cell_out_ratio', [s[0] for s in shapes], self.cell_out_ratio, 'Co')
        self.cell_in = self._cell_size('cell_in_ratio', [s[1] for s in shapes], self.cell_in_ratio, 'Ci/groups')
        self.first_cells, self.offsets, self.spans = [], [], []
        total = 0
        for shape in shapes:
            offsets, span = own_cell_offsets(self.num_mixtures(shape), self.cell_num_ratio)
            self.first_cells.append(total)
            self.offsets.append(offsets)
            self.spans.append(span)
            total += span
        self.num_cells = total
        self.cells = nn.Parameter(torch.empty(total, self.cell_out, self.cell_in))
        self.filled_from_plain = False
        self.reset_parameters()

    def _cell_size(self, arg, channels, ratio, what):
        size = max(int(math.gcd(*channels) * ratio), 1)
        if any(c % size for c in channels):
            raise ValueError(f'{NAME} warehouse: {arg} {ratio:g} gives cells of {size} channels, which must divide '
                             f'every kernel\'s {what} {channels}')
        return size

    def num_mixtures(self, shape):
        """m of a kernel shape (Co, Ci/G, kh, kw): its number of cells."""
        return shape[0] // self.cell_out * (shape[1] // self.cell_in) * shape[2] * shape[3]

    def first_cell(self, slot):
        return self.first_cells[slot]

    def assignment(self, slot):
        """(m,) long: the warehouse cell assigned to each cell of the conv in ``slot`` (``num_cells``: the zero
        cell)."""
        offsets = self.offsets[slot]
        return torch.where(offsets < 0, torch.full_like(offsets, self.num_cells), offsets + self.first_cells[slot])

    def reset_parameters(self):
        """Each conv's span N(0, 2/(Co·kh·kw))."""
        with torch.no_grad():
            for shape, first, span in zip(self.kernel_shapes, self.first_cells, self.spans):
                self.cells[first:first + span].normal_(0.0, math.sqrt(2.0 / (shape[0] * shape[2] * shape[3])))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Cells that the convs filled from plain conv weights (loaded just before) are not reported missing."""
        key = prefix + 'cells'
        if key not in state_dict and self.filled_from_plain:
            state_dict[key] = self.cells.detach().clone()
        self.filled_from_plain = False
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self):
        return (f'num_cells={self.num_cells}, cell=({self.cell_out}, {self.cell_in}), convs={len(self.kernel_shapes)}, '
                f'cell_num_ratio={self.cell_num_ratio:g}')


class AttentionNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (so a backbone's ``norm_eval`` freezes it, as the release's) that, in training, normalises a
    batch of one sample or none with its running statistics, which it then does not update (BatchNorm1d fails)."""

    def forward(self, z):
        if self.training and z.shape[0] <= 1:
            return F.batch_norm(z, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(z)


class KernelWarehouseAttention(nn.Module):
    """α (B, m, n) of one conv: GAP -> ``fc1`` -> ``norm`` -> ReLU -> logits -> the contrasting-driven attention
    function with temperature τ (module docstring). ``assigned`` (m, n + 1): β, one-hot (not saved in state dicts:
    it follows from the warehouse plan).

    Logits: ``fc2`` (h -> m·(n+1)); or, with a basis (``nonlocal_basis_ratio`` < 1 and warehouse cells outside the
    conv's span), ``fc2`` (h -> m·(L + K + 1), no bias) gives per cell the logits of the L cells of the conv's span,
    K basis coefficients and the zero cell's logit, ``fc3`` (K -> n − L, no bias, shared by the cells) maps the
    coefficients to the logits of the other n − L warehouse cells, and ``basis_bias`` (m·(n+1)) is added;
    K = max(⌊(n − L) · nonlocal_basis_ratio⌋, 16) (the release's option for its ResNet-50 1/2×).
    """

    def __init__(self, in_channels, assignment, num_cells, span, reduction, min_hidden, eps,
                 nonlocal_basis_ratio=1.0):
        super().__init__()
        m = self.num_mixtures = len(assignment)
        self.num_cells, self.eps = num_cells, eps
        self.span = (int(span[0]), int(span[1]))        # (first cell, L)
        hidden = max(int(in_channels * reduction), min_hidden)
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.norm = AttentionNorm(hidden)
        others = num_cells - self.span[1]
        if nonlocal_basis_ratio < 1 and others > 0:
            self.num_basis = max(int(others * nonlocal_basis_ratio), 16)
            self.fc2 = nn.Linear(hidden, m * (self.span[1] + self.num_basis + 1), bias=False)
            self.fc3 = nn.Linear(self.num_basis, others, bias=False)
            self.basis_bias = nn.Parameter(torch.zeros(m * (num_cells + 1)))
        else:
            self.num_basis = 0
            self.fc2 = nn.Linear(hidden, m * (num_cells + 1))
            self.fc3 = self.basis_bias = None
        beta = torch.zeros(m, num_cells + 1)
        beta[torch.arange(m), assignment] = 1.0
        self.register_buffer('assigned', beta, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        """Linear layers Kaiming normal (fan_out), zero biases; BatchNorm γ = 1, β = 0 (the release's)."""
        for fc in (self.fc1, self.fc2, self.fc3):
            if fc is not None:
                nn.init.kaiming_normal_(fc.weight, mode='fan_out', nonlinearity='relu')
        for bias in (self.fc2.bias, self.basis_bias):
            if bias is not None:
                nn.init.zeros_(bias)
        self.norm.reset_parameters()

    def logits(self, h):
        """(B, h) -> (B, m, n + 1)."""
        b, m = h.shape[0], self.num_mixtures
        z = self.fc2(h)
        if self.fc3 is None:
            return z.view(b, m, self.num_cells + 1)
        first, size = self.span
        z = z.view(b, m, size + self.num_basis + 1)
        local, basis, zero = z.split([size, self.num_basis, 1], dim=2)
        other = self.fc3(basis)
        z = torch.cat([other[:, :, :first], local, other[:, :, first:], zero], dim=2)
        return z + self.basis_bias.view(m, self.num_cells + 1)

    def forward(self, x, temperature):
        """x (B, Ci, H, W), temperature τ (a number or 0-dim tensor) -> α (B, m, n)."""
        z = self.logits(F.relu(self.norm(self.fc1(x.mean((2, 3))))))
        z = z / (z.abs().sum(dim=2, keepdim=True) + self.eps)
        z = (1.0 - temperature) * z + temperature * self.assigned
        return z[:, :, :-1]


@MODELS.register_module(NAME)
class KernelWarehouseConv(nn.Module):
    """A conv whose per-sample kernel is assembled from warehouse cells mixed by the attention (module docstring).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d`` (the bias is
            static).
        cell_num_ratio, cell_in_ratio, cell_out_ratio: the warehouse's (:class:`Warehouse`); with ``warehouse`` given
            they must equal its own.
        reduction, min_hidden: the attention's hidden width max(⌊Ci · reduction⌋, min_hidden) (release: 1/16, 16).
        eps: ε of the attention function (release: 1e-3).
        nonlocal_basis_ratio: < 1: the logits of the warehouse cells outside the layer's span come from a shared basis
            (:class:`KernelWarehouseAttention`; the release's ResNet-50 1/2× uses 1/16); >= 1: one logit per cell.
        temperature: τ (``layer.temperature``, held in the non-persistent buffer ``tau``; set by
            ``TemperatureAnnealHook`` and by loading a plain conv weight). τ = 0: the attention alone; τ = 1: every
            cell is its assigned warehouse cell.
        warehouse: a shared :class:`Warehouse` (a backbone's; referenced, not a submodule, so its cells are saved
            once, by its owner), or None: the layer owns a private warehouse (``warehouse.cells``) of its own cells.
        warehouse_slot: the layer's slot in ``warehouse`` (its kernel shape must be that slot's).

    Shapes: (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as ``nn.Conv2d``. Parameters: ``attention.fc1.weight`` (h, Ci),
    ``attention.norm.*`` (h), ``attention.fc2.weight`` / ``.bias`` (m·(n+1), h) / (m·(n+1)) (with a basis:
    ``attention.fc2.weight`` (m·(L+K+1), h), ``attention.fc3.weight`` (n−L, K), ``attention.basis_bias`` (m·(n+1))),
    ``bias`` (Co,) or none; ``warehouse.cells`` (n, c_o, c_i) when private.

    Plain conv checkpoints: a plain ``weight`` W (Co, Ci/G, kh, kw) is written, cell by cell, into the warehouse cells
    assigned to the layer's cells, and τ is set to 1, so the layer computes exactly the plain conv (any input, train
    or eval) until τ is lowered, for every cell_num_ratio >= 1. With cell_num_ratio = 1/k only the cells that own a
    warehouse cell load their block; the others are the zero cell at τ = 1, so the layer starts from W with those
    blocks zeroed, not from W. A plain ``bias`` loads as is.
    """

    NAME = NAME

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 cell_num_ratio=1, cell_in_ratio=1, cell_out_ratio=1, reduction=0.0625, min_hidden=16, eps=1e-3,
                 nonlocal_basis_ratio=1.0, temperature=0.0, warehouse=None, warehouse_slot=0):
        super().__init__()
        name = self.NAME
        (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
         self.groups) = check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                        bias)
        reduction = check_positive(name, 'reduction', reduction)
        min_hidden = check_int(name, 'min_hidden', min_hidden, 1)
        self.eps = check_positive(name, 'eps', eps)
        nonlocal_basis_ratio = check_positive(name, 'nonlocal_basis_ratio', nonlocal_basis_ratio)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f'{name}: temperature must be a number, got {temperature!r}')
        # float64, so that a float32 model's τ converts exactly with .double(); a 0-dim tensor does not promote x
        self.register_buffer('tau', torch.tensor(float(temperature), dtype=torch.float64), persistent=False)
        ratios = (check_cell_num_ratio(name, cell_num_ratio), check_cell_ratio(name, 'cell_in_ratio', cell_in_ratio),
                  check_cell_ratio(name, 'cell_out_ratio', cell_out_ratio))
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        if warehouse is None:
            self.warehouse = Warehouse([shape], *ratios)
            self._shared = None
            warehouse_slot = 0
        else:
            self._check_shared(warehouse, warehouse_slot, shape, ratios)
            self._shared = (warehouse,)   # a reference: the warehouse's owner saves and moves it
        self.warehouse_slot = warehouse_slot
        wh = self.warehouse
        self.cell_blocks = (out_channels // wh.cell_out, in_channels // groups // wh.cell_in)
        span = (wh.first_cell(warehouse_slot), wh.spans[warehouse_slot])
        self.attention = KernelWarehouseAttention(in_channels, wh.assignment(warehouse_slot), wh.num_cells, span,
                                                  reduction, min_hidden, self.eps, nonlocal_basis_ratio)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def _check_shared(self, warehouse, slot, shape, ratios):
        name = self.NAME
        if not isinstance(warehouse, Warehouse):
            raise TypeError(f'{name}: warehouse must be a Warehouse or None, got {type(warehouse).__name__}')
        check_int(name, 'warehouse_slot', slot, 0)
        if slot >= len(warehouse.kernel_shapes) or warehouse.kernel_shapes[slot] != shape:
            raise ValueError(f'{name}: warehouse_slot {slot} must name a slot of the warehouse planned for this kernel '
                             f'shape {shape}; its slots: {list(warehouse.kernel_shapes)}')
        own = (warehouse.cell_num_ratio, warehouse.cell_in_ratio, warehouse.cell_out_ratio)
        if ratios != own:
            raise ValueError(f'{name}: (cell_num_ratio, cell_in_ratio, cell_out_ratio) must be the shared warehouse\'s '
                             f'{own}, got {ratios}')

    @property
    def warehouse(self):
        """The :class:`Warehouse` the layer draws on: its own or the shared one."""
        return self._modules['warehouse'] if self._shared is None else self._shared[0]

    @property
    def temperature(self):
        """τ, held in the non-persistent buffer ``tau`` (a tensor, so torch.compile does not specialise on it)."""
        return float(self.tau)

    @temperature.setter
    def temperature(self, value):
        with torch.no_grad():
            self.tau.fill_(value)

    @property
    def shares_warehouse(self):
        return self._shared is not None

    def modulation_parameters(self):
        """The attention's parameters: they keep training in a backbone's frozen stages (as the warehouses do)."""
        return list(self.attention.parameters())

    def assemble_kernel(self, alpha):
        """Per-sample kernels from α (B, m, n): (B, Co, kh, kw, Ci/G), the channels-last kernel layout."""
        wh = self.warehouse
        b = alpha.shape[0]
        go, gi = self.cell_blocks
        kh, kw = self.kernel_size
        mixed = torch.matmul(alpha, wh.cells.flatten(1))                                 # (B, m, c_o·c_i)
        mixed = mixed.view(b, kh * kw, go, gi, wh.cell_out, wh.cell_in).permute(0, 2, 4, 1, 3, 5)
        return mixed.reshape(b, self.out_channels, kh, kw, self.in_channels // self.groups)

    def forward(self, x):
        check_feature_map(self.NAME, 'input', x, self.in_channels)
        alpha = self.attention(x, self.tau)
        kernel = self.assemble_kernel(alpha)
        s = ConvShape(x.shape, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.groups)
        if x.shape[0] == 0:   # the grouped conv has no groups; zero gradients still reach every parameter
            out = x.new_zeros((0, s.co, s.ho, s.wo)) + kernel.sum()
        else:
            out = per_sample_conv_forward(x, kernel, slice(None), s)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A plain conv ``weight`` (Co, Ci/G, kh, kw) fills the layer's assigned warehouse cells and sets τ = 1."""
        key = prefix + 'weight'
        if key in state_dict:
            weight = state_dict.pop(key)
            plain = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
            if tuple(weight.shape) != plain:
                error_msgs.append(f'size mismatch for {key}: a plain conv weight of shape {tuple(weight.shape)} '
                                  f'cannot initialise {self.NAME} cells of a kernel of shape {plain}')
            else:
                self.load_plain_weight(weight)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @torch.no_grad()
    def load_plain_weight(self, weight):
        """Write a plain kernel (Co, Ci/G, kh, kw) into the assigned cells (the rest of the span keeps its values);
        τ = 1."""
        wh = self.warehouse
        go, gi = self.cell_blocks
        blocks = weight.reshape(go, wh.cell_out, gi, wh.cell_in, -1).permute(4, 0, 2, 1, 3)
        blocks = blocks.reshape(-1, wh.cell_out, wh.cell_in)                              # (m, c_o, c_i), cell order
        target = wh.assignment(self.warehouse_slot).to(wh.cells.device)
        own = target < wh.num_cells
        wh.cells[target[own]] = blocks[own.to(blocks.device)].to(wh.cells)
        wh.filled_from_plain = True
        self.temperature = 1.0

    def extra_repr(self):
        wh = self.warehouse
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, groups={self.groups}, '
                f'bias={self.bias is not None}, cells={self.attention.num_mixtures} of ({wh.cell_out}, {wh.cell_in}) '
                f'from {wh.num_cells}{" shared" if self.shares_warehouse else ""}, temperature={self.temperature}')
