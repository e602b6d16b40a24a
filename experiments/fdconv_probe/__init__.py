"""Why a from-scratch FDConv-ResNet detector trails the plain one (docs/comparison.md): the measurements
(:mod:`.probe`) and the command line of ``tools/probe_fdconv_training.py`` (:mod:`.cli`)."""
