"""PromQL's syntax tree and static types: what the parser builds and the evaluator walks. Pure.

Every node knows its `type` (scalar, instant vector, range vector, string) and its character span
in the query (`pos`, `end`), so a type error names where it is.  `FUNCTIONS` lists the functions the
engine evaluates with their argument and return types (Prometheus's table); `UNSUPPORTED_FUNCTIONS`
names Prometheus functions outside the subset, so a query using one is told so rather than that the
function does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foobar_ref.monitor.tsdb import Matcher

SCALAR = "scalar"
VECTOR = "vector"
MATRIX = "matrix"
STRING = "string"

DOCUMENTED_TYPE = {SCALAR: "scalar", VECTOR: "instant vector", MATRIX: "range vector", STRING: "string"}

AGGREGATORS = ("sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "quantile")
AGGREGATORS_WITH_PARAM = ("topk", "bottomk", "quantile")
UNSUPPORTED_AGGREGATORS = ("count_values",)
SET_OPERATORS = ("and", "or", "unless")
COMPARISON_OPERATORS = ("==", "!=", "<", ">", "<=", ">=")
ARITHMETIC_OPERATORS = ("+", "-", "*", "/", "%", "^", "atan2")
KEYWORDS = ("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", *SET_OPERATORS, "atan2")


@dataclass(frozen=True)
class Function:
    name: str
    arg_types: tuple[str, ...]
    return_type: str = VECTOR
    variadic: int = 0  # 0 fixed; n: the last argument may repeat up to n times; -1: without limit (or be absent)


def _functions(*specs: Function) -> dict[str, Function]:
    return {spec.name: spec for spec in specs}


_V, _M, _S, _STR = (VECTOR,), (MATRIX,), (SCALAR,), (STRING,)
FUNCTIONS = _functions(
    *(Function(name, _V) for name in ("abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "sgn")),
    *(Function(name, _V) for name in ("absent", "sort", "sort_desc", "timestamp")),
    *(
        Function(name, _M)
        for name in (
            "rate",
            "irate",
            "increase",
            "delta",
            "idelta",
            "deriv",
            "changes",
            "resets",
            "absent_over_time",
            "present_over_time",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "last_over_time",
            "stddev_over_time",
            "stdvar_over_time",
        )
    ),
    Function("quantile_over_time", (SCALAR, MATRIX)),
    Function("predict_linear", (MATRIX, SCALAR)),
    Function("histogram_quantile", (SCALAR, VECTOR)),
    Function("clamp", (VECTOR, SCALAR, SCALAR)),
    Function("clamp_min", (VECTOR, SCALAR)),
    Function("clamp_max", (VECTOR, SCALAR)),
    Function("round", (VECTOR, SCALAR), variadic=1),
    Function("scalar", _V, SCALAR),
    Function("vector", _S),
    Function("time", (), SCALAR),
    Function("pi", (), SCALAR),
    Function("label_replace", (VECTOR, STRING, STRING, STRING, STRING)),
    Function("label_join", (VECTOR, STRING, STRING, STRING), variadic=-1),
)

_TRIGONOMETRY = ("acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh")
_DATES = ("day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year")
_NATIVE_HISTOGRAMS = ("histogram_count", "histogram_sum", "histogram_fraction")
UNSUPPORTED_FUNCTIONS = frozenset((*_TRIGONOMETRY, *_DATES, *_NATIVE_HISTOGRAMS, "deg", "rad", "holt_winters"))


@dataclass(eq=False)
class Node:
    pos: int
    end: int

    @property
    def type(self) -> str:
        raise NotImplementedError


@dataclass(eq=False)
class NumberLiteral(Node):
    value: float

    @property
    def type(self) -> str:
        return SCALAR


@dataclass(eq=False)
class StringLiteral(Node):
    value: str

    @property
    def type(self) -> str:
        return STRING


@dataclass(eq=False)
class VectorSelector(Node):
    name: str | None
    matchers: list[Matcher]
    offset_ms: int = 0

    @property
    def type(self) -> str:
        return VECTOR


@dataclass(eq=False)
class MatrixSelector(Node):
    vector: VectorSelector
    range_ms: int

    @property
    def type(self) -> str:
        return MATRIX


@dataclass(eq=False)
class Call(Node):
    function: Function
    args: list[Node]

    @property
    def type(self) -> str:
        return self.function.return_type


@dataclass(eq=False)
class Aggregate(Node):
    op: str
    expr: Node
    param: Node | None = None
    grouping: list[str] = field(default_factory=list)
    without: bool = False

    @property
    def type(self) -> str:
        return VECTOR


@dataclass
class VectorMatching:
    card: str = "one-to-one"  # many-to-one (group_left), one-to-many (group_right), many-to-many (set operators)
    on: bool = False
    labels: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Binary(Node):
    op: str
    lhs: Node
    rhs: Node
    matching: VectorMatching | None = None
    return_bool: bool = False

    @property
    def type(self) -> str:
        return SCALAR if self.lhs.type == SCALAR and self.rhs.type == SCALAR else VECTOR


@dataclass(eq=False)
class Unary(Node):
    op: str
    expr: Node

    @property
    def type(self) -> str:
        return self.expr.type


@dataclass(eq=False)
class Paren(Node):
    expr: Node

    @property
    def type(self) -> str:
        return self.expr.type


def unwrap_parens(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.expr
    return node


def walk(node: Node) -> list[Node]:
    """Every node of the tree, parents before children."""
    found = [node]
    children: list[Node] = []
    if isinstance(node, MatrixSelector):
        children = [node.vector]
    elif isinstance(node, Call):
        children = list(node.args)
    elif isinstance(node, Aggregate):
        children = [node.expr] + ([node.param] if node.param is not None else [])
    elif isinstance(node, Binary):
        children = [node.lhs, node.rhs]
    elif isinstance(node, Unary | Paren):
        children = [node.expr]
    for child in children:
        found.extend(walk(child))
    return found
