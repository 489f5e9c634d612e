"""Explain one output element of a quantized transposed convolution, in integers.

For ``y[n, oy, ox, f]`` of a :class:`tconv.quant.QuantizedTransposeConv` (TFLite's int8 or 16x8
TRANSPOSE_CONV): which taps reach it (the same stride/crop arithmetic as the float explanation),
every integer term ``(x_q - zp_in) * w_q``, the accumulator, the bias, the multiplier and shift
as TFLite derives them from the float scales (``frexp``, Q31 rounding), every rounding step of
the requantization, ``+ zp_out``, the clamp of the fused activation, and the real value the
result stands for beside the value computed in real numbers from the same operands.

Everything is computed with the scalar definitions of :mod:`tconv.quant` (Python ints), and the
result is checked equal to ``layer(x)[at]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import quant
from ..quant import QuantizedTransposeConv
from .core import AxisStep, Explanation, _normalize_at, axis_names, ix
from .core import explain as explain_float


class QuantizedExplanation:
    """Everything that enters ``layer(x)[at]`` of a quantized layer.

    Attributes:
        layer, x, at: what was explained (``x`` quantized, ``at = (n, oy, ox, f)``).
        steps: per axis, the taps the stride/crop arithmetic selects.
        terms: one dict per product: ``input_index``, ``filter_index`` (TFLite's ``(f, ky, kx,
            c)``), ``x_q``, ``x_centered = x_q - zp_in``, ``w_q``, ``product``.
        tap_sums: per (input position, kernel tap), the sum of its channel products.
        accumulator: the sum of the products (int32 for int8, int64 for 16x8); ``bias``;
            ``acc`` = accumulator + bias.
        scale: the steps from the float scales to ``multiplier``/``shift``; ``rounding``: the
            requantization steps; ``scaled``, ``with_zero_point``, ``value`` (after the clamp).
        real: ``s_out * (value - zp_out)``; ``real_exact``: the op in real numbers on the
            dequantized operands (no rounding), for comparison; ``float_input``: the float input
            when one was given (then ``real_exact`` uses it instead of the dequantized input).
    """

    def __init__(self, layer: QuantizedTransposeConv, x: Any, at: Sequence[int]) -> None:
        x = np.asarray(x)
        self.float_input = x if x.dtype.kind == "f" else None
        xq = layer.quantize(x) if x.dtype.kind == "f" else layer.check_input(x)
        self.layer, self.x = layer, xq
        g = layer.geometry
        self.output_shape = layer.output_shape(xq.shape)
        self.at = _normalize_at(at, self.output_shape)
        n, *o, f = self.at
        self.n, self.o, self.f = n, tuple(o), f
        self.steps = tuple(
            AxisStep(name, axis, p, tuple(axis.taps(p)))
            for name, axis, p in zip(axis_names(g.rank), g.axes, self.o, strict=True)
        )
        zp_in = layer.input_zero_point
        self.terms: list[dict[str, Any]] = []
        self.tap_sums: list[dict[str, Any]] = []
        for i, j in g.taps(self.o):
            xs = [int(v) for v in xq[ix(n, *i)]]
            ws = [int(v) for v in layer.filter[ix(f, *j)]]
            products = [(xv - zp_in) * wv for xv, wv in zip(xs, ws, strict=True)]
            for c, (xv, wv, pv) in enumerate(zip(xs, ws, products, strict=True)):
                self.terms.append(
                    {
                        "input_index": [n, *i, c],
                        "filter_index": [f, *j, c],
                        "x_q": xv,
                        "x_centered": xv - zp_in,
                        "w_q": wv,
                        "product": pv,
                    }
                )
            self.tap_sums.append({"input": [n, *i], "tap": list(j), "sum": sum(products)})
        total = sum(t["product"] for t in self.terms)
        self.accumulator = total if layer.sixteen else quant.wrap32(total)
        self.bias = 0 if layer.bias is None else int(layer.bias[f])
        acc = self.accumulator + self.bias
        self.acc = acc if layer.sixteen else quant.wrap32(acc)
        self._derive_scale()
        self._requantize()
        self.real = float(layer.dequantize(np.array(self.value)))
        self.real_exact = self._real_exact()
        expected = int(layer(xq)[self.at])
        if expected != self.value:  # the definitions and the fast path disagree: a tconv bug
            raise AssertionError(f"explained {self.value} but layer(x)[at] = {expected}")

    def _derive_scale(self) -> None:
        layer, f = self.layer, self.f
        real = layer.effective_scale[f]
        mantissa, exponent = math.frexp(real)
        q = quant.round_half_away(mantissa * 2**31)
        self.multiplier, self.shift = int(layer.multiplier[f]), int(layer.shift[f])
        self.scale: dict[str, Any] = {
            "input_scale": layer.input_scale,
            "filter_scale": float(layer.filter_scale[f]),
            "output_scale": layer.output_scale,
            "effective_scale": real,
            "frexp": [mantissa, exponent],
            "q31": q,
            "carry": q == 2**31,
            "multiplier": self.multiplier,
            "shift": self.shift,
        }

    def _requantize(self) -> None:
        layer, acc, m, s = self.layer, self.acc, self.multiplier, self.shift
        steps: list[tuple[str, int, str]] = []
        if layer.sixteen:
            reduced = quant.reduced_multiplier_16x8(m)
            total = 15 - s
            product = acc * reduced + (1 << (total - 1))
            scaled = quant.wrap32(product >> total)
            steps += [
                ("reduced multiplier", reduced, f"({m} + 2^15) >> 16, at most 0x7FFF"),
                ("total shift", total, f"15 - shift = 15 - ({s})"),
                ("acc * reduced + 2^(total-1)", product, f"{acc} * {reduced} + 2^{total - 1}"),
                ("scaled", scaled, f">> {total} (arithmetic: rounds halves up)"),
            ]
        else:
            left, right = max(s, 0), max(-s, 0)
            shifted = quant.wrap32(acc * (1 << left))
            ab = shifted * m
            nudge = 2**30 if ab >= 0 else 1 - 2**30
            high = quant.saturating_rounding_doubling_high_mul(shifted, m)
            mask = (1 << right) - 1
            remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
            scaled = quant.rounding_divide_by_pot(high, right)
            steps += [
                ("left shift", shifted, f"acc << {left}"),
                ("a * multiplier", ab, f"{shifted} * {m} (int64)"),
                ("+ nudge", ab + nudge, f"nudge {nudge}: halves away from zero"),
                ("high 32 bits", high, "(a*b + nudge) / 2^31, truncated toward zero"),
                (
                    "rounding right shift",
                    scaled,
                    f"{high} >> {right} = {high >> right}, remainder {remainder} "
                    f"{'>' if remainder > threshold else '<='} threshold {threshold}"
                    f"{': +1' if remainder > threshold else ''}",
                ),
            ]
        self.rounding = steps
        self.scaled = scaled
        self.with_zero_point = scaled + layer.output_zero_point
        self.value = min(max(self.with_zero_point, layer.act_min), layer.act_max)

    def _real_exact(self) -> float:
        layer = self.layer
        if self.float_input is None:
            return float(layer.real_output(self.x)[self.at])
        return float(layer.real_output(self.float_input)[self.at])

    # -- texts -------------------------------------------------------------------------------

    @property
    def at_text(self) -> str:
        return f"y[{', '.join(map(str, self.at))}]"

    def to_text(self, all: bool = False, shown: int = 3) -> str:
        """A terminal-readable account; channel sums longer than ``2*shown`` are elided unless
        ``all``."""
        layer, g = self.layer, self.layer.geometry
        kind = "16x8" if layer.sixteen else "int8"
        acc_type = "int64" if layer.sixteen else "int32"
        lines = [
            f"{self.at_text} of quantized ({kind}) TRANSPOSE_CONV {layer.name!r} (input "
            f"{tuple(self.x.shape)} -> output {self.output_shape}, TFLite layouts NHWC, filter "
            f"(F, kh, kw, C))",
            f"  {self.at_text} = clamp(requantize(bias[{self.f}] + Σ (x_q - zp_in)·w_q) + zp_out)",
            f"  zp_in = {layer.input_zero_point}, zp_out = {layer.output_zero_point}, "
            f"activation {layer.activation}: clamp to [{layer.act_min}, {layer.act_max}]",
            "",
            "Where the taps come from:",
        ]
        for step in self.steps:
            lines += ["  " + s for s in step.lines()]
        lines.append("")
        if not self.tap_sums:
            lines.append("No (input, tap) pair reaches this element: the accumulator is the bias.")
        per = g.in_channels
        for t, tap in enumerate(self.tap_sums):
            i, j = tap["input"], tap["tap"]
            lines.append(
                f"  x[{', '.join(map(str, i))}, :] · filter[{self.f}, {', '.join(map(str, j))}, :]"
                f" = {tap['sum']}"
            )
            rows = self.terms[t * per : (t + 1) * per]
            keep = (
                range(per) if all or per <= 2 * shown else [*range(shown), *range(per - shown, per)]
            )
            last = -1
            for r in keep:
                if r != last + 1:
                    lines.append(f"      ... {r - last - 1} more channels ...")
                row = rows[r]
                lines.append(
                    f"      ({row['x_q']} - {layer.input_zero_point}) · {row['w_q']} = "
                    f"{row['x_centered']} · {row['w_q']} = {row['product']}"
                )
                last = r
        sc = self.scale
        lines += [
            f"  {f'accumulator ({acc_type})':<30} = {self.accumulator}",
            f"  {f'+ bias[{self.f}]':<30} = {self.bias}",
            f"  {'acc':<30} = {self.acc}",
            "",
            "Requantization (as TFLite derives it from the float scales):",
            f"  effective scale = s_in · s_w[{self.f}] / s_out = {sc['input_scale']!r} · "
            f"{sc['filter_scale']!r} / {sc['output_scale']!r} = {sc['effective_scale']!r}",
            f"  frexp -> {sc['frexp'][0]!r} · 2^{sc['frexp'][1]}; round(mantissa · 2^31) = "
            f"{sc['q31']}{' = 2^31: halved, shift + 1' if sc['carry'] else ''}",
            f"  multiplier = {self.multiplier}, shift = {self.shift}  (scale ≈ multiplier · "
            f"2^(shift - 31) = {self.multiplier * 2.0 ** (self.shift - 31)!r})",
        ]
        for label, value, how in self.rounding:
            lines.append(f"  {label:<30} = {value}   [{how}]")
        clamp = f"clamp [{layer.act_min}, {layer.act_max}]"
        source = "the float input" if self.float_input is not None else "the dequantized input"
        lines += [
            f"  {f'+ zp_out ({layer.output_zero_point})':<30} = {self.with_zero_point}",
            f"  {clamp:<30} = {self.value}"
            + ("" if self.value == self.with_zero_point else "   (saturated)"),
            "",
            f"Real value: s_out · (y - zp_out) = {layer.output_scale!r} · ({self.value} - "
            f"{layer.output_zero_point}) = {self.real:.6g}",
            f"In real numbers ({source}, "
            f"dequantized filter and bias, no rounding): {self.real_exact:.6g} "
            f"(difference {self.real - self.real_exact:+.3g} = "
            f"{(self.real - self.real_exact) / layer.output_scale:+.3f} output steps)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every step."""
        layer = self.layer
        return {
            "at": list(self.at),
            "value": self.value,
            "kind": "16x8" if layer.sixteen else "int8",
            "name": layer.name,
            "input_shape": list(self.x.shape),
            "output_shape": list(self.output_shape),
            "crops": [[a.crop_start, a.crop_end] for a in layer.geometry.axes],
            "derivation": [s.lines() for s in self.steps],
            "input_zero_point": layer.input_zero_point,
            "output_zero_point": layer.output_zero_point,
            "terms": self.terms,
            "taps": self.tap_sums,
            "accumulator": self.accumulator,
            "bias": self.bias,
            "acc": self.acc,
            "scale": self.scale,
            "rounding": [{"step": s, "value": v, "how": h} for s, v, h in self.rounding],
            "scaled": self.scaled,
            "with_zero_point": self.with_zero_point,
            "activation": layer.activation,
            "clamp": [layer.act_min, layer.act_max],
            "real": self.real,
            "real_exact": self.real_exact,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __repr__(self) -> str:
        return (
            f"QuantizedExplanation({self.at_text} = {self.value}, {len(self.tap_sums)} taps, "
            f"{len(self.terms)} products)"
        )


def explain(
    op: Any, x: Any, at: Sequence[int], /, layer: str | None = None
) -> Explanation | QuantizedExplanation:
    """Explain ``op(x)[at]``: :class:`QuantizedExplanation` for a quantized op (``x``
    quantized, or float to be quantized by the op's input quantization), else the float
    :func:`tconv.explanation.core.explain` (layers, and ``layer`` inside a model)."""
    if isinstance(op, QuantizedTransposeConv) and layer is None:
        return QuantizedExplanation(op, x, at)
    return explain_float(op, x, at, layer=layer)


explain.__doc__ = (explain.__doc__ or "") + "\n\n" + (explain_float.__doc__ or "")
