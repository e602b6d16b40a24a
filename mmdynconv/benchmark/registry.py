"""The benchmarks the CLI knows: each a :class:`Benchmark` whose ``cases(settings)`` yields harness cases."""
import dataclasses
import importlib
from typing import Callable, Optional

__all__ = ['Benchmark', 'MODULES', 'OPT_IN', 'ALL', 'get_benchmark']


@dataclasses.dataclass
class Benchmark:
    """``name``: CLI name; ``title`` / ``description``: markdown for the docs; ``cases(settings)``: the cases;
    ``baselines``: methods the ratio columns divide by; ``finish(rows)``: optional post-processing of the rows."""
    name: str
    title: str
    description: str
    cases: Callable
    baselines: tuple = ()
    finish: Optional[Callable] = None


MODULES = {'ddf': 'cases_ddf', 'ddf_up': 'cases_ddf_up', 'convs': 'cases_convs', 'bandwidth': 'cases_bandwidth',
           'fdconv_sizes': 'cases_fdconv_sizes', 'models': 'cases_models'}
OPT_IN = ('models',)  # whole-model training steps take minutes even at the small shapes: run by name only
ALL = tuple(name for name in MODULES if name not in OPT_IN)


def get_benchmark(name):
    """The :class:`Benchmark` called ``name`` (one of :data:`MODULES`)."""
    if name not in MODULES:
        raise ValueError(f'benchmark must be one of {sorted(MODULES)}, got {name!r}')
    return importlib.import_module(f'.{MODULES[name]}', __package__).BENCHMARK
