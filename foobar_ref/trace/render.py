"""A trace as a text waterfall: one row per hop in path order, bars on one shared time axis.

    hop          start    took  0 ms                     24.1 ms  bytes in/out  saw                decision
    client         0.0    24.1  |██████████████████████████████|  15/52         plaintext HTTP ... POST ...
    dns            0.4     7.2  |█████████                     |  -             DNS query          NOERROR, ...

A bar of '█' is timed by the hop itself; '▒' is estimated (the hop logs no
timing: firewalls log only their decision), '│' marks an event that took no
measurable time.  Notes on how a row was joined or estimated follow the table.
"""

from __future__ import annotations

from foobar_ref.trace.model import Span, Trace

BAR_WIDTH = 32
TIMED, ESTIMATED, INSTANT = "█", "▒", "│"


def render(trace: Trace, bar_width: int = BAR_WIDTH) -> str:
    spans = trace.spans
    lines = [_title(trace)]
    if not spans:
        return "\n".join([*lines, "no span found"])
    origin = min(0.0, *(s.start_s for s in spans))
    end = max(s.start_s + s.duration_s for s in spans)
    scale = (end - origin) or 1e-6
    hop_width = max(len(_hop_label(s)) for s in spans) + 1
    saw_width = max(len(s.saw) for s in spans)
    axis = f"{_ms(origin)} ms".ljust(bar_width - 8) + f"{_ms(end)} ms".rjust(8)
    lines.append(
        f"{'hop'.ljust(hop_width)} {'start':>7} {'took':>7}  {axis}   {'bytes in/out':<13} "
        f"{'saw'.ljust(saw_width)}  decision"
    )
    notes: list[str] = []
    for span in spans:
        marker = ""
        if span.note:
            notes.append(span.note)
            marker = f" [{len(notes)}]"
        bar = _bar(span, origin, scale, bar_width)
        lines.append(
            f"{_hop_label(span).ljust(hop_width)} {_ms(span.start_s):>7} {_ms(span.duration_s):>7}  |{bar}|  "
            f"{_bytes(span):<13} {span.saw.ljust(saw_width)}  {span.decision}{marker}"
        )
    lines.append(f"times in ms from the client's start; {TIMED} timed by the hop, {ESTIMATED} estimated")
    lines.append("bytes: the request body in / the whole response out as the hop sent it (the client: both bodies)")
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    if trace.missing:
        lines.append(f"no events found for: {', '.join(trace.missing)} (is the stack's logging on?)")
    lines += [f"note: {note}" for note in trace.notes]
    return "\n".join(lines)


def _title(trace: Trace) -> str:
    return f"trace {trace.trace_id or '(no trace id)'}  {trace.url}"


def _hop_label(span: Span) -> str:
    return ("  " * span.depth) + ("↳ " if span.depth else "") + span.hop


def _bar(span: Span, origin: float, scale: float, width: int) -> str:
    first = int((span.start_s - origin) / scale * width)
    first = min(max(first, 0), width - 1)
    cells = round(span.duration_s / scale * width)
    if cells == 0:
        return " " * first + INSTANT + " " * (width - first - 1)
    cells = min(cells, width - first)
    fill = ESTIMATED if span.estimated else TIMED
    return " " * first + fill * cells + " " * (width - first - cells)


def _bytes(span: Span) -> str:
    if span.bytes_in is None and span.bytes_out is None:
        return "-"
    return f"{_count(span.bytes_in)}/{_count(span.bytes_out)}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"
