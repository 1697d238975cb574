"""Our Prometheus text (trio_ws_demo.exposition) read back by prometheus_client.

The server writes ``/metrics`` itself; prometheus_client, a test dependency
only, is the independent reader: its parser must see exactly the families,
samples, labels and values we meant, and its own float spelling must be ours.
No sockets: plain data in, text out.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from trio_ws_demo.exposition import Exposition, go_float
from trio_ws_demo.histogram import Histogram


@pytest.mark.parametrize(
    "value",
    [0.0, 1.0, 3, 0.1, 1e-7, 123456.0, 1234567.0, 1e9, 1 << 40, 2.5e20, 1e300, -1e9,
     math.inf, -math.inf, math.nan],
)  # fmt: skip
def test_floats_are_spelled_as_prometheus_client_spells_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


def test_every_kind_of_family_reads_back() -> None:
    histogram = Histogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        histogram.observe(seconds)
    out = Exposition()
    out.gauge("g", "A gauge,\nwith a \\ in its help.", 3)
    out.counter("c", "A counter.", 1 << 40)
    out.counter_by("by", "By reason.", "reason", [('he said "no"\\\n', 2), ("plain", 1)])
    out.counter_by("none_yet", "No samples.", "status", [])
    out.info("master", "Where.", {"address": "10.0.0.1:6379"})
    out.histogram("h_seconds", "Seconds.", histogram.snapshot())
    families = {f.name: f for f in text_string_to_metric_families(out.text().decode())}

    assert families["g"].type == "gauge"
    assert families["g"].documentation == "A gauge,\nwith a \\ in its help."
    assert [(s.name, s.value) for s in families["g"].samples] == [("g", 3.0)]
    assert families["c"].type == "counter"
    assert [(s.name, s.value) for s in families["c"].samples] == [("c_total", 2.0**40)]
    assert [(s.labels, s.value) for s in families["by"].samples] == [
        ({"reason": 'he said "no"\\\n'}, 2.0),
        ({"reason": "plain"}, 1.0),
    ]
    assert families["none_yet"].type == "counter" and families["none_yet"].samples == []
    assert families["master_info"].type == "gauge"
    assert [(s.labels, s.value) for s in families["master_info"].samples] == [
        ({"address": "10.0.0.1:6379"}, 1.0)
    ]
    h = families["h_seconds"]
    assert h.type == "histogram"
    assert [(s.name, s.labels, s.value) for s in h.samples] == [
        ("h_seconds_bucket", {"le": "0.001"}, 2.0),
        ("h_seconds_bucket", {"le": "0.01"}, 3.0),
        ("h_seconds_bucket", {"le": "+Inf"}, 4.0),
        ("h_seconds_count", {}, 4.0),
        ("h_seconds_sum", {}, 2.0065),
    ]
