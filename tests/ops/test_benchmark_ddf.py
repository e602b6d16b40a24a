"""Smoke test of tools/benchmark_ddf.py: it runs, skips what it must, writes a CSV with ratios (no timing checks)."""
import csv
import importlib.util
import pathlib

import mmdynconv


def test_benchmark_quick_run_writes_csv(tmp_path, capsys):
    path = pathlib.Path(mmdynconv.__file__).resolve().parents[1] / 'tools' / 'benchmark_ddf.py'
    spec = importlib.util.spec_from_file_location('benchmark_ddf', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / 'ddf.csv'
    methods = ['ddf_triton', 'ddf_reference', 'unfold', 'depthwise']
    bench.main(['--quick', '--device', 'cpu', '--batch', '1', '--budget', '0', '--max-unfold-gib', '0.01',
                '--methods', *methods, '--out', str(out)])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * len(methods)
    by_method = {(r['shape'], r['method']): r for r in rows}
    assert by_method[('1x64x56x56', 'ddf_triton')]['note'].startswith('skipped')
    assert by_method[('1x64x56x56', 'unfold')]['note'].startswith('skipped: unfold buffers')
    assert float(by_method[('1x512x7x7', 'unfold')]['fwd_bwd_vs_unfold']) == 1.0
    assert float(by_method[('1x512x7x7', 'ddf_reference')]['peak_mib']) > 0
    assert 'fwd_bwd_vs_depthwise' in capsys.readouterr().out
