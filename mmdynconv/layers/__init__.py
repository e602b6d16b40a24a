"""nn.Modules registered in mmengine's root ``MODELS`` (conv types ``'DDF'``, ``'FDConv'``; upsampler ``'ddf_up'``)."""
