"""Phases out of a dynamic (4D) series: which frame is ``pre``, ``arterial``, ``tubular``...

A manifest.csv row whose phase is ``dynamic`` points at a whole dynamic acquisition (a 4D NIfTI
or a dynamic DICOM series); ``study.yaml``'s ``dynamic:`` section (:class:`medimp.study
.DynamicSpec`) says how each phase of ``phases`` is taken from it:

* ``index``: a fixed frame per phase;
* ``time``: the frame nearest ``arrival_s + phase.seconds`` (arrival fixed by the protocol);
* ``auto``: the contrast arrival is detected on the curve of mean intensity (whole volume or a
  box), then phases are placed as for ``time``; a phase with ``seconds <= 0`` is the last frame
  *before* ``arrival + seconds`` (pre-contrast).

Nothing is guessed: too few frames, unknown or non-increasing times, no detectable arrival, a
phase beyond the end of the series or two phases on one frame are :class:`DynamicSeriesError`
naming the file and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimp.data._errors import DynamicSeriesError
from medimp.data.io.readers import DynamicSeries
from medimp.study import DynamicSpec, Study

__all__ = ["FRAMES_COLUMN", "FrameSelection", "arrival_curve", "detect_arrival", "parse_frames",
           "select_frames", "timing_warnings"]

#: optional manifest.csv column of a dynamic row: that exam's own frames, "pre:0 arterial:6"
FRAMES_COLUMN = "frames"

_ALT = ("set dynamic.select: index with dynamic.frames in study.yaml (one frame per phase), "
        "or dynamic.select: time with the arrival_s of your protocol")


@dataclass(frozen=True)
class FrameSelection:
    """The frames chosen for each phase of one dynamic series.

    Attributes:
        frames: phase -> frame index (0-based), in study phase order.
        times: phase -> that frame's time (s after the first frame), None when unknown.
        arrival_s: contrast arrival (s after the first frame): detected (auto), given (time)
            or None (index).
        method: ``"index"``, ``"time"``, ``"auto"`` or ``"manifest"`` (the exam's own frames,
            manifest.csv's ``frames`` column).
        curve: mean intensity of every frame over the arrival region.
        frame_times: every frame's time (s), or None.
        time_source: where the frame times come from.
        path: the series.
    """

    frames: dict[str, int]
    times: dict[str, float | None]
    arrival_s: float | None
    method: str
    curve: np.ndarray
    frame_times: np.ndarray | None
    time_source: str
    path: Path

    @property
    def n_frames(self) -> int:
        return int(self.curve.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (``medimp validate --json``, the report's figure)."""
        return {
            "file": str(self.path),
            "method": self.method,
            "n_frames": self.n_frames,
            "frames": dict(self.frames),
            "times": {k: None if v is None else round(v, 3) for k, v in self.times.items()},
            "arrival_s": None if self.arrival_s is None else round(self.arrival_s, 3),
            "time_source": self.time_source,
            "curve": [round(float(c), 6) for c in self.curve],
            "frame_times": None if self.frame_times is None
            else [round(float(t), 3) for t in self.frame_times],
        }


def arrival_curve(series: DynamicSeries,
                  region: list[tuple[float, float]] | None = None) -> np.ndarray:
    """Mean intensity of every frame over ``region`` (fractions of the i, j, k axes)."""
    a = series.array
    if region is not None:
        sl = []
        for (lo, hi), n in zip(region, a.shape[:3], strict=True):
            start = min(math.floor(lo * n), n - 1)
            sl.append(slice(start, max(math.ceil(hi * n), start + 1)))
        a = a[sl[0], sl[1], sl[2]]
    return a.reshape(-1, a.shape[3]).astype(np.float64).mean(axis=0)


def detect_arrival(times: np.ndarray, curve: np.ndarray, spec: DynamicSpec,
                   path: str | Path) -> float:
    """Contrast arrival in seconds: the first crossing of ``baseline + threshold x
    (peak - baseline)``, linearly interpolated between the two frames around it.

    Raises:
        DynamicSeriesError: no enhancement above ``min_enhancement`` of the baseline, or the
            curve already enhanced at the first frame.
    """
    n = curve.size
    b = min(spec.baseline_frames, n - 1)
    baseline = float(curve[:b].mean())
    peak = float(curve[b:].max())
    rise = peak - baseline
    if rise <= 0 or rise < spec.min_enhancement * abs(baseline):
        pct = 100.0 * rise / abs(baseline) if baseline else 0.0
        raise DynamicSeriesError(
            f"no contrast arrival detectable: the {'region' if spec.region else 'whole-volume'} "
            f"curve rises at most {pct:.1f}% above its baseline (the first {b} frame(s)); "
            f"dynamic.min_enhancement asks for {100 * spec.min_enhancement:g}%", file=path,
            fix="set dynamic.region to a box over the aorta or a kidney, or " + _ALT)
    level = baseline + spec.threshold * rise
    above = np.flatnonzero(curve > level)
    k = int(above[0])
    if k == 0:
        raise DynamicSeriesError(
            "the curve is already enhanced at the first frame: no pre-contrast frame",
            file=path, fix="check the series starts before the injection, or " + _ALT)
    t0, t1, c0, c1 = times[k - 1], times[k], curve[k - 1], curve[k]
    return float(t0 + (level - c0) / (c1 - c0) * (t1 - t0))


def _place(times: np.ndarray, arrival: float, study: Study, spec: DynamicSpec,
           path: str | Path) -> dict[str, int]:
    steps = np.diff(times)
    tol = spec.tolerance_s if spec.tolerance_s is not None else (
        float(np.median(steps)) if steps.size else 0.0)
    frames: dict[str, int] = {}
    for ph in study.phases:
        if ph.seconds is None:
            raise DynamicSeriesError(
                f"phase {ph.name!r} has no 'seconds' in study.yaml, so its frame cannot be "
                f"placed after the arrival (dynamic.select: {spec.select})", file=path,
                fix=f"give phase {ph.name!r} its delay after arrival in seconds, or " + _ALT)
        target = arrival + ph.seconds
        if ph.seconds <= 0:
            before = np.flatnonzero(times < target)
            if not before.size:
                raise DynamicSeriesError(
                    f"no frame before {target:g} s for phase {ph.name!r} (arrival at "
                    f"{arrival:g} s, first frame at 0 s)", file=path,
                    fix="the series must start before the contrast arrives; or " + _ALT)
            frames[ph.name] = int(before[-1])
            continue
        j = int(np.argmin(np.abs(times - target)))
        if abs(times[j] - target) > tol + 1e-6:
            raise DynamicSeriesError(
                f"phase {ph.name!r} needs a frame at {target:g} s (arrival {arrival:g} s + "
                f"{ph.seconds:g} s) but the nearest is frame {j} at {times[j]:g} s (the series "
                f"spans 0-{times[-1]:g} s, tolerance {tol:g} s)", file=path,
                fix="acquire a longer series, shorten the phase's seconds in study.yaml, raise "
                    "dynamic.tolerance_s, or " + _ALT)
        frames[ph.name] = j
    return frames


def parse_frames(text: str, phases: list[str]) -> dict[str, int]:
    """One exam's frames as manifest.csv's ``frames`` column writes them: ``pre:0
    arterial:6 tubular:20`` (separated by spaces, ``;`` or ``,``).

    Raises:
        ValueError: not ``phase:index`` pairs, an unknown phase, a phase missing, or a
            negative index (the message says which).
    """
    out: dict[str, int] = {}
    for item in re.split(r"[\s;,]+", text.strip()):
        name, sep, idx = item.partition(":")
        if not sep or not idx.strip().isdigit():
            raise ValueError(f"frames {text!r}: expected phase:index pairs, e.g. "
                             f"'{' '.join(f'{p}:{i}' for i, p in enumerate(phases))}'")
        out[name.strip()] = int(idx)
    if set(out) != set(phases):
        raise ValueError(f"frames {text!r} must give one frame for each phase {phases}")
    return {p: out[p] for p in phases}


def timing_warnings(sel: FrameSelection, study: Study, tolerance: float | None = None
                    ) -> list[str]:
    """Phases whose chosen frame is far from the phase's seconds in study.yaml (frames chosen
    by index: the pre-contrast frame stands for the arrival). Far: more than half the phase's
    delay, and more than ``tolerance`` (default: the median frame step)."""
    if sel.frame_times is None or sel.method not in ("index", "manifest"):
        return []
    steps = np.diff(sel.frame_times)
    tol = tolerance if tolerance is not None else float(np.median(steps)) if steps.size else 0
    pre = [p.name for p in study.phases if p.seconds is not None and p.seconds <= 0]
    ref = sel.times.get(pre[0]) if pre else 0.0
    out = []
    for ph in study.phases:
        t = sel.times.get(ph.name)
        if ph.seconds is None or ph.seconds <= 0 or t is None or ref is None:
            continue
        delay = t - ref
        if abs(delay - ph.seconds) > max(tol, 0.5 * ph.seconds):
            out.append(f"phase {ph.name!r} is frame {sel.frames[ph.name]} at {t:g} s, "
                       f"{delay:g} s after the {pre[0] + ' ' if pre else 'first '}frame, but "
                       f"study.yaml puts it {ph.seconds:g} s after the arrival")
    return out


def select_frames(series: DynamicSeries, study: Study,
                  frames: dict[str, int] | None = None) -> FrameSelection:
    """Choose the frame of every phase of ``study`` in ``series`` by ``study.dynamic`` (or
    ``frames``, this exam's own choice from manifest.csv's ``frames`` column).

    Raises:
        DynamicSeriesError: fewer frames than phases, a frame index past the end, times needed
            but unknown, no detectable arrival, a phase outside the series, or two phases on
            the same frame; each names the file and the fix.
    """
    spec = study.dynamic
    path = series.path
    names = study.phase_names
    n = series.n_frames
    if n < len(names):
        raise DynamicSeriesError(
            f"{n} frame(s) for {len(names)} phases {names}", file=path,
            fix="list the full dynamic series, or one 3D file per phase in manifest.csv")
    curve = arrival_curve(series, spec.region)
    times = series.times
    arrival: float | None = None
    method = "manifest" if frames is not None else spec.select
    if frames is not None or spec.select == "index":
        given = frames if frames is not None else spec.frames
        assert given is not None
        frames = {ph: int(given[ph]) for ph in names}
        late = {ph: f for ph, f in frames.items() if f >= n}
        where = "manifest.csv frames" if method == "manifest" else "dynamic.frames"
        if late:
            raise DynamicSeriesError(
                f"{where} {late} past the last frame ({n} frames: 0-{n - 1})",
                file=path, fix=f"correct {where} for this series length")
    else:
        if times is None:
            raise DynamicSeriesError(
                f"frame times unknown ({series.time_source}) but dynamic.select: {spec.select} "
                "places phases in seconds", file=path,
                fix="add the dcm2niix JSON sidecar with FrameTimesStart (or the DICOM timing "
                    "tags), or set dynamic.select: index with dynamic.frames")
        if spec.select == "time":
            assert spec.arrival_s is not None
            arrival = float(spec.arrival_s)
        else:
            arrival = detect_arrival(times, curve, spec, path)
        frames = _place(times, arrival, study, spec, path)
    seen: dict[int, str] = {}
    for ph, f in frames.items():
        if f in seen:
            raise DynamicSeriesError(
                f"phases {seen[f]!r} and {ph!r} both fall on frame {f}"
                + (f" ({times[f]:g} s)" if times is not None else ""), file=path,
                fix="the series is too coarse or too short for these delays: adjust the "
                    "phases' seconds, or " + _ALT)
        seen[f] = ph
    return FrameSelection(
        frames=frames,
        times={ph: None if times is None else float(times[f]) for ph, f in frames.items()},
        arrival_s=arrival, method=method, curve=curve,
        frame_times=None if times is None else np.asarray(times, dtype=np.float64),
        time_source=series.time_source, path=Path(path))
