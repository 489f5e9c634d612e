"""What every exported C project shares (float layers, quantized layers, models): the test
harness's C helpers, the Makefile and the CMakeLists.txt."""

from __future__ import annotations


def harness_helpers(p: str, read: str | None = None) -> str:
    """The C helpers every test harness shares, prefixed ``p``: ``p_fail`` (print, return 1),
    ``p_read`` (a whole float32 file into a malloc'ed array and its count; ``read`` replaces it
    for other element types), ``p_now`` (monotonic seconds) and ``p_cmp`` (doubles, for qsort)."""
    return _FAIL.format(p=p) + (_READ.format(p=p) if read is None else read) + _NOW_CMP.format(p=p)


def harness_main(p: str, canary: bool = False) -> str:
    """A harness's ``main``: ``[--bench R] [--dir D]`` into ``p_check(dir, bench)`` (left out
    under ``-DTCONV_NO_MAIN``, for drivers that include several harnesses); with ``canary``
    also ``[--canary]``, which calls ``p_check_run(dir, bench, 1)`` instead."""
    if not canary:
        return _MAIN.format(p=p, decl="", flag="", usage="", call=f"{p}_check(dir, bench)")
    return _MAIN.format(
        p=p,
        decl=", canary = 0",
        flag='        else if (strcmp(argv[a], "--canary") == 0) canary = 1;\n',
        usage=" [--canary]",
        call=f"canary ? {p}_check_run(dir, bench, 1) : {p}_check(dir, bench)",
    )


_MAIN = """\
#ifndef TCONV_NO_MAIN
int main(int argc, char **argv)
{{
    const char *dir = ".";
    int bench = 0{decl}, a;
    for (a = 1; a < argc; ++a) {{
        if (strcmp(argv[a], "--bench") == 0 && a + 1 < argc) bench = atoi(argv[++a]);
        else if (strcmp(argv[a], "--dir") == 0 && a + 1 < argc) dir = argv[++a];
{flag}        else {{
            fprintf(stderr, "usage: %s [--bench R] [--dir D]{usage}\\n", argv[0]);
            return 2;
        }}
    }}
    return {call};
}}
#endif
"""

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


def makefile(
    p: str,
    *,
    fastest: str,
    libm: bool = True,
    canary: bool = False,
    note: str = "",
    clean: str = "",
) -> str:
    """The project's Makefile: ``make`` builds and runs ``test_p``; ``bench``, ``shared``
    (``libp.so``), ``clean``, and ``canary`` for a harness that has ``--canary``.  ``fastest``
    is the CFLAGS the comment suggests, ``libm`` links ``-lm``, ``clean`` adds files to remove."""
    libs = " $(LDLIBS)" if libm else ""
    canary_rule = f"canary: test_{p}\n\t./test_{p} --canary\n\n" if canary else ""
    return f"""\
# Builds and runs the test of {p}{note}: `make` (or `make CC=clang`).
# Fastest: make CFLAGS="{fastest}"
CFLAGS ?= -O3 -std=c99 -Wall -Wextra -Wpedantic
{"LDLIBS ?= -lm" + chr(10) if libm else ""}LIB_SRC = {p}.c {p}_weights.c

.PHONY: all test {"canary " if canary else ""}bench shared clean
all: test

test_{p}: test_{p}.c $(LIB_SRC) {p}.h
\t$(CC) $(CFLAGS) -o $@ test_{p}.c $(LIB_SRC){libs}

test: test_{p}
\t./test_{p}

{canary_rule}bench: test_{p}
\t./test_{p} --bench 20

shared: lib{p}.so
lib{p}.so: $(LIB_SRC) {p}.h
\t$(CC) $(CFLAGS) -fPIC -shared -o $@ $(LIB_SRC){libs}

clean:
\trm -f test_{p} lib{p}.so{" " + clean if clean else ""}
"""


def cmake_lists(p: str, *, libm_openmp: bool = True, canary: bool = False) -> str:
    """The project's CMakeLists.txt: library ``p``, ``test_p`` as a ctest test (and its
    ``--canary`` run); with ``libm_openmp``, libm and OpenMP linked where found."""
    links = f"""\
find_library(M_LIBRARY m)
if(M_LIBRARY)
  target_link_libraries({p} PUBLIC ${{M_LIBRARY}})
endif()
find_package(OpenMP)
if(OpenMP_C_FOUND)
  target_link_libraries({p} PUBLIC OpenMP::OpenMP_C)
endif()
"""
    dir_ = "${CMAKE_CURRENT_SOURCE_DIR}"
    canary_test = (
        f"add_test(NAME test_{p}_canary COMMAND test_{p} --canary --dir {dir_})\n" if canary else ""
    )
    return f"""\
cmake_minimum_required(VERSION 3.10)
project({p} C)
set(CMAKE_C_STANDARD 99)
set(CMAKE_C_STANDARD_REQUIRED ON)

add_library({p} {p}.c {p}_weights.c)
target_include_directories({p} PUBLIC {dir_})
{links if libm_openmp else ""}
add_executable(test_{p} test_{p}.c)
target_link_libraries(test_{p} {p})
enable_testing()
add_test(NAME test_{p} COMMAND test_{p} --dir {dir_})
{canary_test}"""
