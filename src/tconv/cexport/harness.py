"""C text that every generated test harness shares (float layers, quantized layers, models)."""

from __future__ import annotations


def harness_helpers(p: str, read: str | None = None) -> str:
    """The C helpers every test harness shares, prefixed ``p``: ``p_fail`` (print, return 1),
    ``p_read`` (a whole float32 file into a malloc'ed array and its count; ``read`` replaces it
    for other element types), ``p_now`` (monotonic seconds) and ``p_cmp`` (doubles, for qsort)."""
    return _FAIL.format(p=p) + (_READ.format(p=p) if read is None else read) + _NOW_CMP.format(p=p)


_FAIL = """\
static int {p}_fail(const char *what)
{{
    fprintf(stderr, "{p}: %s\\n", what);
    return 1;
}}

"""
_READ = """\
static float *{p}_read(const char *path, long *count)
{{
    FILE *fh = fopen(path, "rb");
    float *data;
    long bytes;
    if (fh == NULL) return NULL;
    if (fseek(fh, 0, SEEK_END) != 0 || (bytes = ftell(fh)) < 0 || bytes % 4 != 0) {{
        fclose(fh);
        return NULL;
    }}
    rewind(fh);
    data = (float *)malloc(bytes > 0 ? (size_t)bytes : 1);
    if (data != NULL && (long)fread(data, 1, (size_t)bytes, fh) != bytes) {{
        free(data);
        data = NULL;
    }}
    fclose(fh);
    *count = bytes / 4;
    return data;
}}

"""
_NOW_CMP = """\
static double {p}_now(void)
{{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}}

static int {p}_cmp(const void *a, const void *b)
{{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}}

"""
