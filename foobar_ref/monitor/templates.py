"""Alert label and annotation templates: the part of Go's text/template that alert rules use. Pure.

    {{ $labels.hop }} {{ $value }} {{ $value | humanize }} {{ printf "%.2f" $value }}
    {{ .Labels.instance }} {{ $externalLabels.site }} {{- trimmed -}} {{/* comment */}}

A template is text with actions; an action is a pipeline of commands separated by `|`, each a
function name with arguments or a single operand (`$labels.x`, `$value`, `.Labels.x`, `.Value`,
`$externalLabels.x`, a quoted string, a number); a piped value becomes the next function's last
argument.  Functions: Prometheus's `humanize`, `humanize1024`, `humanizeDuration`,
`humanizePercentage`, and `printf`, `toUpper`, `toLower`, `title`.  A missing label prints
`<no value>`, a float prints as Go's `%v` does, so expansions match Prometheus's text for text.

`compile_template` raises TemplateError at load for anything else (`if`, `range`, query functions),
so a rule file using them is refused with its line rather than misrendered later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from foobar_ref.monitor.promql.values import go_value

NO_VALUE = "<no value>"
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_WORD = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|[^\s|"`]+|\|)')
_PRINTF_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([a-zA-Z%])")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TemplateData:
    labels: Mapping[str, str]
    value: float
    external_labels: Mapping[str, str]


Command = list[str]  # words: a function name and its arguments, or one operand
Template = list[str | list[Command]]  # text pieces and pipelines


def compile_template(text: str, name: str) -> Template:
    """Parse `text`; TemplateError names the template and what is not understood."""
    pieces: Template = []
    position = 0
    for match in _ACTION.finditer(text):
        literal = text[position : match.start()]
        if match.group(1):
            literal = literal.rstrip()
        pieces.append(literal)
        body = match.group(2).strip()
        if not body.startswith("/*"):
            pieces.append(_pipeline(body, name))
        position = match.end()
        if match.group(3):
            rest = text[position:]
            position += len(rest) - len(rest.lstrip())
    tail = text[position:]
    if "{{" in tail:
        raise TemplateError(f"template: {name}: unclosed action")
    pieces.append(tail)
    return pieces


def _pipeline(body: str, name: str) -> list[Command]:
    words = _WORD.findall(body)
    if not words:
        raise TemplateError(f"template: {name}: missing value for command")
    commands: list[Command] = [[]]
    for word in words:
        if word == "|":
            commands.append([])
        else:
            commands[-1].append(word)
    for index, command in enumerate(commands):
        if not command:
            raise TemplateError(f"template: {name}: missing command in pipeline")
        head = command[0]
        if head in _FUNCTIONS:
            continue
        if len(command) > 1 or index > 0 or not _is_operand(head):
            what = head if not _is_operand(head) else " ".join(command)
            raise TemplateError(f'template: {name}: function "{what}" not defined')
    return commands


def _is_operand(word: str) -> bool:
    if word[0] in '"`' or _number(word) is not None:
        return True
    return (
        re.fullmatch(
            r"\$(labels|externalLabels)\.[a-zA-Z_][a-zA-Z0-9_]*|\$value|\.Value|"
            r"\.Labels\.[a-zA-Z_][a-zA-Z0-9_]*|\.ExternalLabels\.[a-zA-Z_][a-zA-Z0-9_]*",
            word,
        )
        is not None
    )


def _number(word: str) -> float | None:
    try:
        return float(word)
    except ValueError:
        return None


def expand(template: Template, data: TemplateData) -> str:
    out: list[str] = []
    for piece in template:
        if isinstance(piece, str):
            out.append(piece)
        else:
            out.append(_text(_run(piece, data)))
    return "".join(out)


def _run(pipeline: list[Command], data: TemplateData) -> object:
    result: object = None
    for index, command in enumerate(pipeline):
        head = command[0]
        if head in _FUNCTIONS:
            args = [_operand(word, data) for word in command[1:]]
            if index > 0:
                args.append(result)
            result = _FUNCTIONS[head](*args)
        else:
            result = _operand(head, data)
    return result


def _operand(word: str, data: TemplateData) -> object:
    if word[0] == '"':
        return bytes(word[1:-1], "utf-8").decode("unicode_escape")
    if word[0] == "`":
        return word[1:-1]
    if word in ("$value", ".Value"):
        return data.value
    for prefix, mapping in (
        ("$labels.", data.labels),
        (".Labels.", data.labels),
        ("$externalLabels.", data.external_labels),
        (".ExternalLabels.", data.external_labels),
    ):
        if word.startswith(prefix):
            return mapping.get(word[len(prefix) :], NO_VALUE)
    number = _number(word)
    if number is not None:
        return number if "." in word or "e" in word.lower() else int(number)
    raise TemplateError(f"unknown operand {word}")


def _text(value: object) -> str:
    if isinstance(value, float):
        return go_value(value)
    return str(value)


def _float(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        raise TemplateError(f"can't convert {value!r} to float") from None


def go_g4(value: float) -> str:
    """Go's %.4g."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def humanize(value: object) -> str:
    v = _float(value)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefixes, step = (("k", "M", "G", "T", "P", "E", "Z", "Y"), 1000.0) if abs(v) >= 1 else (None, 0.0)
    prefix = ""
    if prefixes:
        for candidate in prefixes:
            if abs(v) < 1000:
                break
            prefix, v = candidate, v / step
        return go_g4(v) + prefix
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = candidate, v * 1000
    return go_g4(v) + prefix


def humanize1024(value: object) -> str:
    v = _float(value)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefix = ""
    for candidate in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = candidate, v / 1024
    return go_g4(v) + prefix


def humanize_duration(value: object) -> str:
    v = _float(value)
    if math.isnan(v) or math.isinf(v):
        return go_g4(v)
    if v == 0:
        return go_g4(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        whole = int(v)
        seconds, minutes, hours, days = whole % 60, (whole // 60) % 60, (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(v)}s"
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = candidate, v * 1000
    return f"{go_g4(v)}{prefix}s"


def humanize_percentage(value: object) -> str:
    return go_g4(_float(value) * 100) + "%"


def printf(template: object, *args: object) -> str:
    """Go's fmt.Sprintf for the verbs alert texts use: %s %v %d %f %e %g %q %% with flags, width, precision."""
    remaining = list(args)

    def substitute(match: re.Match[str]) -> str:
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if not remaining:
            return f"%!{verb}(MISSING)"
        arg = remaining.pop(0)
        if verb in "vs":
            text = _text(arg)
            return f"{text:{'<' if '-' in flags else '>'}{width}}" if width else text
        if verb == "q":
            return '"' + str(arg).replace("\\", "\\\\").replace('"', '\\"') + '"'
        number = _float(arg)
        spec = f"{flags}{width}{'.' + precision if precision is not None else ''}"
        if verb == "d":
            return f"{int(number):{spec}d}" if not (math.isnan(number) or math.isinf(number)) else go_value(number)
        if verb in "feEgG":
            if math.isnan(number) or math.isinf(number):
                return go_g4(number)
            return ("%" + spec + verb) % number
        return f"%!{verb}({_text(arg)})"

    return _PRINTF_VERB.sub(substitute, str(template))


_FUNCTIONS: dict[str, Callable[..., str]] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "printf": printf,
    "toUpper": lambda text: str(text).upper(),
    "toLower": lambda text: str(text).lower(),
    "title": lambda text: str(text).title(),
}
