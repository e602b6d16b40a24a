"""fdconv_sizes: FDConv's two parts and the release row are built as documented; the release row is skipped, with
the reason, unless MMDYNCONV_FDCONV_RELEASE names a file."""
import textwrap

import torch

from mmdynconv.benchmark import cases_fdconv_sizes as sizes
from mmdynconv.benchmark.harness import Settings
from mmdynconv.layers import FDConv
from mmdynconv.layers.fdconv_release import RELEASE_ENV
from mmdynconv.layers.frequency_band_modulation import FrequencyBandModulation

SHAPE = ('r50-s1-conv2', 32, 32, 3, 12, 10, 2)


def notes(settings):
    return {c.method: c.skip for c in sizes.cases(settings)}


def built(method, settings, monkeypatch):
    """The module a part_builder case runs."""
    monkeypatch.setattr(sizes, 'module_case', lambda module, x: module)
    return sizes.part_builder(method, SHAPE, settings)()


def test_parts_are_fdconv_without_fbm_and_fbm_alone(monkeypatch):
    settings = Settings(shapes='full')
    layer = built('fdconv_no_fbm', settings, monkeypatch)
    assert type(layer) is FDConv and layer.fbm is None and layer.dynamic
    assert type(built('fbm', settings, monkeypatch)) is FrequencyBandModulation


def test_release_row_needs_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(RELEASE_ENV, raising=False)
    assert RELEASE_ENV in notes(Settings(shapes='full'))['fdconv_release']
    fake = tmp_path / 'FDConv.py'   # a stand-in with the release's constructor, registry decorator and timm import
    fake.write_text(textwrap.dedent('''
        import torch
        from mmcv.cnn import CONV_LAYERS
        from timm.models.layers import trunc_normal_

        @CONV_LAYERS.register_module()
        class FDConv(torch.nn.Conv2d):
            def __init__(self, *args, kernel_num=4, **kwargs):
                super().__init__(*args, **kwargs)
                print('kernel_num', kernel_num)
                self.kernel_num = kernel_num
    '''))
    monkeypatch.setenv(RELEASE_ENV, str(fake))
    assert notes(Settings(shapes='full'))['fdconv_release'] == ''
    assert notes(Settings(shapes='small'))['fdconv_release'] == 'full shapes only'
    layer = built('fdconv_release', Settings(shapes='full'), monkeypatch)
    assert type(layer).__name__ == 'FDConv' and isinstance(layer, torch.nn.Conv2d)
    assert layer.kernel_num == 64 and layer.padding == (1, 1) and layer.bias is None and layer.training
