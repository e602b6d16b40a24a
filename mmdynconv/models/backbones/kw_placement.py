"""KernelWarehouse in a ResNet: one warehouse per stage, shared by that stage's convs (shared by the mmdet and mmseg
backbone variants)."""
from mmcv.cnn import build_conv_layer
from torch import nn

from ...layers.kernel_warehouse import NAME, Warehouse
from .block_conv_placement import BlockConvPlacementMixin, block_conv_names

__all__ = ['WAREHOUSE_ARGS', 'KernelWarehousePlacementMixin']

WAREHOUSE_ARGS = ('cell_num_ratio', 'cell_in_ratio', 'cell_out_ratio')


class KernelWarehousePlacementMixin(BlockConvPlacementMixin):
    """Mixin for an OpenMMLab ``ResNet`` subclass: KernelWarehouse convs drawing on one :class:`Warehouse` per stage.

    Every conv1-3 of a Bottleneck (conv1-2 of a BasicBlock) draws on its stage's warehouse. With ``handover`` (the
    release's assignment), the first block of stage s (s > 1) hands its conv1 and, where the stage strides, its
    projection shortcut's conv to the warehouse of stage s − 1 (they read that stage's channels); stage 1's first
    conv1 then stays plain in a Bottleneck and joins stage 1's warehouse in a BasicBlock, its projection stays plain.
    Without it, every block conv uses its own stage's warehouse and the shortcuts stay plain. The stem stays plain.

    The warehouses are the backbone's modules ``warehouses.layer<i>`` (state dict keys ``warehouses.layer<i>.cells``,
    saved once); the convs reference them. A conv is KernelWarehouse when its warehouse's stage is flagged.
    ``frozen_stages`` freezes a stage's convs except their attention (``modulation_parameters``); the warehouses are
    not frozen (a stage's warehouse also serves the next stage's first convs).

    Args:
        kw_cfg: the KernelWarehouse conv config, e.g. ``dict(type='KernelWarehouse', cell_num_ratio=4)``
            (``cell_num_ratio`` / ``cell_in_ratio`` / ``cell_out_ratio`` configure the warehouses, the rest the convs).
        stage_with_kw: one flag per stage (its warehouse and the convs drawing on it).
        handover: the release's assignment of each stage's first conv1 and strided projection to the previous
            stage's warehouse.
        **kwargs: the parent ResNet's arguments. An ordinary ResNet checkpoint loads (``init_cfg``): each conv's
            plain weight fills its assigned warehouse cells and sets its temperature to 1, so the network is the plain
            one until ``TemperatureAnnealHook`` lowers τ (exactly for cell_num_ratio >= 1, docs/kernel_warehouse.md).
    """

    def __init__(self, kw_cfg=dict(type=NAME), stage_with_kw=(True, True, True, True), handover=True, **kwargs):
        super().__init__(**kwargs)
        self.place_kernel_warehouse(kw_cfg, stage_with_kw, handover)

    def place_kernel_warehouse(self, kw_cfg, stage_flags, handover):
        if not isinstance(kw_cfg, dict) or kw_cfg.get('type', NAME) != NAME:
            raise ValueError(f"kw_cfg must be a dict with type='{NAME}', got {kw_cfg!r}")
        if len(stage_flags) != len(self.res_layers):
            raise ValueError(f'stage_with_kw must have one flag per stage ({len(self.res_layers)}), got '
                             f'{stage_flags!r}')
        if not isinstance(handover, bool):
            raise TypeError(f'handover must be a bool, got {handover!r}')
        cfg = dict(kw_cfg, type=NAME)
        slots = {}   # stage -> [(parent, attribute, path, conv)]
        for stage, layer_name in enumerate(self.res_layers):
            for index, block in enumerate(getattr(self, layer_name)):
                first = handover and index == 0
                for name in block_conv_names(block):
                    owner = stage
                    if first and name == 'conv1':
                        owner = stage - 1 if hasattr(block, 'conv3') else max(stage - 1, 0)
                    slots.setdefault(owner, []).append((block, name, f'{layer_name}.{index}.{name}'))
                if first and stage > 0 and self.strides[stage] != 1 and block.downsample is not None:
                    position = next(i for i, m in enumerate(block.downsample) if isinstance(m, nn.Conv2d))
                    slots.setdefault(stage - 1, []).append(
                        (block.downsample, position, f'{layer_name}.{index}.downsample.{position}'))
        self.warehouses = nn.ModuleDict()
        for stage, entries in sorted(slots.items()):
            if stage < 0 or not stage_flags[stage]:
                continue
            convs = [self._plain_conv(parent, attr, path) for parent, attr, path in entries]
            warehouse = Warehouse([(c.out_channels, c.in_channels // c.groups, *c.kernel_size) for c in convs],
                                  **{k: cfg[k] for k in WAREHOUSE_ARGS if k in cfg})
            self.warehouses[self.res_layers[stage]] = warehouse
            for slot, ((parent, attr, _), conv) in enumerate(zip(entries, convs)):
                layer = build_conv_layer(dict(cfg, warehouse=warehouse, warehouse_slot=slot), conv.in_channels,
                                         conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                                         dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None)
                if isinstance(attr, int):
                    parent[attr] = layer
                else:
                    setattr(parent, attr, layer)
        self._freeze_stages()

    @staticmethod
    def _plain_conv(parent, attr, path):
        conv = parent[attr] if isinstance(attr, int) else getattr(parent, attr, None)
        if type(conv) is not nn.Conv2d:
            raise ValueError(f'{path} is {type(conv).__name__}, not a plain nn.Conv2d: {NAME} replaces plain convs '
                             f'only (no dcn or plugin conv in its stages)')
        return conv
