"""The README section of a transposed-convolution step (a layer export's one step, or every
``conv_transpose`` step of a model): its geometry per axis, the layouts of its data and
weights, and how the loops of its style compute each output element."""

from __future__ import annotations

from ..kernels.spec import Spec

_AXES = {1: ["w"], 2: ["h", "w"], 3: ["d", "h", "w"]}

KERNEL_ORDER = {
    "fast": "packed `[group][filter block][taps in phase order][in_channels/groups][NR]`",
    "reference": "the Keras layout `[*kernel_size][filters][in_channels/groups]`",
    "scatter": "`[*kernel_size][groups][in_channels/groups][filters/groups]`",
}
"""How each style reads the kernel (its part of the weights)."""


def _loops(p: str, style: str) -> str:
    """How the ``style`` loops of the functions prefixed ``p`` map to the formula."""
    if style == "fast":
        return f"""\
Style "fast" uses the stride-phase decomposition.  Per axis, output `o` has phase
`r = (o + crop_start) mod stride` and `q = (o + crop_start) div stride`.  Exactly the taps `j`
with `j*dilation mod stride == r` reach it, each from input `i = q - m_j`,
`m_j = (j*dilation - r) / stride` (tables `{p}_tap*`, `{p}_m*`).  So the sum of the formula

    y[n, o, f] = act(bias[f] + sum over taps (i, j) of sum over c of x[n, i, c] * kernel[j, f, c])

is computed without touching the zeros a zero-insertion implementation multiplies.  The
register block holds MR consecutive outputs of one phase (across rows) times NR filters (inputs
outside the image read a zero row); the `k` loop runs over the input channels of the group (the
`c` of the formula), and the store adds the bias and applies the activation.  The kernel is
packed by tconv at export time as `[group][filter block][taps in phase order][CIN_G][NR]`
(zero-padded to whole blocks).  Compile with `-fopenmp` to split the work over cores (disjoint
outputs; identical results)."""
    if style == "reference":
        return """\
Style "reference" is the definition, written as gather loops: for every output element
`y[n, o, f]`, every tap `j` whose input `i = (o + crop_start - j*dilation) / stride` is an
integer inside the input, and every input channel `c` of the filter's group:

    y[n, o, f] = act(bias[f] + sum over taps (i, j) of sum over c of x[n, i, c] * kernel[j, f, c])

This is the per-element formula `tconv explain` prints, loop for loop."""
    return """\
Style "scatter" is the plain port: zero the output, add every input element times every tap at
`o = i*stride + j*dilation - crop_start` (skipping outputs outside the range), then add the
bias and apply the activation.  It is the baseline of `tconv bench`."""


def conv_transpose_section(spec: Spec, style: str, title: str, offset: int) -> str:
    """The README section (a ``##`` heading ``title``) of the transposed convolution ``spec``
    (functions prefixed ``spec.name``) in ``style``, whose weights start ``offset`` floats into
    the project's weights."""
    g = spec.geometry
    names = _AXES[spec.rank]
    rows = "\n".join(
        f"| {n} | {a.size} | {a.kernel} | {a.stride} | {a.dilation} | {a.crop_start} | "
        f"{a.crop_end} | {a.full} | {a.out} |"
        for n, a in zip(names, spec.axes, strict=True)
    )
    cf = spec.channels_first
    in_layout = "(C, " + ", ".join(names) + ")" if cf else "(" + ", ".join(names) + ", C)"
    nbias = 0 if spec.bias is None else spec.bias.size
    return f"""\
## {title}

Input {spec.in_item} -> output {spec.out_item} per batch item ({spec.data_format_name}),
{g.in_channels} -> {g.out_channels} channels in {g.groups} group(s), activation
`{spec.activation}`, bias: {"yes" if spec.bias is not None else "no"}.
{g.macs(1)} multiply-adds per item.

Per axis the definition is `full[i*stride + j*dilation] += x[i] * w[j]`, then
`y[o] = full[o + crop_start]` (zero outside `full`; a negative crop adds zero rows):

| axis | in | kernel | stride | dilation | crop start | crop end | full | out |
|---|---|---|---|---|---|---|---|---|
{rows}

Layouts: input `{in_layout}` per item, float32; the output the same with {g.out_channels}
channels.  Weights from float {offset} of the project's weights: the kernel as this style
reads it ({KERNEL_ORDER[style]}),
then {nbias} bias values.  tconv derives it from the canonical
(= Keras) kernel `(*kernel_size, filters, in_channels/groups)` of the {spec.framework} layer
(stored in its {spec.kernel_layout} layout).  A PyTorch weight `w` `(in_channels,
out_channels/groups, *kernel_size)` is canonical after `w.reshape(G, Cin/G, Cout/G, *k)`,
moving the axes to `(*k, G, Cout/G, Cin/G)` and reshaping to `(*k, Cout, Cin/G)`; tconv does
this itself when it exports a torch layer.

### How the loops map to the formula

{_loops(spec.name, style)}
"""
