"""The copy-pasteable Python examples of the README and docs/ run as written, and the docs' links resolve."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def _examples():
    for page in PAGES:
        for i, block in enumerate(re.findall(r'```python\n(.*?)```', page.read_text(), flags=re.S)):
            if re.search(r'^(import|from) ', block, flags=re.M):  # whole programs, not config fragments
                yield pytest.param(block, id=f'{page.name}-{i}')


@pytest.mark.parametrize('code', list(_examples()))
def test_python_examples_run(code):
    torch.manual_seed(0)
    exec(compile(code, '<docs>', 'exec'), {})


@pytest.mark.parametrize('page', PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    for target in re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', page.read_text()):
        assert (page.parent / target).exists(), f'{page.name} links to missing {target}'


def _table_rows(text):
    separator = re.compile(r'\|(\s*:?-+:?\s*\|)+')
    return [line for line in text.splitlines() if line.startswith('|') and not separator.fullmatch(line)]


@pytest.mark.parametrize('page', PAGES, ids=[p.name for p in PAGES])
def test_tables_have_no_blank_cells(page):
    """Every cell of every markdown table says something (a value, or — for not applicable)."""
    for row in _table_rows(page.read_text()):
        cells = row.strip().strip('|').split('|')
        assert all(cell.strip() for cell in cells), f'{page.name}: blank cell in {row!r}'


def test_nothing_cites_documents_outside_the_repository():
    """Definitions live in docs/ (each method's page); code, tests and docs never point at files users do not have."""
    import subprocess
    files = subprocess.run(['git', 'ls-files', '*.py', '*.md', '*.sh', '*.yml', '*.cfg', '*.txt'], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r'SPEC §|SPEC\.md|DESIGN\.md|shared/')
    cited = [f for f in files if f != 'tests/test_docs.py'
             and pattern.search((ROOT / f).read_text(encoding='utf-8', errors='replace'))]
    assert not cited, f'files citing documents outside the repository: {cited}'
