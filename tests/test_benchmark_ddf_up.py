"""Smoke test of tools/benchmark_ddf_up.py: it runs, measures every available upsampler and writes its CSV."""
import csv

from tool_runner import run_tool


def test_benchmark_ddf_up_quick(tmp_path):
    out = tmp_path / 'ddf_up.csv'
    proc = run_tool('tools/benchmark_ddf_up.py', '--quick', '--device', 'cpu', '--threads', '1', '--budget', '0.05',
                    '--max-reps', '2', '--out', str(out))
    rows = {r['method']: r for r in csv.DictReader(open(out))}
    assert set(rows) == {'ddf_up', 'ddf_up_reference', 'nearest', 'bilinear', 'deconv', 'pixel_shuffle', 'carafe'}
    assert float(rows['nearest']['fwdbwd_vs_nearest']) == 1.0 and float(rows['ddf_up']['fwdbwd_ms']) > 0
    assert rows['carafe']['note'] == 'mmcv CARAFE has no CPU kernel' and 'ddf_up' in proc.stdout
