"""The overlap (checkerboard) map of a transposed convolution, with the trained weights' share.

How many (input, tap) pairs reach each output position, per stride phase; whether that count is
uneven; and, from the weights, each phase's kernel energy and the layer's response to a constant
input — the two numbers that show a learned checkerboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layer import TransposedConv
from .core import axis_names
from .views import Phase, phase_table


@dataclass(frozen=True)
class Overlap:
    """Attributes:
    counts: ``(*out,)`` ints, (input, tap) pairs reaching each output position.
    phases: the stride phases with their sub-kernels (:class:`~tconv.explanation.views.Phase`).
    uneven: True when the phases use different numbers of taps (the checkerboard pattern).
    energy: ``(phases, filters)``: per phase and filter, ``Σ W[tap, f, :]²`` over its taps.
    constant_response: per phase, the mean output over its interior positions (where all its
        taps land) and all channels, for an input of ones (bias and activation included).
    """

    counts: np.ndarray
    phases: tuple[Phase, ...]
    uneven: bool
    energy: np.ndarray
    constant_response: np.ndarray
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def contrast(self) -> float:
        """(max - min) / max |.| of the per-phase constant response (0: no checkerboard)."""
        r = self.constant_response
        r = r[np.isfinite(r)]
        if r.size == 0:
            return 0.0
        scale = float(np.max(np.abs(r)))
        return float(r.max() - r.min()) / scale if scale else 0.0

    def to_text(self, max_side: int = 16) -> str:
        names = axis_names(len(self.strides))
        k, s = "×".join(map(str, self.kernel_size)), "×".join(map(str, self.strides))
        rule = [
            _axis_rule(n, kk, ss, dd)
            for n, kk, ss, dd in zip(
                names, self.kernel_size, self.strides, self.dilation, strict=True
            )
        ]
        lines = [
            f"Overlap map: (input, tap) pairs per output position (kernel {k}, stride {s}); "
            + ("UNEVEN" if self.uneven else "even")
            + f" ({'; '.join(rule)}).",
        ]
        lines += _grid_text(self.counts, max_side)
        holes = int(np.count_nonzero(self.counts == 0))
        if holes:
            lines.append(
                f"{holes} of {self.counts.size} output positions (0 above) are reached by no "
                "input: their value is the bias alone."
            )
        lines.append(
            "Per phase (output positions ≡ residue mod stride): taps, kernel energy ΣW² "
            "(mean over filters), response to an all-ones input (interior mean):"
        )
        for ph, e, r in zip(self.phases, self.energy, self.constant_response, strict=True):
            taps = " ".join("(" + ",".join(map(str, t)) + ")" for t in ph.taps) or "none"
            plural = "s" if len(ph.taps) != 1 else ""
            lines.append(
                f"  phase {ph.residue}: {len(ph.taps)} tap{plural} {taps}; "
                f"energy {float(e.mean()):.4g}; response {float(r):.4g}"
            )
        lines.append(
            f"Checkerboard contrast of the constant response (max-min)/max|.|: {self.contrast:.3g}"
        )
        return "\n".join(lines)


def _axis_rule(name: str, k: int, s: int, d: int) -> str:
    """Why one axis is even or not: how many taps land on each position modulo the stride."""
    per_phase = np.bincount([(j * d) % s for j in range(k)], minlength=s)
    if d == 1:
        verdict = "is" if k % s == 0 else "is not"
        return f"kernel {k} {verdict} divisible by stride {s} on axis {name}"
    return (
        f"axis {name}: taps at j*{d} for j < {k} fall {'/'.join(map(str, per_phase))} "
        f"on the {s} positions mod stride {s}"
    )


def _grid_text(counts: np.ndarray, max_side: int) -> list[str]:
    """Rows of digits for a 1D/2D map (3D: the first plane); larger maps show a corner."""
    grid = counts.reshape(-1, counts.shape[-1]) if counts.ndim < 3 else counts[0]
    if counts.ndim == 1:
        grid = counts[None, :]
    note = ""
    if counts.ndim == 3:
        note = " (first plane of the z axis)"
    rows, cols = min(grid.shape[0], max_side), min(grid.shape[1], max_side)
    if (rows, cols) != grid.shape:
        note += f" (top-left {rows}×{cols} of {grid.shape[0]}×{grid.shape[1]})"
    width = len(str(int(grid.max(initial=0))))
    lines = [f"  {' '.join(f'{int(v):>{width}}' for v in row[:cols])}" for row in grid[:rows]]
    if note:
        lines.insert(0, " " + note.strip())
    return lines


def overlap(layer: TransposedConv, spatial: tuple[int, ...] | list[int]) -> Overlap:
    """The overlap map of ``layer`` for a spatial input shape (no batch, no channels)."""
    g = layer.geometry(tuple(spatial))
    counts = np.zeros(g.out_shape, np.int64)
    for o in np.ndindex(*g.out_shape):
        counts[o] = int(np.prod([len(a.taps(p)) for a, p in zip(g.axes, o, strict=True)]))
    table = phase_table(g)
    uneven = len({len(ph.taps) for ph in table}) > 1
    w2 = layer.kernel.astype(np.float64) ** 2
    energy = np.array(
        [sum((w2[j].sum(axis=-1) for j in ph.taps), np.zeros(g.out_channels)) for ph in table]
    ).reshape(len(table), g.out_channels)
    ones_shape = (
        (1, g.in_channels, *g.in_shape) if layer.channels_first else (1, *g.in_shape, g.in_channels)
    )
    y = layer.to_canonical(layer(np.ones(ones_shape)))[0]
    response = []
    for ph in table:
        sub = y[tuple(slice(r, None, a.stride) for r, a in zip(ph.residue, g.axes, strict=True))]
        inner = counts[
            tuple(slice(r, None, a.stride) for r, a in zip(ph.residue, g.axes, strict=True))
        ]
        mask = inner == len(ph.taps)
        response.append(float(sub[mask].mean()) if mask.any() else float("nan"))
    return Overlap(
        counts,
        tuple(table),
        uneven,
        energy,
        np.array(response),
        layer.kernel_size,
        layer.strides,
        layer.dilation,
    )
