"""tools/benchmark.py at the small shapes: every benchmark runs, writes CSV / markdown / PNG and the docs page."""
import csv

import pytest

from mmdynconv.benchmark.cli import KEEP_MARKER, main, parse_args
from mmdynconv.benchmark.registry import ALL
from mmdynconv.ops import triton_available, triton_interpreter_enabled

FAST = ['--shapes', 'small', '--repeat', '1', '--warmup', '0', '--budget', '0', '--device', 'cpu']


def rows_of(path):
    return {(r['group'], r['method']): r for r in csv.DictReader(open(path))}


def test_all_small_writes_every_table_and_the_docs(tmp_path, capsys):
    docs = tmp_path / 'benchmarks.md'
    kept = f'{KEEP_MARKER}\n\n## Whole models\n\na run outside --all\n'
    docs.write_text('# Benchmarks\n\nan older page\n\n' + kept)
    assert main(['--all', *FAST, '--out', str(tmp_path), '--docs', str(docs)]) == 0
    assert docs.read_text().endswith('\n' + kept) and 'an older page' not in docs.read_text()
    for name in ALL:
        for ext in ('csv', 'md', 'png'):
            assert (tmp_path / f'{name}_cpu.{ext}').stat().st_size > 0, (name, ext)
    text = docs.read_text()
    assert text.startswith('# Benchmarks')
    assert text.count('\npython tools/benchmark.py --all --shapes small') == len(ALL)
    assert '| shape | k | dtype | method | fwd ms | fwd+bwd ms | peak MiB | fwd+bwd ÷ depthwise |' in text

    ddf = rows_of(tmp_path / 'ddf_cpu.csv')
    group = '1×8×12×10 k3 float32'
    assert float(ddf[(group, 'depthwise')]['fwd_bwd_ms/depthwise']) == 1.0
    assert float(ddf[(group, 'unfold')]['fwd_bwd_ms/unfold']) == 1.0
    assert float(ddf[(group, 'ddf_reference')]['peak_mib']) > 0
    if triton_interpreter_enabled() and triton_available():  # TRITON_INTERPRET=1 without CUDA; Triton >= 3.0
        assert float(ddf[(group, 'ddf_triton')]['fwd_ms']) > 0

    up = rows_of(tmp_path / 'ddf_up_cpu.csv')
    group = '1×16×6×7 float32'
    assert up[(group, 'carafe')]['note'] == 'skipped: mmcv CARAFE has no CPU kernel'
    assert float(up[(group, 'ddf_up')]['fwd_bwd_ms/nearest']) > 0
    for name in ('carafe_torch', 'dysample', 'fade'):               # measured once registered, else a note
        assert up[(group, name)]['fwd_ms'] or 'not registered' in up[(group, name)]['note']

    convs = rows_of(tmp_path / 'convs_cpu.csv')
    assert float(convs[('tiny-3x3', 'fdconv')]['fwd_bwd_ms/fdconv_oracle']) > 0
    assert float(convs[('tiny-1x1', 'plain')]['fwd_bwd_ms/plain']) == 1.0
    assert convs[('tiny-3x3', 'fdconv_torch')]['note'] == 'skipped: same as fdconv on CPU'

    bandwidth = rows_of(tmp_path / 'bandwidth_cpu.csv')
    assert float(bandwidth[('copy', 'copy')]['gb_per_s/copy']) == 1.0
    assert float(bandwidth[('1×8×16×16 k3 float32', 'ddf_reference')]['gb_per_s/copy']) > 0
    assert 'wrote' in capsys.readouterr().out


@pytest.mark.parametrize('argv,message', [
    (['ddf', '--repeat', '0'], '--repeat must be >= 1'),
    (['nope'], "unknown benchmark 'nope'"),
    (['ddf', '--all'], 'not both'),
    ([], 'give benchmark names or --all'),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err
