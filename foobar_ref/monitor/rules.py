"""Prometheus rule files: read, validate every rule, and say where each problem is (`file:line: ...`). Pure.

    groups:
      - name: foobar              # unique in the file
        interval: 15s             # optional; else the service's evaluation interval
        rules:
          - alert: TargetDown     # or record: name:metric:rate5m
            expr: up == 0
            for: 30s
            keep_firing_for: 1m
            labels: {severity: critical}
            annotations: {summary: "{{ $labels.instance }} is down"}

The YAML is composed into nodes (PyYAML), so every problem carries the line of the node it is about;
an expression that does not parse is reported at the line of the offending character, inside a
multi-line `expr: |` block too.  Checks are Prometheus's (rulefmt): unknown fields, exactly one of
`record`/`alert`, `expr` present and parsing, durations, `for`/`keep_firing_for`/`annotations` only
on alerts, valid metric and label names, duplicate group names, templates that parse; plus the
expression's type (an instant vector or a scalar).  All problems are collected before refusing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml  # PyYAML: composes nodes with line marks, which the file:line messages need

from foobar_ref.monitor.promql import PromQLError, ast, parse
from foobar_ref.monitor.promql.lexer import parse_duration_text
from foobar_ref.monitor.templates import Template, TemplateError, compile_template

MAX_RULE_FILE_BYTES = 4 * 1024 * 1024
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FILE_FIELDS = ("groups",)
_GROUP_FIELDS = ("name", "interval", "limit", "rules")
_RULE_FIELDS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
_POSITION = re.compile(r"^(\d+):(\d+): ")


class RuleFileError(Exception):
    """A rule file refused; `problems` lists every problem as `file:line: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Rule:
    kind: str  # "alert" or "record"
    name: str
    expr: str
    node: ast.Node
    line: int
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    templates: dict[str, Template] = field(
        default_factory=dict, compare=False, repr=False
    )  # "labels.x", "annotations.y"


@dataclass(frozen=True)
class RuleGroup:
    name: str
    interval_s: float | None
    rules: tuple[Rule, ...]
    line: int
    limit: int = 0


@dataclass(frozen=True)
class RuleFile:
    path: Path
    groups: tuple[RuleGroup, ...]


def load_rule_file(path: Path) -> RuleFile:
    """Read and validate a rule file; raises RuleFileError with every problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RULE_FILE_BYTES + 1)
    except OSError as error:
        raise RuleFileError([f"{path}: cannot read: {error.strerror}"]) from None
    if len(raw) > MAX_RULE_FILE_BYTES:
        raise RuleFileError([f"{path}: larger than {MAX_RULE_FILE_BYTES} bytes"])
    return parse_rule_text(raw.decode("utf-8", errors="replace"), path)


def parse_rule_text(text: str, path: Path) -> RuleFile:
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RuleFileError([f"{path}:{line}: invalid YAML: {getattr(error, 'problem', None) or error}"]) from None
    groups = reader.file(root) if root is not None else ()
    if reader.problems:
        raise RuleFileError(sorted(reader.problems, key=_problem_line))
    return RuleFile(path, groups)


def parse_seconds(text: str) -> float | None:
    """Seconds of a rule-file duration (`30s`, `1m30s`, `0s`), or None."""
    text = text.strip()
    if text == "0":
        return 0.0
    milliseconds = parse_duration_text(text)
    return None if milliseconds is None else milliseconds / 1000


def _problem_line(problem: str) -> int:
    found = re.match(r".*?:(\d+): ", problem)
    return int(found.group(1)) if found else 0


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {message}")

    def mapping(self, node: yaml.Node, what: str, known: tuple[str, ...] | None) -> dict[str, yaml.Node]:
        """A mapping node's entries by key; problems for non-mappings, duplicate and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(_line(node), f"{what} must be a mapping")
            return {}
        entries: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in entries:
                self.problem(_line(key_node), f'{what}: key "{key}" already defined at line {_line(entries[key])}')
                continue
            if known is not None and key not in known:
                self.problem(_line(key_node), f'{what}: unknown field "{key}" (known: {", ".join(known)})')
                continue
            entries[key] = value_node
        return entries

    def scalar(self, node: yaml.Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.problem(_line(node), f"{what} must be a single value")
            return None
        return str(node.value)

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "null", "~"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(_line(node), f"{what} must be a list")
            return []
        return list(node.value)

    def duration(self, node: yaml.Node | None, what: str) -> float:
        text = self.scalar(node, what)
        if text is None or node is None:
            return 0.0
        seconds = parse_seconds(text)
        if seconds is None:
            self.problem(_line(node), f'{what}: not a valid duration string: "{text}"')
            return 0.0
        return seconds

    def file(self, root: yaml.Node) -> tuple[RuleGroup, ...]:
        entries = self.mapping(root, "rule file", _FILE_FIELDS)
        groups: list[RuleGroup] = []
        seen: dict[str, int] = {}
        for node in self.sequence(entries["groups"], "groups") if "groups" in entries else []:
            group = self.group(node)
            if group is None:
                continue
            if group.name in seen:
                self.problem(
                    group.line,
                    f'groupname: "{group.name}" is repeated in the same file (first at line {seen[group.name]})',
                )
            seen.setdefault(group.name, group.line)
            groups.append(group)
        return tuple(groups)

    def group(self, node: yaml.Node) -> RuleGroup | None:
        entries = self.mapping(node, "group", _GROUP_FIELDS)
        name = self.scalar(entries.get("name"), "group name") or ""
        if not name:
            self.problem(_line(node), "Groupname must not be empty")
        interval = self.duration(entries["interval"], f'group "{name}": interval') if "interval" in entries else None
        if interval == 0:
            interval = None
        limit_text = self.scalar(entries.get("limit"), "limit") or "0"
        if not limit_text.isdigit():
            self.problem(_line(entries["limit"]), f'group "{name}": limit must be a whole number, got "{limit_text}"')
            limit_text = "0"
        rules = []
        for index, rule_node in enumerate(self.sequence(entries["rules"], "rules") if "rules" in entries else []):
            rule = _RuleReader(self, name, index + 1).rule(rule_node)
            if rule is not None:
                rules.append(rule)
        return RuleGroup(name, interval, tuple(rules), _line(node), int(limit_text))


class _RuleReader:
    """One rule's checks; problems are prefixed with the group, the rule's number and name, as Prometheus's."""

    def __init__(self, reader: _Reader, group: str, number: int) -> None:
        self.reader = reader
        self.group = group
        self.number = number
        self.name = ""
        self.failed = False
        self.lines: dict[str, int] = {}  # "labels.x" / "annotations.y" -> line of the value

    def problem(self, line: int, message: str) -> None:
        self.failed = True
        self.reader.problem(line, f'group "{self.group}", rule {self.number}, "{self.name}": {message}')

    def rule(self, node: yaml.Node) -> Rule | None:
        entries = self.reader.mapping(node, f'group "{self.group}", rule {self.number}', _RULE_FIELDS)
        if not entries and not isinstance(node, yaml.MappingNode):
            return None
        record = self.reader.scalar(entries.get("record"), "record") or ""
        alert = self.reader.scalar(entries.get("alert"), "alert") or ""
        self.name = alert or record
        line = _line(entries.get("alert") or entries.get("record") or node)
        if record and alert:
            record_line = _line(entries["record"])
            self.problem(record_line, f"only one of 'record' and 'alert' must be set (alert at line {line})")
        if not record and not alert:
            self.problem(line, "one of 'record' or 'alert' must be set")
        expr_text, parsed = self.expression(entries.get("expr"), line)
        for_s = self.reader.duration(entries.get("for"), "for")
        keep_s = self.reader.duration(entries.get("keep_firing_for"), "keep_firing_for")
        labels = self.strings(entries.get("labels"), "label")
        annotations = self.strings(entries.get("annotations"), "annotation")
        if record:
            self.recording_checks(line, record, for_s, keep_s, annotations)
        templates = self.templates(labels, annotations) if alert else {}
        if self.failed or parsed is None:
            return None
        kind = "alert" if alert else "record"
        return Rule(kind, self.name, expr_text, parsed, line, for_s, keep_s, labels, annotations, templates)

    def expression(self, node: yaml.Node | None, line: int) -> tuple[str, ast.Node | None]:
        text = self.reader.scalar(node, "expr")
        if node is None or not text:
            self.problem(_line(node) if node is not None else line, "field 'expr' must be set in rule")
            return "", None
        try:
            parsed = parse(text)
        except PromQLError as error:
            self.problem(_expr_line(node, error.message), f"could not parse expression: {error.message}")
            return text, None
        if parsed.type not in (ast.VECTOR, ast.SCALAR):
            self.problem(_line(node), f"expression must be an instant vector or a scalar, got {parsed.type}")
            return text, None
        return text, parsed

    def strings(self, node: yaml.Node | None, what: str) -> dict[str, str]:
        if node is None:
            return {}
        result: dict[str, str] = {}
        for key, value_node in self.reader.mapping(node, f"{what}s", None).items():
            value = self.reader.scalar(value_node, f"{what} {key}")
            self.lines[f"{what}s.{key}"] = _line(value_node)
            if not _LABEL_NAME.fullmatch(key) or (what == "label" and key == "__name__"):
                self.problem(_line(value_node), f"invalid {what} name: {key}")
            result[key] = value if value is not None else ""
        return result

    def recording_checks(self, line: int, record: str, for_s: float, keep_s: float, annotations: dict) -> None:
        if annotations:
            self.problem(line, "invalid field 'annotations' in recording rule")
        if for_s:
            self.problem(line, "invalid field 'for' in recording rule")
        if keep_s:
            self.problem(line, "invalid field 'keep_firing_for' in recording rule")
        if not _METRIC_NAME.fullmatch(record):
            self.problem(line, f"invalid recording rule name: {record}")

    def templates(self, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Template]:
        compiled: dict[str, Template] = {}
        for kind, values in (("label", labels), ("annotation", annotations)):
            for key, text in values.items():
                try:
                    compiled[f"{kind}s.{key}"] = compile_template(text, f"__alert_{self.name}")
                except TemplateError as error:
                    self.problem(self.lines[f"{kind}s.{key}"], f'{kind} "{key}": {error}')
        return compiled


def _expr_line(node: yaml.Node, message: str) -> int:
    """The file line of a PromQL error inside an `expr` value (block scalars start on the next line)."""
    found = _POSITION.match(message)
    offset = int(found.group(1)) - 1 if found else 0
    block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
    return _line(node) + offset + (1 if block else 0)
