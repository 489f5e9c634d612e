"""The files every float C project shares: its folder (:func:`prepare_dir`) and, for
``weights="file"``, the binary weights file (:func:`write_weights_file`) and its checking C
loader (:func:`loader_source`)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

WEIGHTS_MAGIC = b"TCONVW1\0"


def prepare_dir(out_dir: str | Path, force: bool) -> Path:
    """Create ``out_dir`` or check it is an empty, writable folder (any folder with ``force``)."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir={str(path)!r} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise ValueError(
            f"out_dir={str(path)!r} is not empty; refusing to overwrite (use force=True, or "
            "--force on the command line)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".tconv-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"out_dir={str(path)!r} is not writable: {err.strerror}") from err
    return path


def write_weights_file(path: Path, blob: np.ndarray) -> None:
    """The binary weights file: magic, uint32 count, then float32 values, little-endian."""
    with open(path, "wb") as fh:
        fh.write(WEIGHTS_MAGIC + struct.pack("<I", blob.size))
        fh.write(blob.astype("<f4").tobytes())


def loader_source(p: str) -> str:
    """``NAME_weights.c`` of ``weights="file"``: ``p_load_weights``, which reads and checks
    the file of :func:`write_weights_file` into the caller's ``p_WEIGHT_COUNT`` floats, and
    ``p_strerror``, which explains its error codes (``p_ERR_*`` of the header)."""
    u = p.upper()
    return f"""\
/* Loads the weights of {p} from the binary file written by tconv:
 * 8 bytes "TCONVW1\\0", uint32 count (little-endian), then count float32 (little-endian). */
#include <stdio.h>
#include <string.h>
#include "{p}.h"

static unsigned long {p}_u32le(const unsigned char *b)
{{
    return (unsigned long)b[0] | (unsigned long)b[1] << 8 | (unsigned long)b[2] << 16
        | (unsigned long)b[3] << 24;
}}

int {p}_load_weights(const char *path, float *weights)
{{
    unsigned char head[12], word[4];
    long i;
    FILE *fh;
    if (path == NULL || weights == NULL) return {u}_ERR_NULL;
    fh = fopen(path, "rb");
    if (fh == NULL) return {u}_ERR_OPEN;
    if (fread(head, 1, sizeof head, fh) != sizeof head) {{
        fclose(fh);
        return {u}_ERR_FORMAT;
    }}
    if (memcmp(head, "TCONVW1", 8) != 0) {{
        fclose(fh);
        return {u}_ERR_FORMAT;
    }}
    if ({p}_u32le(head + 8) != (unsigned long){u}_WEIGHT_COUNT) {{
        fclose(fh);
        return {u}_ERR_SIZE;
    }}
    for (i = 0; i < {u}_WEIGHT_COUNT; ++i) {{
        unsigned long bits;
        float value;
        if (fread(word, 1, 4, fh) != 4) {{
            fclose(fh);
            return {u}_ERR_READ;
        }}
        bits = {p}_u32le(word);
        {{
            /* the float with these IEEE-754 bits, whatever the host's byte order */
            const unsigned int u32 = (unsigned int)bits;
            memcpy(&value, &u32, sizeof value);
        }}
        weights[i] = value;
    }}
    if (fgetc(fh) != EOF) {{
        fclose(fh);
        return {u}_ERR_SIZE;
    }}
    fclose(fh);
    return 0;
}}

const char *{p}_strerror(int code)
{{
    switch (code) {{
    case 0: return "ok";
    case {u}_ERR_BATCH: return "batch must be >= 0";
    case {u}_ERR_NULL: return "a pointer argument is NULL";
    case {u}_ERR_OPEN: return "cannot open the weights file";
    case {u}_ERR_READ: return "the weights file is shorter than its header says";
    case {u}_ERR_FORMAT: return "not a tconv weights file (bad magic)";
    case {u}_ERR_SIZE: return "the weights file holds a different number of weights than "
                              "{p} needs ({u}_WEIGHT_COUNT)";
    default: return "unknown error";
    }}
}}
"""
