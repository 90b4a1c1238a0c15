"""`pytest --nbval` compares each notebook with the outputs committed from a real run, numbers to 4 decimals.

Training is bit-for-bit reproducible on CPU only for a given thread count and instruction set (with more
threads, or AVX-512 instead of AVX2 kernels, sums are taken in another order and the last bits differ, which
thousands of training steps can carry into the fourth decimal). So the kernels nbval starts run under the
conditions the committed outputs were made under: one thread, and the AVX2 code paths of ATen and MKL, which
every x86-64 CPU of the last decade has. These variables are read by the kernels nbval starts after this file
is loaded; they do not change the test process itself. To refresh the outputs, see the README (Notebooks).
"""
import os

REPRODUCIBLE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
os.environ.update(REPRODUCIBLE)

OUTPUT_TIMEOUT = 120  # seconds nbval waits for each of a cell's outputs after the cell has run (nbval's own: 5)


def pytest_collection_modifyitems(items):
    """A training cell streams many progress-bar messages; on a loaded machine the kernel can take more than
    nbval's fixed 5 seconds to flush them after the cell has finished, which failed a clean-clone CI run on
    notebook 02 with "Timeout of 5 seconds exceeded waiting for output". The cell's own time limit is unchanged."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT
