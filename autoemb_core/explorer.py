"""The controller-weights explorer (notebook 03): widgets that redraw the selection weights against
popularity, for users or items, a method, a popularity range and a point in the stream.

The logic is plain: :meth:`WeightsExplorer.update` reads the widgets into :attr:`~WeightsExplorer.state`,
selects the records with :func:`autoemb_core.experiments.select_weights` (every popularity into
:attr:`~WeightsExplorer.context`, the chosen range into :attr:`~WeightsExplorer.selection`), and (with
``draw=True``) redraws :func:`autoemb_core.plots.weights_against_popularity` into an ``Output`` widget, as SVG
with its text kept as text, so that a browser test can read the title it drew. Tests set ``widget.value`` and
check ``state`` and ``selection``; ``tests/browser`` drives the same widgets in Chromium.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import SVG, clear_output, display

from . import plots
from .experiments import mean_weights, select_weights
from .interactions import DataError
from .methods import LEARNED, display as method_name

SELECTING = sorted(LEARNED, key=lambda m: m != "autoemb")  # methods whose weights learn; AutoEmb first


def popularity_stops(records: pd.DataFrame) -> list[int]:
    """Slider stops for popularity: 0, 1, 2, 4, 8, ... and the largest recorded popularity."""
    top = int(records["popularity"].max()) if len(records) else 0
    stops = [0] + [2 ** k for k in range(63) if 2 ** k < top]
    return stops + [top] if top > 0 else stops


class WeightsExplorer:
    """Widgets over :func:`autoemb_core.experiments.weight_records`' frame.

    ``window``: how many interactions before the chosen point count (default: a tenth of the stream), so a
    point shows the weights the ids received in the stretch of stream just before it."""

    def __init__(self, records: pd.DataFrame, window: int | None = None, draw: bool = True):
        methods = [m for m in SELECTING if m in set(records["method"])]
        if not methods:
            raise DataError("no selection weights to explore", hint="run at least one of autoemb, sam, darts")
        self.records, self.draw = records, draw
        seen = sorted(int(s) for s in records["seen"].unique())
        self.window = window or max(1, int(np.ceil(seen[-1] / 10)))
        stops = popularity_stops(records)
        label = {"style": {"description_width": "90px"}}  # one label column, close to its control
        wide = widgets.Layout(width="720px")
        self.controls = {
            "method": widgets.Dropdown(options=[(method_name(m), m) for m in methods], value=methods[0],
                                       description="method", **label),
            "side": widgets.ToggleButtons(options=[("users", "user"), ("items", "item")], value="user"),
            "popularity": widgets.SelectionRangeSlider(options=[(f"{s:,}", s) for s in stops],
                                                       index=(0, len(stops) - 1), description="popularity",
                                                       continuous_update=False, layout=wide, **label),
            "seen": widgets.SelectionSlider(options=[(f"{s:,}", s) for s in seen], value=seen[-1],
                                            description="stream at", continuous_update=False, layout=wide, **label),
        }
        for name, control in self.controls.items():
            control.add_class(f"autoemb-{name}")  # for the browser test's selectors
        self.output = widgets.Output()
        self.state: dict = {}
        self.context = self.selection = pd.DataFrame()
        self.summary = pd.DataFrame()
        for control in self.controls.values():
            control.observe(self.update, names="value")
        # a ToggleButtons' own description sits above its buttons: a label of the descriptions' width instead
        ids = widgets.Label("ids", layout=widgets.Layout(width="90px", display="flex", justify_content="flex-end",
                                                         padding="0 8px 0 0"))
        self.widget = widgets.VBox([self.controls["method"], widgets.HBox([ids, self.controls["side"]]),
                                    self.controls["popularity"], self.controls["seen"], self.output])
        self.widget.add_class("autoemb-explorer")
        self.update()

    def update(self, *_) -> None:
        """Read the widgets, select the weights, and redraw."""
        lo, hi = self.controls["popularity"].value
        self.state = {"method": self.controls["method"].value, "side": self.controls["side"].value,
                      "popularity": (int(lo), int(hi)), "seen": int(self.controls["seen"].value),
                      "window": self.window}
        s = self.state
        self.context = select_weights(self.records, s["method"], s["side"], seen=s["seen"], window=s["window"])
        self.selection = select_weights(self.context, popularity=s["popularity"])
        self.summary = mean_weights(self.selection.assign(all="all"), by=["all"]) if len(self.selection) else pd.DataFrame()
        if self.draw:
            with self.output:
                clear_output(wait=True)
                fig = plots.weights_against_popularity(self.context, s["popularity"], self.title())
                display(SVG(plots.svg_with_text(fig)))
                plt.close(fig)

    def title(self) -> str:
        s = self.state
        start = max(0, s["seen"] - s["window"])
        ids = self.selection["id"].nunique() if len(self.selection) else 0
        return (f"{method_name(s['method'])}, {s['side']}s with popularity {s['popularity'][0]:,}-{s['popularity'][1]:,}, "
                f"stream {start:,}-{s['seen']:,}: {ids:,} ids")

    def _ipython_display_(self):
        display(self.widget)
