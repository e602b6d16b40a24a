"""Helpers for the training / testing tools (mmengine Runner set-up) and for ``mmdynconv::`` config bases
(:mod:`.config_scope`, the one part that ``import mmdynconv`` uses)."""
from .runner_setup import allow_runner_checkpoints, check_data_paths, enable_amp, load_config, setup_cpu_distributed

__all__ = ['allow_runner_checkpoints', 'check_data_paths', 'enable_amp', 'load_config',
           'setup_cpu_distributed']
