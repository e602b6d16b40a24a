"""The demo preset of ``tools/compare_layers.py`` (docs/comparison.md): the protocol on generated data
(:mod:`.protocol`), its variants and runs (:mod:`.cells`), the runs trained through the package's config runner
(:mod:`.runner`), the table and plot (:mod:`.report`, :mod:`.plot`); the command line of both modes is
:mod:`mmdynconv.comparison.cli`."""
