"""Run the tconv benchmark from a checkout: ``python bench/run.py [tconv bench options]``.

The same code as ``tconv bench`` (:mod:`tconv.benchmark`).  Run it with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` so that OpenBLAS picks its own kernel.
"""

import sys

from tconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
