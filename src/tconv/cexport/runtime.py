"""The runtime C library: ``tconv.h`` / ``tconv.c``, one implementation for every layer.

The parameters are the canonical geometry (:mod:`tconv.geometry`) in a struct; weights come in
the Keras layout ``(*kernel_size, out_channels, in_channels / groups)``.
"""

from __future__ import annotations

from pathlib import Path

from ..kernels import cactivations
from .files import prepare_dir

_HEADER = """\
/* tconv runtime: transposed convolution for any geometry (C99, no allocation, no globals).
 *
 * Per spatial axis a the definition is (canonical geometry, see tconv.geometry):
 *     full[i*stride + j*dilation] += x[i] * w[j],   y[o] = full[o + crop_start]
 * (zero where o + crop_start is outside full; a negative crop adds zero rows), so
 *     out = (size - 1)*stride + dilation*(kernel - 1) + 1 - crop_start - crop_end.
 * Channels: out_channels filters in `groups` groups; filter f reads the input channels of group
 * f / (out_channels / groups).  Then bias and the activation.
 *
 * Keras Conv*DTranspose: kernel as in layer.get_weights()[0], (*kernel_size, filters, in).
 * PyTorch ConvTranspose*d weight (in, out/groups, *kernel_size) -> Keras layout: view it as
 * (groups, in/groups, out/groups, *k), move the axes to (*k, groups, out/groups, in/groups) and
 * reshape to (*k, out, in/groups)  (in NumPy: tconv.layer.TORCH.to_canonical(w, groups)).
 * PyTorch's padding p and output_padding op give crop_start = p, crop_end = p - op.
 */
#ifndef TCONV_H
#define TCONV_H

#define TCONV_MAX_RANK 3

/* data_format */
#define TCONV_CHANNELS_LAST 0  /* (N, *spatial, C) */
#define TCONV_CHANNELS_FIRST 1 /* (N, C, *spatial) */

/* activation (Keras names and formulas) */
@ACTIVATIONS@

/* error codes (negative) */
#define TCONV_OK 0
#define TCONV_ERR_NULL (-1)       /* a NULL pointer (bias may be NULL) */
#define TCONV_ERR_RANK (-2)       /* rank must be 1, 2 or 3 */
#define TCONV_ERR_SIZE (-3)       /* size must be >= 1 */
#define TCONV_ERR_KERNEL (-4)     /* kernel must be >= 1 */
#define TCONV_ERR_STRIDE (-5)     /* stride must be >= 1 */
#define TCONV_ERR_DILATION (-6)   /* dilation must be >= 1 */
#define TCONV_ERR_CHANNELS (-7)   /* channels must be >= 1 */
#define TCONV_ERR_GROUPS (-8)     /* groups must be >= 1 and divide both channel counts */
#define TCONV_ERR_OUTPUT (-9)     /* the crops leave an empty or negative output */
#define TCONV_ERR_FORMAT (-10)    /* data_format must be TCONV_CHANNELS_LAST or _FIRST */
#define TCONV_ERR_ACTIVATION (-11)/* unknown activation */
#define TCONV_ERR_BATCH (-12)     /* batch must be >= 0 */

typedef struct {
    int rank;                       /* spatial axes: 1, 2 or 3 */
    int size[TCONV_MAX_RANK];       /* input length per axis */
    int kernel[TCONV_MAX_RANK];
    int stride[TCONV_MAX_RANK];
    int dilation[TCONV_MAX_RANK];
    int crop_start[TCONV_MAX_RANK]; /* may be negative: zero rows added */
    int crop_end[TCONV_MAX_RANK];
    int in_channels, out_channels, groups;
    int data_format;                /* TCONV_CHANNELS_LAST or TCONV_CHANNELS_FIRST */
    int activation;                 /* TCONV_ACT_* */
} tconv_params;

#ifdef __cplusplus
extern "C" {
#endif

/* TCONV_OK or the first error in p. */
int tconv_check(const tconv_params *p);
/* Output length of axis a (>= 1), or an error code. */
int tconv_output_size(const tconv_params *p, int axis);
/* Floats per batch item of the input / output (0 if p is invalid). */
long tconv_input_count(const tconv_params *p);
long tconv_output_count(const tconv_params *p);
/* y = act(conv_transpose(x, kernel) + bias) for `batch` items.  kernel: Keras layout
 * (*kernel, out_channels, in_channels / groups); bias: out_channels floats or NULL.
 * input/output: batch * tconv_input_count / tconv_output_count floats in data_format.
 * Returns TCONV_OK or an error code; nothing is written on error. */
int tconv_forward(const tconv_params *p, const float *kernel, const float *bias,
                  const float *input, float *output, int batch);
/* A sentence for an error code. */
const char *tconv_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
"""

_SOURCE = """\
/* tconv runtime: see tconv.h.  Written by tconv (`tconv export-c --runtime DIR`). */
#include <math.h>
#include <stddef.h>
#include "tconv.h"

@ACTCODE@
static int tconv_out_len(const tconv_params *p, int a)
{
    return (p->size[a] - 1) * p->stride[a] + p->dilation[a] * (p->kernel[a] - 1) + 1
        - p->crop_start[a] - p->crop_end[a];
}

int tconv_check(const tconv_params *p)
{
    int a;
    if (p == NULL) return TCONV_ERR_NULL;
    if (p->rank < 1 || p->rank > TCONV_MAX_RANK) return TCONV_ERR_RANK;
    for (a = 0; a < p->rank; ++a) {
        if (p->size[a] < 1) return TCONV_ERR_SIZE;
        if (p->kernel[a] < 1) return TCONV_ERR_KERNEL;
        if (p->stride[a] < 1) return TCONV_ERR_STRIDE;
        if (p->dilation[a] < 1) return TCONV_ERR_DILATION;
        if (tconv_out_len(p, a) < 1) return TCONV_ERR_OUTPUT;
    }
    if (p->in_channels < 1 || p->out_channels < 1) return TCONV_ERR_CHANNELS;
    if (p->groups < 1 || p->in_channels % p->groups != 0 || p->out_channels % p->groups != 0)
        return TCONV_ERR_GROUPS;
    if (p->data_format != TCONV_CHANNELS_LAST && p->data_format != TCONV_CHANNELS_FIRST)
        return TCONV_ERR_FORMAT;
    if (p->activation < 0 || p->activation >= TCONV_ACT_COUNT) return TCONV_ERR_ACTIVATION;
    return TCONV_OK;
}

int tconv_output_size(const tconv_params *p, int axis)
{
    const int rc = tconv_check(p);
    if (rc != TCONV_OK) return rc;
    if (axis < 0 || axis >= p->rank) return TCONV_ERR_RANK;
    return tconv_out_len(p, axis);
}

static long tconv_count(const tconv_params *p, int output)
{
    long n;
    int a;
    if (tconv_check(p) != TCONV_OK) return 0;
    n = output ? p->out_channels : p->in_channels;
    for (a = 0; a < p->rank; ++a) n *= output ? tconv_out_len(p, a) : p->size[a];
    return n;
}

long tconv_input_count(const tconv_params *p) { return tconv_count(p, 0); }
long tconv_output_count(const tconv_params *p) { return tconv_count(p, 1); }

int tconv_forward(const tconv_params *p, const float *kernel, const float *bias,
                  const float *input, float *output, int batch)
{
    /* Axes padded to 3 in front (size 1, kernel 1, stride 1). */
    int in[3], k[3], s[3], d[3], c0[3], out[3], a, n, o0, o1, o2, f;
    ptrdiff_t xs[3], ys[3], xc, yc, xitem, yitem;
    int cin_g, cout_g, rc = tconv_check(p);
    if (rc != TCONV_OK) return rc;
    if (kernel == NULL || input == NULL || output == NULL) return TCONV_ERR_NULL;
    if (batch < 0) return TCONV_ERR_BATCH;
    for (a = 0; a < 3; ++a) {
        const int b = a - (3 - p->rank);
        in[a] = b < 0 ? 1 : p->size[b];
        k[a] = b < 0 ? 1 : p->kernel[b];
        s[a] = b < 0 ? 1 : p->stride[b];
        d[a] = b < 0 ? 1 : p->dilation[b];
        c0[a] = b < 0 ? 0 : p->crop_start[b];
        out[a] = b < 0 ? 1 : tconv_out_len(p, b);
    }
    cin_g = p->in_channels / p->groups;
    cout_g = p->out_channels / p->groups;
    /* element strides of the spatial axes and the channel axis, per layout */
    if (p->data_format == TCONV_CHANNELS_LAST) {
        xc = 1;
        yc = 1;
        xs[2] = p->in_channels;
        ys[2] = p->out_channels;
    } else {
        xc = (ptrdiff_t)in[0] * in[1] * in[2];
        yc = (ptrdiff_t)out[0] * out[1] * out[2];
        xs[2] = 1;
        ys[2] = 1;
    }
    xs[1] = xs[2] * in[2];
    xs[0] = xs[1] * in[1];
    ys[1] = ys[2] * out[2];
    ys[0] = ys[1] * out[1];
    xitem = (ptrdiff_t)in[0] * in[1] * in[2] * p->in_channels;
    yitem = (ptrdiff_t)out[0] * out[1] * out[2] * p->out_channels;
    for (n = 0; n < batch; ++n)
    for (o0 = 0; o0 < out[0]; ++o0)
    for (o1 = 0; o1 < out[1]; ++o1)
    for (o2 = 0; o2 < out[2]; ++o2)
    for (f = 0; f < p->out_channels; ++f) {
        /* y[n, o, f] = act(bias[f] + sum over taps (i, j) with i*s + j*d == o + crop_start
         *                                 of sum over c in group(f) of x[n, i, c] * w[j, f, c]) */
        const int g = f / cout_g;
        const float *xg = input + n * xitem + (ptrdiff_t)g * cin_g * xc;
        float acc = 0.0f, v;
        int j0, j1, j2, c;
        for (j0 = 0; j0 < k[0]; ++j0) {
            const int q0 = o0 + c0[0] - j0 * d[0];
            if (q0 < 0 || q0 % s[0] != 0 || q0 / s[0] >= in[0]) continue;
            for (j1 = 0; j1 < k[1]; ++j1) {
                const int q1 = o1 + c0[1] - j1 * d[1];
                if (q1 < 0 || q1 % s[1] != 0 || q1 / s[1] >= in[1]) continue;
                for (j2 = 0; j2 < k[2]; ++j2) {
                    const int q2 = o2 + c0[2] - j2 * d[2];
                    const float *xi, *wj;
                    if (q2 < 0 || q2 % s[2] != 0 || q2 / s[2] >= in[2]) continue;
                    xi = xg + q0 / s[0] * xs[0] + q1 / s[1] * xs[1] + q2 / s[2] * xs[2];
                    wj = kernel + ((((ptrdiff_t)j0 * k[1] + j1) * k[2] + j2) * p->out_channels + f)
                        * cin_g;
                    for (c = 0; c < cin_g; ++c) acc += xi[c * xc] * wj[c];
                }
            }
        }
        v = bias != NULL ? acc + bias[f] : acc;
        output[n * yitem + o0 * ys[0] + o1 * ys[1] + o2 * ys[2] + f * yc] =
            tconv_act(p->activation, v);
    }
    if (p->activation == TCONV_ACT_SOFTMAX || p->activation == TCONV_ACT_LOG_SOFTMAX) {
        /* over the last axis of the layout, as Keras does */
        const int last = p->data_format == TCONV_CHANNELS_LAST ? p->out_channels : out[2];
        const ptrdiff_t rows = (ptrdiff_t)batch * yitem / last;
        if (p->activation == TCONV_ACT_SOFTMAX) tconv_softmax_rows(output, rows, last);
        else tconv_log_softmax_rows(output, rows, last);
    }
    return TCONV_OK;
}

const char *tconv_strerror(int code)
{
    switch (code) {
    case TCONV_OK: return "ok";
    case TCONV_ERR_NULL: return "a pointer argument is NULL (only bias may be NULL)";
    case TCONV_ERR_RANK: return "rank must be 1, 2 or 3";
    case TCONV_ERR_SIZE: return "every input length must be >= 1";
    case TCONV_ERR_KERNEL: return "every kernel size must be >= 1";
    case TCONV_ERR_STRIDE: return "every stride must be >= 1";
    case TCONV_ERR_DILATION: return "every dilation must be >= 1";
    case TCONV_ERR_CHANNELS: return "in_channels and out_channels must be >= 1";
    case TCONV_ERR_GROUPS: return "groups must be >= 1 and divide in_channels and out_channels";
    case TCONV_ERR_OUTPUT:
        return "the crops leave no output: (size-1)*stride + dilation*(kernel-1) + 1 "
               "- crop_start - crop_end must be >= 1";
    case TCONV_ERR_FORMAT: return "data_format must be TCONV_CHANNELS_LAST or TCONV_CHANNELS_FIRST";
    case TCONV_ERR_ACTIVATION: return "unknown activation";
    case TCONV_ERR_BATCH: return "batch must be >= 0";
    default: return "unknown error";
    }
}
"""


def activation_ids() -> dict[str, int]:
    """Activation name -> the ``TCONV_ACT_*`` value of the runtime library."""
    _, names = cactivations.runtime_definitions("tconv")
    return {name: i for i, name in enumerate(names)}


def runtime_sources() -> dict[str, str]:
    """``tconv.h`` and ``tconv.c``: file name -> text."""
    code, names = cactivations.runtime_definitions("tconv")
    defines = [f"#define TCONV_ACT_{name.upper()} {i}" for i, name in enumerate(names)]
    defines.append(f"#define TCONV_ACT_COUNT {len(names)}")
    return {
        "tconv.h": _HEADER.replace("@ACTIVATIONS@", "\n".join(defines)),
        "tconv.c": _SOURCE.replace("@ACTCODE@", code),
    }


def write_runtime(out_dir: str | Path, *, force: bool = False) -> list[Path]:
    """Write ``tconv.h`` and ``tconv.c`` into ``out_dir`` (new or empty, or any with ``force``).

    Returns the paths written.
    """
    out = prepare_dir(out_dir, force)
    written = []
    for name, text in runtime_sources().items():
        (out / name).write_text(text)
        written.append(out / name)
    return written
