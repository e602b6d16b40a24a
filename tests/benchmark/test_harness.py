"""The benchmark harness: timing loop, CPU peak memory, ratios, registry look-ups and the markdown table."""
import pytest
import torch

from mmdynconv.benchmark import Case, Settings, measure, peak_mib, time_ms
from mmdynconv.benchmark.common import build_registered, registered
from mmdynconv.benchmark.harness import SkipCase, add_ratios, run_case
from mmdynconv.benchmark.report import markdown_table


def test_time_ms_runs_warmup_then_repeats_and_takes_the_median():
    calls = []
    assert time_ms(lambda: calls.append(1), 'cpu', warmup=2, repeat=3, budget_s=100) >= 0
    assert len(calls) == 5
    calls.clear()
    time_ms(lambda: calls.append(1), 'cpu', warmup=0, repeat=50, budget_s=0)  # budget spent: one timed run
    assert len(calls) == 1


def test_cpu_peak_counts_live_tensors_only():
    keep = torch.zeros(2 ** 18)  # allocated before: not counted

    def step():
        a = torch.ones(2 ** 20)              # 4 MiB, alive with b
        b = a * 2                            # 4 MiB
        del a, b
        torch.ones(2 ** 19)                  # 2 MiB after they were freed

    assert peak_mib(step, 'cpu') == pytest.approx(8.0, abs=0.1)
    assert keep.numel()


def test_measure_forward_backward_and_bandwidth():
    x = torch.randn(64, 64, requires_grad=True)
    case = Case('g', 'm', lambda: ((lambda: x * 3), [x]), bytes_moved=10 ** 6)
    result = measure(case, Settings(repeat=2, warmup=0, budget_s=0))
    assert set(result) == {'fwd_ms', 'fwd_bwd_ms', 'peak_mib', 'gb_per_s'}
    assert result['gb_per_s'] == pytest.approx(1e6 / (result['fwd_ms'] * 1e6))


def test_ratios_within_groups_and_skips():
    rows = [dict(group='a', method='base', fwd_bwd_ms=2.0, peak_mib=4.0),
            dict(group='a', method='x', fwd_bwd_ms=3.0, peak_mib=1.0),
            dict(group='b', method='x', fwd_bwd_ms=5.0),
            dict(group='b', method='base', note='skipped: no')]
    add_ratios(rows, ['base'])
    assert rows[0]['fwd_bwd_ms/base'] == 1.0 and rows[1]['fwd_bwd_ms/base'] == 1.5 and rows[1]['peak_mib/base'] == 0.25
    assert 'fwd_bwd_ms/base' not in rows[2]
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0] == '| group | method | fwd+bwd ms | peak MiB | fwd+bwd ÷ base | peak ÷ base |'
    assert '| a | x | 3 | 1 | 1.5 | 0.25 |' in lines and '| b | x | 5 | — | — | — |' in lines
    assert lines[-1] == '- not measured: `base` (1 case: b) — skipped: no'  # skipped rows leave the table
    assert not any('|  |' in line for line in lines)


def test_skips_are_reported_not_measured():
    row = run_case(Case('g', 'm', build=None, skip='needs CUDA'), Settings())
    assert row == dict(group='g', method='m', note='skipped: needs CUDA')

    def unbuildable():
        raise SkipCase('no such thing')
    assert run_case(Case('g', 'm', unbuildable), Settings())['note'] == 'skipped: no such thing'


def test_registry_lookups():
    assert registered('FDConv') == ''
    assert 'not registered' in registered('no_such_layer_for_the_benchmark')
    with pytest.raises(SkipCase, match="building 'FDConv' failed"):
        build_registered(dict(type='FDConv', channels=8), 'cpu', torch.float32)


def test_cpu_clock_does_not_count_waiting():
    import time
    wall = time_ms(lambda: time.sleep(0.05), 'cpu', warmup=0, repeat=1, clock='wall')
    cpu = time_ms(lambda: time.sleep(0.05), 'cpu', warmup=0, repeat=1, clock='cpu')
    assert wall >= 50 and cpu < 10
    with pytest.raises(ValueError, match="clock must be 'wall' or 'cpu'"):
        time_ms(lambda: None, 'cpu', clock='gpu')


def test_a_method_skipped_everywhere_is_one_short_line():
    rows = [dict(group=g, method=m, fwd_ms=1.0) for g in 'ab' for m in ('x',)]
    rows += [dict(group=g, method='gpu', note='skipped: needs CUDA') for g in 'ab']
    assert markdown_table(rows).splitlines()[-1] == '- not measured: `gpu` (every case) — skipped: needs CUDA'


def test_command_line_shows_the_environment_that_changes_a_measurement():
    from mmdynconv.benchmark.report import command_line
    argv = ['tools/benchmark.py', 'fdconv_sizes', '--clock', 'cpu']
    assert command_line(argv, {}) == 'python tools/benchmark.py fdconv_sizes --clock cpu'
    env = {'MMDYNCONV_FDCONV_RELEASE': '/x/FDConv.py', 'MMDYNCONV_FBM_PATH': 'fft', 'HOME': '/root'}
    assert command_line(argv, env) == ('MMDYNCONV_FBM_PATH=fft MMDYNCONV_FDCONV_RELEASE=/x/FDConv.py '
                                       'python tools/benchmark.py fdconv_sizes --clock cpu')
