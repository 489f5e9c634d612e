"""``bench/fast_c_variants.py`` edits the generated fast C by regular expressions: every variant
still finds what it edits (the commands in docs/targets.md stay reproducible)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tconv import benchmark
from tconv.cexport.spec import from_layer
from tconv.kernels import emit

_PATH = Path(__file__).resolve().parents[1] / "bench" / "fast_c_variants.py"


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("fast_c_variants", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source(name: str) -> str:
    case = next(c for c in benchmark.SUITE if c.name == name)
    rng = np.random.default_rng(0)
    layer = case.layer(rng)
    return emit.library_source(from_layer(layer, case.input(rng).shape[1:], "tconv_layer"), "fast")


def test_every_variant_edits_the_generated_c() -> None:
    variants = _module()
    small, large = _source("vol3d_k3"), _source("seed_k3")  # 0.2 and 19 MiB of weights
    for name in variants.VARIANTS:
        source = large if name == "block_fastest" else small
        edited = variants.variant(source, name)
        assert (edited != source) == (name != "as_is"), name
    swapped = variants.variant(variants.variant(small, "item_fastest"), "block_fastest")
    assert swapped == small
    with pytest.raises(ValueError, match="no .* any more"):
        variants.variant(small, "block_fastest")
