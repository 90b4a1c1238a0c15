"""`pytest --nbval` compares each notebook with the outputs committed from a real run, numbers to 4 decimals.

Training is bit-for-bit reproducible on CPU only for a given thread count and code path: with more threads, or
other kernels, sums are taken in another order and the last bits differ, which thousands of training steps carry
into the fourth decimal. So the kernels nbval starts run under fixed conditions: one thread, ATen's AVX2 kernels
(which every x86-64 CPU of the last decade has), and MKL's COMPATIBLE branch. MKL honours its other branches
(AVX2, ...) on Intel CPUs only and silently takes its fastest one elsewhere: the outputs made on an Intel host
under MKL_CBWR=AVX2 differed in 7 cells on an AMD EPYC host, where AVX2, SSE2 and AUTO gave one result and
COMPATIBLE another. These variables are read by the kernels nbval starts after this file is loaded; they do not
change the test process itself. To refresh the outputs, see docs/notebooks.md.
"""
import os

REPRODUCIBLE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}
os.environ.update(REPRODUCIBLE)

OUTPUT_TIMEOUT = 120  # seconds nbval waits for each of a cell's outputs after the cell has run (nbval's own: 5)


def pytest_collection_modifyitems(items):
    """A longer wait for outputs: nbval waits a fixed 5 seconds for each of a cell's output messages after the
    cell has run, which a loaded machine can exceed; the cell's own time limit is unchanged."""
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = OUTPUT_TIMEOUT
