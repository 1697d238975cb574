"""The Prometheus text format (version 0.0.4), written by hand.

``/metrics`` is a few dozen counters, gauges and three histograms, read from
the server's statistics at scrape time. ``prometheus-client`` would write the
same text, but importing it costs every server process about 3 MiB of
resident memory (it brings ``http.server``, ``email``, ``urllib.request`` and
``wsgiref`` along) for a job this small. So this module writes the format
itself, line for line as ``prometheus_client.generate_latest`` does (the
tests read our output with that library's parser, an independent check):

- each family is ``# HELP name doc`` and ``# TYPE name type``, then its samples;
- a counter's name ends in ``_total``; an info family is a gauge named
  ``*_info`` whose one sample is 1 with the info as labels;
- a histogram is its cumulative ``_bucket{le="..."}`` samples, ``+Inf`` last,
  then ``_count`` and ``_sum``;
- values are Go's float spelling (``1.0``, ``1e+09``, ``+Inf``), label values
  escape ``\\``, ``"`` and newlines, HELP text ``\\`` and newlines.

Plain data in, text out: no registry, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .histogram import HistogramSnapshot

__all__ = ["CONTENT_TYPE", "Exposition", "go_float"]

#: The ``Content-Type`` of this text, as Prometheus asks for it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def go_float(value: float) -> str:
    """*value* as Prometheus clients write it: Python's ``repr`` (``1.0``,
    ``1e-07``), except an exponent from 1e6 up where ``repr`` waits for 1e16
    (Go's spelling, and prometheus_client's: ``1e+09``), and
    ``+Inf``/``-Inf``/``NaN``."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # 1234567.0 is 1.234567e+06
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")


class Exposition:
    """One scrape's text, family by family, in the order they are added."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: list[str] = []

    def gauge(self, name: str, doc: str, value: float) -> None:
        self._family(name, doc, "gauge")
        self._sample(name, (), value)

    def counter(self, name: str, doc: str, value: float) -> None:
        """A counter; *name* without its ``_total``."""
        total = f"{name}_total"
        self._family(total, doc, "counter")
        self._sample(total, (), value)

    def counter_by(
        self, name: str, doc: str, label: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        """A counter with one sample per value of *label*, from ``(value of the
        label, count)`` pairs; with none it is only its HELP and TYPE lines."""
        total = f"{name}_total"
        self._family(total, doc, "counter")
        for value_of_label, count in samples:
            self._sample(total, ((label, value_of_label),), count)

    def info(self, name: str, doc: str, labels: dict[str, str]) -> None:
        """An info family: the gauge ``<name>_info`` with value 1."""
        self._family(f"{name}_info", doc, "gauge")
        self._sample(f"{name}_info", tuple(sorted(labels.items())), 1.0)

    def histogram(self, name: str, doc: str, snapshot: HistogramSnapshot) -> None:
        self._family(name, doc, "histogram")
        bucket = f"{name}_bucket"
        for bound, count in snapshot.buckets:
            self._sample(bucket, (("le", repr(float(bound))),), count)
        self._sample(bucket, (("le", "+Inf"),), snapshot.count)
        self._sample(f"{name}_count", (), snapshot.count)
        self._sample(f"{name}_sum", (), snapshot.sum)

    def text(self) -> bytes:
        return "".join(self._lines).encode("utf-8")

    def _family(self, name: str, doc: str, kind: str) -> None:
        self._lines.append(f"# HELP {name} {_help(doc)}\n# TYPE {name} {kind}\n")

    def _sample(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        if labels:
            pairs = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels)
            self._lines.append(f"{name}{{{pairs}}} {go_float(value)}\n")
        else:
            self._lines.append(f"{name} {go_float(value)}\n")
