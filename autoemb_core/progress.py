"""Progress a user can see wherever a run happens, headless papermill included.

tqdm's bar is a widget in a Jupyter kernel: JupyterLab draws it, but a headless run (papermill, nbconvert)
never shows it, and ``papermill --log-output`` prints only the widget's name. So inside a kernel a
:class:`Bar` also writes a plain line to stderr when it starts, at most every ``log_every`` seconds and when it
ends, with the rate and the time left; ``--log-output`` prints each one as it comes. Outside a kernel (the
command line) tqdm's own text bar already says all of it.

A widget costs the kernel messages: about 11 to draw it and 2 per refresh. A client that reads them only after
the cell (nbval does) loses what ZMQ's queues cannot hold, the cell's closing "idle" included, and then waits in
vain: notebook 02's sweep of 60 runs, one widget each refreshed every second, sent about 5,000 and failed a CI
run that way. So in a kernel a bar opened while another is open (a run inside a sweep) draws no widget of its own,
only its lines, and a widget refreshes at most once per 1% of its total.
"""
from __future__ import annotations

import sys
import time
from datetime import timedelta

from tqdm import tqdm as text_bar
from tqdm.auto import tqdm

LOG_EVERY = 60.0  # seconds between a kernel's progress lines


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), where tqdm.auto draws a widget."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class Bar:
    """tqdm's ``update``/``set_postfix``/``write``/``close``, plus the kernel's progress lines (``log``: None = in
    a kernel only). ``widget=False``: tqdm's text bar even in a kernel."""

    opened: list[Bar] = []  # the bars not yet closed, outermost first (tqdm keeps such a set as well)

    def __init__(self, total: int, desc: str, unit: str = "it", disable: bool = False, initial: int = 0,
                 log: bool | None = None, log_every: float = LOG_EVERY, file=None, widget: bool = True):
        kernel = in_kernel()
        nested = kernel and any(not b.disable for b in Bar.opened)
        self.bar = (tqdm if widget else text_bar)(total=total, desc=desc, unit=unit, disable=disable or nested,
                                                  initial=initial, mininterval=1.0, file=file,
                                                  **({"miniters": max(1, total // 100)} if kernel else {}))
        self.disable = disable
        self.log = not disable and (kernel if log is None else log)
        self.total, self.desc, self.unit, self.log_every = total, desc, unit, log_every
        self.done = self.initial = initial
        self.file, self.postfix = file, ""
        self.began = self.logged = time.perf_counter()
        if self.log:
            self._line("started" + (f" at {initial:,}/{total:,} {unit}" if initial else f", {total:,} {unit}"))
        Bar.opened.append(self)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.done += n
        if self.log and time.perf_counter() - self.logged >= self.log_every:
            self._line(self.status())

    def set_postfix(self, refresh: bool = False, **values) -> None:
        """Shown at the next refresh (``refresh``: now)."""
        self.bar.set_postfix(refresh=refresh, **values)
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def status(self) -> str:
        """``12,000/30,000 int (40%), 1,234 int/s, 0:00:10 so far, ETA 0:00:15``, and the postfix."""
        elapsed = time.perf_counter() - self.began
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        left = _duration((self.total - self.done) / rate) if rate > 0 else "unknown"
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (f"{self.done:,}/{self.total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s, {_duration(elapsed)} "
                f"so far, ETA {left}" + (f"; {self.postfix}" if self.postfix else ""))

    def write(self, line: str) -> None:
        """A line above the bar (tqdm's ``write``), where the bar writes."""
        self.bar.write(line, file=self.file or sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self in Bar.opened:
            Bar.opened.remove(self)
        if self.log:
            elapsed = time.perf_counter() - self.began
            self._line(f"done, {self.done - self.initial:,} {self.unit} in {_duration(elapsed)}"
                       + (f"; {self.postfix}" if self.postfix else ""))
            self.log = False

    def _line(self, text: str) -> None:
        print(f"[autoemb] {self.desc}: {text}", file=self.file or sys.stderr, flush=True)
        self.logged = time.perf_counter()
