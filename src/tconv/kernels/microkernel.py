"""The register-blocked micro-kernel: one C99 function per block shape ``(MR, NR)``.

The function computes, for ``m < MR`` and ``n < NR``::

    acc[m * NR + n] = (fresh ? 0 : acc[m * NR + n])
                      + sum over t < taps, k < kc of x[t * MR + m][k * xs] * w[t][k * NR + n]

For each of ``taps`` products, ``x`` holds MR row pointers (the rows of a GEMM's left matrix,
each read with element stride ``xs``) and ``w`` one pointer to ``kc`` rows of NR floats (the
packed right matrix); ``acc`` is MR x NR floats, row after row, loaded into registers once (or
started at zero: ``fresh``, a block's first chunk of channels) and stored once for all the
taps.  The fast style of a layer calls it once per register block, with
the taps of its phase; forward convolutions (taps = kernel positions) and dense layers
(``taps = 1``) are the same sum and can call it too.

How the block is cut into register tiles depends on the target, and is chosen at compile time by
the compiler's predefined macros (the first that holds, see :data:`ISAS`):

- ``avx512`` (``__AVX512F__``): 16-lane vectors, 32 registers;
- ``avx2`` (``__AVX2__`` and ``__FMA__``): 8 lanes, 16 registers;
- ``neon`` (``__ARM_NEON`` on ``__aarch64__``): 4 lanes, 32 registers;
- ``portable``: plain C99 loops (what every other compiler, flag set or CPU gets: Cortex-M,
  ``-O2`` without ``-march``), spelled for GCC's and Clang's vectorizers.

An ISA's branch is emitted only when NR is a multiple of its lanes; the packed weights do not
depend on the branch (NR is chosen by the layer, :data:`NR_MAX` is a multiple of every width), so
the same weights serve every build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NR_MAX = 32
"""Filters per register block: a multiple of every vector width (16, 8, 4)."""

ROWS: dict[str, tuple[int, ...]] = {
    "avx512": (14, 12, 8),
    "avx2": (6,),
    "neon": (6,),
    "portable": (6,),
}
"""Per target, the outputs per register block (MR) that :func:`block_rows` chooses from: with
NR = 32, AVX-512 holds up to 14 x 2 vectors of 16 lanes in its 32 registers, AVX2 6 x 2 of 8
lanes in 16, NEON 6 x 4 of 4 lanes in 32 (the block is cut into such tiles).  Not 10 for
AVX-512: with it GCC 12 spills the weight vectors of the kernel inlined into the layer's loop
(``tests/test_portability.py`` checks the assembly of the others)."""


@dataclass(frozen=True)
class Isa:
    """One target of the micro-kernel: its macro test, vector width and intrinsics."""

    name: str
    condition: str
    header: str
    lanes: int
    registers: int
    vector: str
    load: str  # "{p}": a pointer
    store: str  # "{p}", "{v}"
    broadcast: str  # "{x}": a float
    fma: str  # "{a} += {w} * {b}", returns the new {a}
    zero: str  # a vector of zeros
    prefetch: str | None = None  # "{p}": ask for the line at p; None: the branch never does


ISAS: tuple[Isa, ...] = (
    Isa(
        "avx512",
        "defined(__AVX512F__)",
        "immintrin.h",
        16,
        32,
        "__m512",
        "_mm512_loadu_ps({p})",
        "_mm512_storeu_ps({p}, {v})",
        "_mm512_set1_ps({x})",
        "_mm512_fmadd_ps({w}, {b}, {a})",
        "_mm512_setzero_ps()",
    ),
    Isa(
        "avx2",
        "defined(__AVX2__) && defined(__FMA__)",
        "immintrin.h",
        8,
        16,
        "__m256",
        "_mm256_loadu_ps({p})",
        "_mm256_storeu_ps({p}, {v})",
        "_mm256_set1_ps({x})",
        "_mm256_fmadd_ps({w}, {b}, {a})",
        "_mm256_setzero_ps()",
        "_mm_prefetch((const char *)({p}), _MM_HINT_T0)",
    ),
    Isa(
        "neon",
        "defined(__ARM_NEON) && defined(__aarch64__)",
        "arm_neon.h",
        4,
        32,
        "float32x4_t",
        "vld1q_f32({p})",
        "vst1q_f32({p}, {v})",
        "vdupq_n_f32({x})",
        "vfmaq_f32({a}, {w}, {b})",
        "vdupq_n_f32(0.0f)",
    ),
)
PORTABLE = "portable"
NAMES = (*(isa.name for isa in ISAS), PORTABLE)

PREFETCH_ROWS = 8
"""How many rows of weights ahead a streaming call asks for (``stream``, :func:`source`)."""


def probe_source() -> str:
    """C whose preprocessed text is ``tconv_isa NAME``: the branch a build takes (for NR a
    multiple of every width), from the same conditions as the kernels."""
    lines = []
    for k, isa in enumerate(ISAS):
        lines += [f"#{'if' if k == 0 else 'elif'} {isa.condition}", f"tconv_isa {isa.name}"]
    lines += ["#else", f"tconv_isa {PORTABLE}", "#endif", ""]
    return "\n".join(lines)


def branches(nr: int) -> list[Isa]:
    """The vector targets whose branch is emitted for blocks of ``nr`` filters."""
    return [isa for isa in ISAS if nr % isa.lanes == 0]


def block_rows(nr: int, phases: Sequence[int], kc: int) -> dict[str, int]:
    """MR per target: of its :data:`ROWS`, the one with the least estimated work for
    ``phases`` (the outputs each phase holds) and ``kc`` products per output and tap.

    The work of MR is the rows computed (``phases`` padded to whole blocks) times
    ``1 + 2/MR`` (the weights streamed once per block, the block's set-up); MR rows of inputs
    must also fit, with the weights streaming past, in a 48 KiB L1 cache (``MR * kc`` floats
    up to 8192, or MR = 8: with kc = 1024, MR = 12 measured 30 % slower than 8).  Never more
    than the largest phase."""
    longest = max(1, *phases)
    cap = max(8, 8192 // max(1, kc))
    rows = {}
    for name in [isa.name for isa in branches(nr)] + [PORTABLE]:
        fits = [m for m in ROWS[name] if m <= cap] or [min(ROWS[name])]
        best = min(fits, key=lambda m: sum(-(-n // m) * m for n in phases) * (1 + 2 / m))
        rows[name] = min(best, longest)
    return rows


CHANNEL_BLOCKS: dict[str, tuple[int, int, int]] = {"avx2": (384, 256, 12)}
"""Per target, ``(above, KC, GB)``: for more than ``above`` products per output and tap
(channels of a group), the layer loop runs ``KC`` of them at a time over ``GB`` register
blocks, so that those blocks share each chunk of weights while it is in the L2 cache.
Measured on a Zen 3 (512 KiB L2) with ``bench/fast_c_variants.py``: seed_k4 0.87 -> 0.94 of
the 1-thread OpenBLAS bound.  Not for AVX-512 (chunks measured no gain on the AVX-512
machine of an earlier session, 1 MiB L2), nor NEON and the portable C: unmeasured, and
``GB`` blocks of accumulators on the stack (9 KiB) would not suit a microcontroller's."""


def channel_blocks(kc: int) -> dict[str, tuple[int, int]]:
    """``(KC, GB)`` per target for ``kc`` products per output and tap
    (:data:`CHANNEL_BLOCKS`; ``(kc, 1)``, one pass over one block, elsewhere)."""
    out = {}
    for name in NAMES:
        above, chunk, group = CHANNEL_BLOCKS.get(name, (kc, kc, 1))
        out[name] = (chunk, group) if kc > above else (kc, 1)
    return out


def target_source(nr: int, defines: Mapping[str, Sequence[tuple[str, object]]]) -> str:
    """``#define`` lines per target, for the target the compiler builds for (the same tests
    as :func:`source`): ``defines`` maps every name of :data:`NAMES` to its ``(macro,
    value)`` pairs."""

    def lines(name: str) -> list[str]:
        return [f"#define {macro} {value}" for macro, value in defines[name]]

    out = []
    for k, isa in enumerate(branches(nr)):
        out += [f"#{'if' if k == 0 else 'elif'} {isa.condition}", *lines(isa.name)]
    if out:
        out += ["#else", *lines(PORTABLE), "#endif"]
    else:
        out = lines(PORTABLE)
    return "\n".join(out)


def _split(count: int, most: int) -> list[tuple[int, int]]:
    """``(start, size)`` of near-equal parts of ``range(count)``, none larger than ``most``."""
    parts = -(-count // most)
    bounds = [count * k // parts for k in range(parts + 1)]
    return [(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def tiles(isa: Isa, mr: int, nr: int) -> tuple[list[tuple[int, int]], int]:
    """Row tiles ``(start, rows)`` and vectors per column tile for ``isa``: the tile shape
    whose accumulators, weight vectors and one broadcast fit the registers, with the most
    multiply-adds per load."""
    vectors = nr // isa.lanes
    best: tuple[float, int, list[tuple[int, int]]] | None = None
    for cv in range(min(vectors, 4), 0, -1):
        if vectors % cv:
            continue
        rows = _split(mr, max(1, (isa.registers - 1 - cv) // cv))
        r = rows[0][1]
        score = r * cv / (r + cv)
        if best is None or score > best[0]:
            best = (score, cv, rows)
    assert best is not None
    return best[2], best[1]


def _vector_branch(isa: Isa, mr: int, nr: int) -> list[str]:
    rows, cv = tiles(isa, mr, nr)
    # A block of several column passes reads every other line of a weight row in each pass;
    # the weights' first reader (``stream``) then asks for the lines ahead itself
    prefetch = isa.prefetch if cv * isa.lanes < nr else None
    out: list[str] = [] if prefetch else ["(void)stream;"]
    for c0 in range(0, nr, cv * isa.lanes):
        for r0, rt in rows:
            accs = [[f"a{m}_{v}" for v in range(cv)] for m in range(rt)]
            out.append(
                f"{{   /* outputs {r0}..{r0 + rt - 1}, filters {c0}..{c0 + cv * isa.lanes - 1} */"
            )
            for m in range(rt):
                inits = ", ".join(
                    f"{accs[m][v]} = fresh ? {isa.zero} : "
                    + isa.load.format(p=f"acc + {(r0 + m) * nr + c0 + v * isa.lanes}")
                    for v in range(cv)
                )
                out.append(f"    {isa.vector} {inits};")
            out.append("    int t, k;")
            out.append("    for (t = 0; t < taps; ++t) {")
            out.append(f"    const float *const *xt = x + (ptrdiff_t)t * {mr}, *wt = w[t] + {c0};")
            out.append(f"    const float {', '.join(f'*x{m} = xt[{r0 + m}]' for m in range(rt))};")
            ws = ", ".join(
                f"w{v} = " + isa.load.format(p=f"wk + {v * isa.lanes}") for v in range(cv)
            )
            body = [
                f"        const float *wk = wt + (ptrdiff_t)k * {nr};",
                "        const ptrdiff_t kx = (ptrdiff_t)k * xs;",
                f"        const {isa.vector} {ws};",
            ]
            for m in range(rt):
                fmas = " ".join(
                    f"{accs[m][v]} = {isa.fma.format(a=accs[m][v], w=f'w{v}', b='b')};"
                    for v in range(cv)
                )
                b = isa.broadcast.format(x=f"x{m}[kx]")
                body.append(f"        {{ const {isa.vector} b = {b}; {fmas} }}")
            loop = ["    for (k = 0; k < kc; ++k) {", *body, "    }"]
            if prefetch and c0 == 0 and r0 == 0:  # the first pass asks for every line of a row
                ahead = [
                    prefetch.format(p=f"wk + {PREFETCH_ROWS * nr + d}") for d in range(0, nr, 16)
                ]
                out += [
                    "    if (stream) {",
                    "    for (k = 0; k < kc; ++k) {",
                    *body[:2],
                    f"        if (k + {PREFETCH_ROWS} < kc) {{ {'; '.join(ahead)}; }}",
                    *body[2:],
                    "    }",
                    "    } else {",
                    *loop,
                    "    }",
                ]
            else:
                out += loop
            out.append("    }")
            for m in range(rt):
                for v in range(cv):
                    p = f"acc + {(r0 + m) * nr + c0 + v * isa.lanes}"
                    out.append(f"    {isa.store.format(p=p, v=accs[m][v])};")
            out.append("}")
    return out


def _portable_branch(mr: int, nr: int) -> list[str]:
    """Plain C99, two spellings of the same sums for the compilers' vectorizers, per tile of at
    most 6 outputs x 16 filters.  GCC: the lane loop ``j`` is outermost and the tile's sums are
    scalars, so GCC vectorizes ``j`` (outer-loop vectorization) and keeps the sums in
    registers over the channel loop.  Clang: one scalar per (output, filter), which its SLP
    vectorizer packs into vectors."""
    cols = min(nr, 16)
    vw = min(cols, 8)
    h = cols // vw
    gcc: list[str] = []
    clang: list[str] = []
    taps = f"for (t = 0; t < taps; ++t) {{ const float *const *xt = x + (ptrdiff_t)t * {mr};"
    for c0 in range(0, nr, cols):
        for r0, rt in _split(mr, 6):
            sums = [f"s{m}_{v}" for m in range(rt) for v in range(h)]
            gcc += [
                f"for (j = 0; j < {vw}; ++j) {{",
                f"    float {', '.join(f'{s} = 0.0f' for s in sums)};",
                f"    {taps}",
                "    for (k = 0; k < kc; ++k) {",
                f"        const float *wk = w[t] + (ptrdiff_t)k * {nr} + {c0} + j;",
                "        const ptrdiff_t kx = (ptrdiff_t)k * xs;",
                *(f"        const float w{v} = wk[{v * vw}];" for v in range(h)),
            ]
            for m in range(rt):  # one broadcast at a time keeps the weights in registers
                fmas = " ".join(f"s{m}_{v} += b * w{v};" for v in range(h))
                gcc.append(f"        {{ const float b = xt[{r0 + m}][kx]; {fmas} }}")
            gcc.append("    } }")
            gcc += [
                f"    {{ float *a = acc + {(r0 + m) * nr + c0 + v * vw} + j; "
                f"*a = fresh ? s{m}_{v} : *a + s{m}_{v}; }}"
                for m in range(rt)
                for v in range(h)
            ]
            gcc.append("}")
            scalars = [f"t{m}_{n}" for m in range(rt) for n in range(cols)]
            clang += [
                "{",
                *(
                    f"    float {', '.join(f'{s} = 0.0f' for s in scalars[r : r + 8])};"
                    for r in range(0, len(scalars), 8)
                ),
                f"    {taps}",
                "    for (k = 0; k < kc; ++k) {",
                f"        const float *wk = w[t] + (ptrdiff_t)k * {nr} + {c0};",
                "        const ptrdiff_t kx = (ptrdiff_t)k * xs;",
            ]
            for m in range(rt):
                clang.append(f"        {{ const float b = xt[{r0 + m}][kx];")
                clang += [f"          t{m}_{n} += b * wk[{n}];" for n in range(cols)]
                clang.append("        }")
            clang.append("    } }")
            clang += [
                f"    {{ float *a = acc + {(r0 + m) * nr + c0 + n}; "
                f"*a = fresh ? t{m}_{n} : *a + t{m}_{n}; }}"
                for m in range(rt)
                for n in range(cols)
            ]
            clang.append("}")
    return [
        "(void)stream;",
        "#if defined(__clang__)",
        "int t, k;",
        *clang,
        "#else",
        "int j, t, k;",
        *gcc,
        "#endif",
    ]


def source(name: str, rows: int | Mapping[str, int], nr: int) -> str:
    """The C of ``static void NAME(int taps, int kc, const float *const *x, ptrdiff_t xs,
    const float *const *w, float *acc, int fresh, int stream)`` for blocks of ``rows`` x
    ``nr``: ``rows`` is MR, or MR per target (as :func:`block_rows` gives, with
    :func:`target_source` for the matching macro).  With ``fresh`` nonzero the sums start
    from zero instead of ``acc`` (so the layer loop zeroes nothing: vol3d_k3's AVX2 build
    spent 3 % of its time doing so, in ``rep stos``).  ``stream`` is nonzero for the call
    that reads its weights first, from memory: on AVX2, whose block is two column passes
    that each read every other line of a weight row, that call asks for both lines of the row
    :data:`PREFETCH_ROWS` ahead (measured on a Zen 4: seed_k3's AVX2 build 8.1 -> 6.5 ms with
    64-byte aligned weights); the other calls read the weights from L2, where the prefetches
    only cost (unet_k3 +10 %).
    File scope: the intrinsics' headers, then the function; needs ``<stddef.h>``."""
    targets = branches(nr)
    mrs = rows if isinstance(rows, Mapping) else {t: rows for t in NAMES}
    if nr < 1 or min(mrs[t] for t in [*(i.name for i in targets), PORTABLE]) < 1:
        raise ValueError(f"the register block needs rows >= 1 and nr >= 1, got {rows} x {nr}")
    lines = []
    for header in dict.fromkeys(isa.header for isa in targets):
        tests = [f"({isa.condition})" for isa in targets if isa.header == header]
        lines += [f"#if {' || '.join(tests)}", f"#include <{header}>", "#endif"]
    lines += [
        f"/* acc[m*{nr} + n] += sum over t < taps, k < kc of x[t*MR + m][k*xs] * w[t][k*{nr} + n]",
        f" * for m < MR, n < {nr} (MR per target): the register-blocked product, tiles per",
        " * target (see tconv.kernels.microkernel), starting from 0 instead of acc when fresh;",
        " * stream: this call reads the weights first (from memory), and on AVX2 asks for them",
        " * ahead. */",
        f"static void {name}(int taps, int kc, const float *const *x, ptrdiff_t xs, "
        "const float *const *w, float *acc, int fresh, int stream)",
        "{",
    ]
    body: list[str] = []
    for k, isa in enumerate(targets):
        body.append(f"#{'if' if k == 0 else 'elif'} {isa.condition}")
        body += _vector_branch(isa, mrs[isa.name], nr)
    if targets:
        body.append("#else")
    body += _portable_branch(mrs[PORTABLE], nr)
    if targets:
        body.append("#endif")
    lines += [line if line.startswith("#") else "    " + line for line in body]
    lines.append("}")
    return "\n".join(lines) + "\n"
