# tconv — the two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSDEPS := $(VENV)/.sysdeps

.PHONY: demo test lint setup clean bench

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The CPU build of torch lies on this machine's disk; plain `torch` would pull a CUDA build.
$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# System tools the tests drive: clang with its OpenMP runtime (exported C must build with it),
# valgrind, Debian's headless Chromium for the browser test of the HTML page, and the cross
# compilers of the portability tests (aarch64 run under qemu-user; arm-none-eabi with newlib for
# Cortex-M).  Installed once, as root, with apt.
CLANG_OMP := printf '\#include <omp.h>\nint main(void){return omp_get_max_threads()<1;}\n' | clang -fopenmp -x c - -o /dev/null
$(SYSDEPS): $(VENV)/bin/python
	@if command -v valgrind >/dev/null && command -v chromium >/dev/null && $(CLANG_OMP) 2>/dev/null \
	  && command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null \
	  && command -v arm-none-eabi-gcc >/dev/null && [ -d /usr/lib/arm-none-eabi/newlib ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libomp-dev valgrind chromium \
	  gcc-aarch64-linux-gnu qemu-user gcc-arm-none-eabi libnewlib-arm-none-eabi >/dev/null; \
	else echo "make: need clang with libomp, valgrind, chromium, gcc-aarch64-linux-gnu, qemu-user, gcc-arm-none-eabi and libnewlib-arm-none-eabi (run as root or install them)" >&2; exit 1; fi
	touch $(SYSDEPS)

demo: $(STAMP)
	$(VENV)/bin/tconv demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src

test: $(STAMP) $(SYSDEPS) lint
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VENV)/bin/tconv bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VENV)/bin/tconv bench --model dcgan
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(VENV)/bin/tconv bench --model unet

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
