"""Concatenate without copies: producers that write straight into their slice of the
concatenation's buffer (``tconv.graph.planner.slices``).

One Keras model concatenates, on the channel axis and on the outermost item axis, the output of
every producer kind (transposed convolution, convolutions of each C path, dense, pooling,
upsampling, an element-wise activation, BatchNormalization, a merge, another concatenation) and
the cases that must fall back to a copy (a graph input, a producer read twice, a producer
concatenated twice, a softmax over its channels).  The plan is checked (no overlap, every slice
inside its concatenation, the arena within 1.1x of the lower bound), run in NumPy inside the
planned arena, and the C is compiled under ASan/UBSan, run against Keras with a NaN-filled
arena, and verified layer by layer (each slice-writer's trace read back row by row).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import peer
from test_keras_model import SEED
from test_model_c import SANITIZE, _against_keras, _build, _run, simulate

import tconv
import tconv.keras as tk
from tconv.cexport.model import build_export, verify_model
from tconv.graph import Graph, Node
from tconv.graph.planner import plan, slices
from tconv.keras import zoo
from tconv.kernels.build import STRICT_FLAGS

WRITERS = {
    "tconv": "conv_transpose",
    "fast": "conv",
    "few": "conv",
    "strided": "conv",
    "s2d": "conv",
    "strided_up": "upsample",
    "depthwise": "conv",
    "dense": "dense",
    "pool": "pool",
    "up": "upsample",
    "tanh": "activation",
    "bn": "batch_norm",
    "sum": "add",
    "bcast": "add",
    "inner": "concat",
    "o_tconv": "conv_transpose",
    "o_relu": "relu",
    "prelu": "prelu",
    "rescale": "rescale",
    "permute": "transpose",
    "one": "add",
}
"""Layer -> op of every producer that must write its slice."""
COPIED = ("image", "shared", "soft", "twice")
"""Inputs of a concatenation that it must copy."""


def _model(keras):
    L = keras.layers
    x = keras.Input((8, 8, 3), name="image")
    shared = L.Conv2D(4, 3, padding="same", name="shared")(x)  # read twice: copied
    parts = [
        L.Conv2DTranspose(4, 3, padding="same", name="tconv")(x),
        L.Conv2D(6, 3, padding="same", activation="relu", name="fast")(x),
        L.Conv2D(2, 3, padding="same", name="few")(x),  # few filters: the row-vector kernel
        L.UpSampling2D(2, name="strided_up")(
            L.Concatenate(name="low")(
                [
                    L.Conv2D(5, 1, strides=2, name="strided")(x),  # the direct strided loop
                    L.Conv2D(3, 3, strides=2, padding="same", name="s2d")(x),
                ]
            )
        ),
        L.DepthwiseConv2D(3, padding="same", name="depthwise")(x),
        L.Dense(3, name="dense")(x),
        L.MaxPooling2D(3, strides=1, padding="same", name="pool")(x),
        L.UpSampling2D(2, name="up")(L.AveragePooling2D(2, name="half")(x)),
        L.Activation("tanh", name="tanh")(L.Multiply(name="prod")([shared, shared])),
        L.BatchNormalization(name="bn")(
            L.Subtract(name="diff")([shared, L.Conv2D(4, 1, name="s0")(x)])
        ),
        L.Add(name="sum")([L.Conv2D(3, 1, name="s1")(x), L.Conv2D(3, 1, name="s2")(x)]),
        L.Add(name="bcast")(  # a broadcasting merge: (8, 8, 3) + (1, 1, 3)
            [L.Conv2D(3, 1, name="b1")(x), L.GlobalAveragePooling2D(keepdims=True)(x)]
        ),
        L.Concatenate(name="inner")([L.Conv2D(2, 1, name="i1")(x), L.Conv2D(3, 1, name="i2")(x)]),
        L.PReLU(name="prelu")(L.Conv2D(2, 1, name="p0")(x)),
        L.Rescaling(0.5, offset=0.25, name="rescale")(L.Conv2D(2, 1, name="r0")(x)),
        L.Permute((2, 1, 3), name="permute")(L.Conv2D(2, 1, name="t0")(x)),
        L.Add(name="one")([L.Conv2D(1, 1, name="u1")(x), L.Conv2D(1, 1, name="u2")(x)]),
        x,  # a graph input: copied
        shared,  # read by other layers too: copied
        L.Conv2D(2, 1, activation="softmax", name="soft")(x),  # rows need contiguity: copied
    ]
    channels = L.Concatenate(name="channels")(parts)
    head = L.Conv2D(4, 1, name="head")(channels)
    twice = L.Conv2D(4, 1, name="twice")(x)
    outer = L.Concatenate(axis=1, name="outer")(
        [
            L.Conv2DTranspose(4, 3, padding="same", name="o_tconv")(x),
            L.ReLU(name="o_relu")(L.Add(name="o_sum")([head, twice])),
            twice,
            twice,  # the same tensor twice: copied
        ]
    )
    return keras.Model(x, outer, name="slices")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras = peer("keras")
    model = zoo.randomize(_model(keras), SEED)
    x = np.random.default_rng(SEED).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("slices") / "slices.keras"
    model.save(path)
    return path, x, np.asarray(model(x))


def _writer_layers(memory) -> dict[str, str]:
    return {memory.graph.node(n).layer: memory.graph.node(n).op for n in memory.slice_of}


def test_plan_writes_slices_and_copies_the_rest(saved):
    model = tk.load_model(saved[0])
    ex = build_export(model.graph, "m")
    memory = ex.plan
    memory.check()
    simulate(model.graph)
    writers = _writer_layers(memory)
    for layer, op in WRITERS.items():
        assert writers.get(layer) == op, (layer, writers)
    assert not set(COPIED) & set(writers)
    channels = memory.buffer_of["channels"]
    for name, (concat, _) in memory.slice_of.items():
        buf = memory.buffer_of[name]
        node = memory.graph.node(name)
        if concat == "channels" and buf.row:
            assert buf.row == channels.size // (node.size // node.shape[-1])
    assert memory.buffer_of["o_tconv"].row == 0  # an outer-axis slice is contiguous
    assert memory.buffer_of["o_tconv"].root is memory.buffer_of["outer"]
    assert memory.buffer_of["outer"].place == "output"  # slices go into the caller's output
    assert memory.buffer_of["i1"].root is channels  # nested: inner's slices inside channels
    assert sorted(memory.copied("outer")) == [2, 3]
    assert memory.arena <= 1.1 * memory.lower_bound
    steps = {n.layer: step for n, step in zip(memory.steps, ex.steps, strict=True)}
    assert "floats apart" in steps["tconv"].how and "floats apart" not in steps["o_tconv"].how


def test_check_catches_a_slice_outside_or_overlapping(saved):
    memory = build_export(tk.load_model(saved[0]).graph, "m").plan
    buf = memory.buffer_of["tconv"]
    buf.offset += 1
    with pytest.raises(AssertionError, match="not where its offset says"):
        memory.check()
    buf.start += 1  # now it overlaps the next slice
    with pytest.raises(AssertionError, match="overlap"):
        memory.check()
    buf.start = buf.offset = 10**6
    with pytest.raises(AssertionError, match="leaves"):
        memory.check()


def test_slices_c_matches_keras_under_sanitizers_with_canary_arena(saved, tmp_path):
    path, x, expected = saved
    model = tk.load_model(path)
    tconv.export_c(model, tmp_path, name="cat", test_input=x)
    _against_keras(tmp_path, "cat", [expected])
    exe = _build(tmp_path, "cat", SANITIZE)
    for args in ((), ("--canary",)):
        text = _run(exe, *args)
        assert "PASS" in text and "FAIL" not in text
    source = (tmp_path / "cat.c").read_text()
    assert "its slice of 'channels'" in source and "CAT_TRACE_ROWS(" in source
    readme = (tmp_path / "README.md").read_text()
    assert "writes its slice of `channels` (no copy)" in readme
    assert "copied (a graph input" in readme and "`image` -> `channels`" in readme
    passed, rows, text = verify_model(model, tmp_path, "cat", keras=True)
    assert passed, text
    by_layer = {r["layer"]: r for r in rows if r["max_abs_vs_keras"] is not None}
    assert {"tconv", "sum", "inner", "channels", "outer"} <= set(by_layer)


def test_a_channel_concat_of_dense_rows_and_a_graph_input():
    """Rank-1 items: a channel concatenation of one pixel is contiguous slices, whatever the
    producer; the graph input is copied."""
    w = {"kernel": np.ones((4, 3), np.float32)}
    nodes = [
        Node("x", "input", (), {"shape": (4,), "index": 0}, shape=(4,)),
        Node("d", "dense", ("x",), {"activation": "softmax"}, w, shape=(3,)),
        Node("g", "dense", ("x",), {"activation": "linear"}, w, shape=(3,)),
        Node("c", "concat", ("d", "x", "g"), {"axis": 0}, shape=(10,)),
        Node(
            "y", "dense", ("c",), {"activation": "linear"}, {"kernel": np.ones((10, 2))}, shape=(2,)
        ),
    ]
    graph = Graph(nodes, ["x"], ["y"])
    found = slices(graph)
    assert found == {"d": ("c", 0, 0, 0), "g": ("c", 2, 7, 0)}
    memory = plan(graph)
    memory.check()
    assert memory.copied("c") == [1]
    simulate(graph)


def test_reference_style_keeps_kernel_outputs_contiguous(saved, tmp_path):
    """The reference and scatter kernels store contiguous outputs: with them, the convolution
    family writes no channel slice (its outputs are copied), the other producers still do."""
    path, x, expected = saved
    model = tk.load_model(path)
    memory = build_export(model.graph, "m", style="reference").plan
    memory.check()
    strided = {memory.graph.node(n).op for n in memory.slice_of if memory.buffer_of[n].row}
    assert strided and not strided & {"conv", "dense", "conv_transpose"}
    tconv.export_c(model, tmp_path, name="cat", test_input=x, style="reference")
    _against_keras(tmp_path, "cat", [expected])
    text = _run(_build(tmp_path, "cat", ["-O2", *STRICT_FLAGS, "-Werror"]), "--canary")
    assert "PASS" in text and "FAIL" not in text
