"""The activations of :mod:`tconv.activations` as C99, with the same formulas.

Element-wise activations become ``static float P_act(float v)``; ``softmax`` and ``log_softmax``
act on the last axis of the output (as Keras does, whatever the data format), so they become a
pass over the stored output.  Every helper is prefixed with the export's name so that several
exports can be compiled into one program.
"""

from __future__ import annotations

# Helpers several activations share: name -> (body, helpers it needs).  ``P`` is the prefix.
_HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sigmoid": (
        "/* split by sign so that exp never overflows */\n"
        "    const float e = expf(-fabsf(v));\n"
        "    return v >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);",
        (),
    ),
    "softplus": (
        "return (v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v)));",
        (),
    ),
    "hard_sigmoid": (
        "const float t = v + 3.0f;\n    return (t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t)) / 6.0f;",
        (),
    ),
}

# Element-wise activations: name -> (C expression of float v, helpers, needs libm).
_ELEMENTWISE: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "linear": ("v", (), False),
    "relu": ("v < 0.0f ? 0.0f : v", (), False),
    "relu6": ("v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v)", (), False),
    "leaky_relu": ("v >= 0.0f ? v : 0.2f * v", (), False),
    "elu": ("v > 0.0f ? v : expm1f(v)", (), True),
    "celu": ("v > 0.0f ? v : expm1f(v)", (), True),
    "selu": (
        "1.0507009873554804934193349852946f * "
        "(v > 0.0f ? v : 1.6732632423543772848170429916717f * expm1f(v))",
        (),
        True,
    ),
    "gelu": ("(float)(0.5 * v * (1.0 + erf((double)(v / 1.41421356237309504880f))))", (), True),
    "sigmoid": ("P_sigmoid(v)", ("sigmoid",), True),
    "hard_sigmoid": ("P_hard_sigmoid(v)", ("hard_sigmoid",), False),
    "tanh": ("tanhf(v)", (), True),
    "softplus": ("P_softplus(v)", ("softplus",), True),
    "softsign": ("v / (1.0f + fabsf(v))", (), True),
    "silu": ("v * P_sigmoid(v)", ("sigmoid",), True),
    "hard_silu": ("v * P_hard_sigmoid(v)", ("hard_sigmoid",), False),
    "mish": ("v * tanhf(P_softplus(v))", ("softplus",), True),
    "log_sigmoid": ("-P_softplus(-v)", ("softplus",), True),
    "exponential": ("expf(v)", (), True),
}

ROW_WISE = ("softmax", "log_softmax")

_ROWS = """\
/* {name} over {what} */
static void P_{name}_{kind}(float *y, ptrdiff_t rows, int len{param})
{{
    ptrdiff_t r;
    for (r = 0; r < rows; ++r) {{
        float *row = y + {start};
        float top = row[0], sum = 0.0f;
        int k;
        for (k = 1; k < len; ++k) top = {at} > top ? {at} : top;
        for (k = 0; k < len; ++k) {total};
        for (k = 0; k < len; ++k) {body};
    }}
}}
"""
# The row pass over contiguous rows (the last axis), or over lanes of stride ``inner``.
_ROW_KINDS = {
    "rows": {
        "what": "the last axis of the output: rows of `len` contiguous values.",
        "param": "",
        "start": "r * len",
        "at": "row[k]",
    },
    "lanes": {
        "what": "one axis of stride `inner`: `rows` = outer x inner lanes of `len`\n * values.",
        "param": ", ptrdiff_t inner",
        "start": "(r / inner) * len * inner + r % inner",
        "at": "row[k * inner]",
    },
    "spread": {  # the caller defines P_start(r) and P_at(k)
        "what": "axes that are not neighbours: lane `r` starts at P_start(r), its value\n * `k` "
        "is P_at(k) further.",
        "param": "",
        "start": "P_start(r)",
        "at": "row[P_at(k)]",
    },
}
_ROW_SUM = {  # softmax keeps each exp (one expf per value), log_softmax only their sum
    "softmax": "{ row[k] = expf(row[k] - top); sum += row[k]; }",
    "log_softmax": "sum += expf(row[k] - top)",
}
_ROW_BODY = {
    "softmax": "row[k] = row[k] / sum",
    "log_softmax": "row[k] = (row[k] - top) - logf(sum)",
}


def needs_libm(activation: str) -> bool:
    """True when the C for ``activation`` calls libm."""
    return activation in ROW_WISE or _ELEMENTWISE[activation][2]


def is_rowwise(activation: str) -> bool:
    return activation in ROW_WISE


def elementwise_expr(activation: str, prefix: str) -> str:
    """The C expression of ``v`` for an element-wise activation (``v`` for row-wise ones)."""
    if activation in ROW_WISE:
        return "v"
    return _ELEMENTWISE[activation][0].replace("P_", f"{prefix}_")


def _helper_code(names: list[str], prefix: str) -> str:
    out = []
    for helper in names:
        body = _HELPERS[helper][0]
        out.append(f"static float P_{helper}(float v)\n{{\n    {body}\n}}\n")
    return "\n".join(out).replace("P_", f"{prefix}_")


def row_pass(activation: str, prefix: str, kind: str = "rows") -> str:
    """``prefix_ACTIVATION_rows(y, rows, len)`` (contiguous rows); for ``kind="lanes"``
    ``prefix_ACTIVATION_lanes(y, rows, len, inner)`` (the axis has stride ``inner``; ``rows``
    counts outer x inner lanes); for ``kind="spread"`` ``prefix_ACTIVATION_spread(y, rows,
    len)`` over the offsets of ``prefix_start``/``prefix_at`` (defined by the caller).  In place
    over ``y``."""
    k = _ROW_KINDS[kind]
    body = _ROW_BODY[activation].replace("row[k]", k["at"])
    total = _ROW_SUM[activation].replace("row[k]", k["at"])
    code = _ROWS.format(name=activation, kind=kind, body=body, total=total, **k)
    return code.replace("P_", f"{prefix}_")


def definitions(activation: str, prefix: str) -> str:
    """C definitions needed by ``activation``: helpers, ``prefix_act`` and the row pass."""
    if activation in ROW_WISE:
        return row_pass(activation, prefix)
    expr, helpers, _ = _ELEMENTWISE[activation]
    code = _helper_code(list(helpers), prefix)
    if activation == "linear":
        return code
    act = f"static float P_act(float v)\n{{\n    return {expr};\n}}\n".replace("P_", f"{prefix}_")
    return code + ("\n" if code else "") + act


def store_expr(activation: str, prefix: str, value: str) -> str:
    """The C expression storing ``value`` after an element-wise activation."""
    if activation == "linear" or activation in ROW_WISE:
        return value
    return f"{prefix}_act({value})"


def runtime_definitions(prefix: str) -> tuple[str, list[str]]:
    """Every activation for the runtime library: (C code, enum names in order).

    The code defines ``static float prefix_act(int id, float v)`` and the row passes.
    """
    names = list(_ELEMENTWISE) + list(ROW_WISE)
    code = [_helper_code(list(_HELPERS), prefix)]
    cases = []
    for i, name in enumerate(_ELEMENTWISE):
        expr = _ELEMENTWISE[name][0].replace("P_", f"{prefix}_")
        cases.append(f"    case {i}: return {expr}; /* {name} */")
    code.append(
        f"static float {prefix}_act(int id, float v)\n{{\n    switch (id) {{\n"
        + "\n".join(cases)
        + "\n    default: return v;\n    }\n}\n"
    )
    for name in ROW_WISE:
        code.append(row_pass(name, prefix))
    return "\n".join(code), names
