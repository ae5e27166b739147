"""PromQL's parser: a query's text to a typed syntax tree, or a `bad_data` error naming line and column. Pure.

Theory of operation
-------------------
A hand-written recursive-descent parser over `lexer.tokenize`'s tokens, with precedence climbing for
binary operators (Prometheus's table, loosest first: `or`; `and` `unless`; comparisons; `+ -`;
`* / % atan2`; `^`, which alone groups to the right).  A unary sign takes what follows up to and
including `^` (so `-2 ^ 2` is -4, as in Prometheus) and folds into a number literal.  Each node is
type-checked as it is built, with Prometheus's messages ("expected type range vector in call to
function "rate", got instant vector"), so the first problem is the one reported, at its position.

Why by hand rather than the `promql-parser` wheel: the engine evaluates a subset, and everything
outside it (subqueries, `@`, functions it does not evaluate) must answer `bad_data` at the right
position; a parser for the whole language would need the same walk again to refuse those, and
would add a native dependency to a pure-Python project for ~400 lines of grammar.

Nesting is bounded (`MAX_DEPTH`), so a hostile query cannot exhaust the interpreter's stack.
"""

from __future__ import annotations

from foobar_ref.monitor.promql import ast
from foobar_ref.monitor.promql.errors import PromQLError, parse_error
from foobar_ref.monitor.promql.lexer import DURATION, EOF, IDENTIFIER, NUMBER, OPERATOR, STRING, Token, tokenize
from foobar_ref.monitor.tsdb import METRIC_NAME, Labels, Matcher, MatcherError, labels_from

MAX_DEPTH = 100  # nested parentheses, calls and operators
_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_PRECEDENCE.update({op: 3 for op in ast.COMPARISON_OPERATORS})
_POW = 6
_LABEL_OPERATORS = ("=", "!=", "=~", "!~")


def parse(query: str) -> ast.Node:
    """The syntax tree of a query, type-checked; raises PromQLError('bad_data', 'line:col: parse error: ...')."""
    return _Parser(query).parse_query()


def parse_matchers(text: str) -> list[Matcher]:
    """The matchers of a series selector (`up{job="x"}`, `{__name__=~"foo.*"}`), as /federate's match[] takes."""
    parser = _Parser(text)
    node = parser.parse_query()
    if not isinstance(node, ast.VectorSelector) or node.offset_ms:
        raise parse_error(text, 0, 'expected a series selector such as up{job="x"}')
    return node.matchers


def parse_metric(text: str) -> Labels:
    """Labels of a metric written as `name{label="value",...}` or `{...}` (only `=` matchers)."""
    parser = _Parser(text)
    if parser.peek().kind == EOF:
        return ()
    if parser.peek().text == "{":
        matchers = parser.label_matchers()
        name = None
    else:
        name = parser.expect(IDENTIFIER, "metric name").text
        matchers = parser.label_matchers() if parser.peek().text == "{" else []
    parser.expect(EOF, "end of input")
    pairs = [(METRIC_NAME, name)] if name else []
    for matcher in matchers:
        if matcher.op != "=":
            raise parse_error(text, 0, f"only '=' may name a label's value here, got {matcher}")
        pairs.append((matcher.name, matcher.value))
    return labels_from(pairs)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0
        self.depth = 0

    # --- token helpers -----------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == IDENTIFIER and token.text.lower() in words

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind in (OPERATOR, "punctuation") and token.text == text

    def expect_text(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise self.unexpected(context, f'"{text}"')
        return self.advance()

    def expect(self, kind: str, expected: str, context: str = "") -> Token:
        if self.peek().kind != kind:
            raise self.unexpected(context, expected)
        return self.advance()

    def unexpected(self, context: str = "", expected: str = "") -> PromQLError:
        token = self.peek()
        message = f"unexpected {token.describe()}"
        if context:
            message += f" in {context}"
        if expected:
            message += f", expected {expected}"
        return parse_error(self.query, token.pos, message)

    def error(self, node_or_pos: ast.Node | int, message: str) -> PromQLError:
        pos = node_or_pos if isinstance(node_or_pos, int) else node_or_pos.pos
        return parse_error(self.query, pos, message)

    # --- expressions -------------------------------------------------------------------------------

    def parse_query(self) -> ast.Node:
        if self.peek().kind == EOF:
            raise parse_error(self.query, 0, "no expression found in input")
        node = self.expression()
        if self.peek().kind != EOF:
            raise self.unexpected()
        return node

    def expression(self, min_precedence: int = 1) -> ast.Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(self.peek().pos, f"expression nested more than {MAX_DEPTH} levels deep")
        lhs = self.unary()
        while True:
            op = self.binary_operator()
            if op is None or _PRECEDENCE[op] < min_precedence:
                break
            op_token = self.advance()
            return_bool, matching = self.binary_modifiers(op)
            rhs = self.expression(_PRECEDENCE[op] + (0 if op == "^" else 1))
            lhs = self.make_binary(op, op_token, lhs, rhs, return_bool, matching)
        self.depth -= 1
        return lhs

    def binary_operator(self) -> str | None:
        token = self.peek()
        if token.kind == OPERATOR and token.text in _PRECEDENCE:
            return token.text
        if token.kind == IDENTIFIER and token.text.lower() in ("and", "or", "unless", "atan2"):
            return token.text.lower()
        return None

    def binary_modifiers(self, op: str) -> tuple[bool, ast.VectorMatching]:
        return_bool = False
        if self.at_keyword("bool"):
            self.advance()
            return_bool = True
        matching = ast.VectorMatching(card="many-to-many" if op in ast.SET_OPERATORS else "one-to-one")
        if self.at_keyword("on", "ignoring"):
            matching.on = self.advance().text.lower() == "on"
            matching.labels = self.grouping_labels()
            if self.at_keyword("group_left", "group_right"):
                side = self.advance()
                if op in ast.SET_OPERATORS:
                    raise self.error(side.pos, f'no grouping allowed for "{op}" operation')
                matching.card = "many-to-one" if side.text.lower() == "group_left" else "one-to-many"
                if self.at("("):
                    matching.include = self.grouping_labels()
                for label in matching.include:
                    if matching.on and label in matching.labels:
                        raise self.error(side.pos, f'label "{label}" must not occur in ON and GROUP clause at once')
        return return_bool, matching

    def make_binary(
        self, op: str, token: Token, lhs: ast.Node, rhs: ast.Node, return_bool: bool, matching: ast.VectorMatching
    ) -> ast.Node:
        for side in (lhs, rhs):
            if side.type not in (ast.SCALAR, ast.VECTOR):
                raise self.error(side, "binary expression must contain only scalar and instant vector types")
        comparison = op in ast.COMPARISON_OPERATORS
        if return_bool and not comparison:
            raise self.error(token.pos, "bool modifier can only be used on comparison operators")
        both_scalar = lhs.type == ast.SCALAR and rhs.type == ast.SCALAR
        if comparison and both_scalar and not return_bool:
            raise self.error(token.pos, "comparisons between scalars must use BOOL modifier")
        if op in ast.SET_OPERATORS and (lhs.type == ast.SCALAR or rhs.type == ast.SCALAR):
            raise self.error(lhs.pos, f'set operator "{op}" not allowed in binary scalar expression')
        vectors = lhs.type == ast.VECTOR and rhs.type == ast.VECTOR
        if not vectors and (matching.labels or matching.card not in ("one-to-one", "many-to-many")):
            raise self.error(lhs.pos, "vector matching only allowed between instant vectors")
        if both_scalar and isinstance(lhs, ast.NumberLiteral) and isinstance(rhs, ast.NumberLiteral):
            pass  # evaluated like any other expression: folding would change nothing observable
        return ast.Binary(lhs.pos, rhs.end, op, lhs, rhs, matching if vectors else None, return_bool)

    def unary(self) -> ast.Node:
        token = self.peek()
        if token.kind == OPERATOR and token.text in "+-":
            self.advance()
            operand = self.expression(_POW)
            if operand.type not in (ast.SCALAR, ast.VECTOR):
                raise self.error(
                    token.pos,
                    "unary expression only allowed on expressions of type scalar or instant vector, "
                    f'got "{ast.DOCUMENTED_TYPE[operand.type]}"',
                )
            if isinstance(operand, ast.NumberLiteral):
                value = -operand.value if token.text == "-" else operand.value
                return ast.NumberLiteral(token.pos, operand.end, value)
            if token.text == "+":
                return operand
            return ast.Unary(token.pos, operand.end, "-", operand)
        return self.postfix(self.primary())

    def postfix(self, node: ast.Node) -> ast.Node:
        while True:
            if self.at("["):
                node = self.range_selector(node)
            elif self.at_keyword("offset"):
                node = self.offset(node)
            elif self.at("@"):
                raise self.error(self.peek().pos, "the @ modifier is not supported by this engine")
            else:
                return node

    def range_selector(self, node: ast.Node) -> ast.Node:
        bracket = self.advance()
        if not isinstance(node, ast.VectorSelector):
            raise self.error(node, "ranges only allowed for vector selectors")
        duration = self.expect(DURATION, "duration", "range selector")
        if self.at(":") or (self.peek().kind == IDENTIFIER and self.peek().text.startswith(":")):
            raise self.error(bracket.pos, "subqueries are not supported by this engine")
        end = self.expect_text("]", "range selector")
        assert isinstance(duration.value, int)
        if duration.value <= 0:
            raise self.error(duration.pos, "range selector must be positive")
        return ast.MatrixSelector(node.pos, end.pos + 1, node, duration.value)

    def offset(self, node: ast.Node) -> ast.Node:
        keyword = self.advance()
        sign = 1
        if self.at("-") or self.at("+"):
            sign = -1 if self.advance().text == "-" else 1
        duration = self.expect(DURATION, "duration", "offset")
        assert isinstance(duration.value, int)
        target = node.vector if isinstance(node, ast.MatrixSelector) else node
        if not isinstance(target, ast.VectorSelector):
            raise self.error(
                keyword.pos,
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            )
        if target.offset_ms:
            raise self.error(keyword.pos, "offset may not be set multiple times")
        target.offset_ms = sign * duration.value
        node.end = duration.pos + len(duration.text)
        return node

    def primary(self) -> ast.Node:
        token = self.peek()
        if token.kind == NUMBER:
            self.advance()
            assert isinstance(token.value, float)
            return ast.NumberLiteral(token.pos, token.pos + len(token.text), token.value)
        if token.kind == STRING:
            self.advance()
            assert isinstance(token.value, str)
            return ast.StringLiteral(token.pos, token.pos + len(token.text), token.value)
        if self.at("("):
            self.advance()
            inner = self.expression()
            end = self.expect_text(")", "paren expression")
            return ast.Paren(token.pos, end.pos + 1, inner)
        if self.at("{"):
            return self.vector_selector(None, token.pos)
        if token.kind == IDENTIFIER:
            return self.identifier_expression(token)
        raise self.unexpected()

    def identifier_expression(self, token: Token) -> ast.Node:
        word = token.text.lower()
        if word in ast.AGGREGATORS:
            return self.aggregation(token)
        if word in ast.UNSUPPORTED_AGGREGATORS:
            raise self.error(token.pos, f'aggregation "{word}" is not supported by this engine')
        if self.peek(1).kind == "punctuation" and self.peek(1).text == "(":
            return self.call(token)
        if word in ast.KEYWORDS:
            raise self.unexpected()
        self.advance()
        return self.vector_selector(token.text, token.pos)

    # --- selectors ---------------------------------------------------------------------------------

    def vector_selector(self, name: str | None, pos: int) -> ast.Node:
        matchers = [Matcher.make(METRIC_NAME, "=", name)] if name else []
        end = pos + len(name or "")
        if self.at("{"):
            end = self.peek().pos
            for matcher in self.label_matchers():
                if name and matcher.name == METRIC_NAME:
                    raise self.error(pos, f'metric name must not be set twice: "{name}" or "{matcher.value}"')
                matchers.append(matcher)
            end = self.tokens[self.index - 1].pos + 1
        if not any(not matcher.matches_empty() for matcher in matchers):
            raise self.error(pos, "vector selector must contain at least one non-empty matcher")
        return ast.VectorSelector(pos, end, name, matchers)

    def label_matchers(self) -> list[Matcher]:
        self.expect_text("{", "label matching")
        matchers: list[Matcher] = []
        while not self.at("}"):
            if self.peek().kind == EOF:
                raise parse_error(self.query, self.peek().pos, "unexpected end of input inside braces")
            label = self.peek()
            if label.kind != IDENTIFIER or ":" in label.text:
                raise self.unexpected("label matching", "label matching operator" if matchers else 'identifier or "}"')
            self.advance()
            op = self.peek()
            if op.kind != OPERATOR or op.text not in _LABEL_OPERATORS:
                raise self.unexpected("label matching", "label matching operator")
            self.advance()
            value = self.expect(STRING, "string", "label matching")
            assert isinstance(value.value, str)
            try:
                matchers.append(Matcher.make(label.text, op.text, value.value))
            except MatcherError as error:
                raise self.error(label.pos, str(error)) from None
            if self.peek().kind == EOF:
                raise parse_error(self.query, self.peek().pos, "unexpected end of input inside braces")
            if not self.at("}"):
                self.expect_text(",", "label matching")
        self.advance()
        return matchers

    def grouping_labels(self) -> list[str]:
        self.expect_text("(", "grouping opts")
        labels: list[str] = []
        while not self.at(")"):
            label = self.peek()
            if label.kind != IDENTIFIER or ":" in label.text:
                raise self.unexpected("grouping opts", '"," or ")"' if labels else 'label or ")"')
            labels.append(self.advance().text)
            if not self.at(")"):
                self.expect_text(",", "grouping opts")
        self.advance()
        return labels

    # --- aggregations and calls --------------------------------------------------------------------

    def aggregation(self, token: Token) -> ast.Node:
        op = self.advance().text.lower()
        grouping: list[str] | None = None
        without = False
        if self.at_keyword("by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.grouping_labels()
        if not self.at("("):
            raise self.unexpected("aggregation", '"("')
        args, end = self.call_arguments()
        if grouping is None and self.at_keyword("by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.grouping_labels()
            end = self.tokens[self.index - 1].pos + 1
        wanted = 2 if op in ast.AGGREGATORS_WITH_PARAM else 1
        if not args:
            raise self.error(token.pos, "no arguments for aggregate expression provided")
        if len(args) != wanted:
            raise self.error(
                token.pos,
                f"wrong number of arguments for aggregate expression provided, expected {wanted}, got {len(args)}",
            )
        param = args[0] if wanted == 2 else None
        expr = args[-1]
        self.expect_type(expr, ast.VECTOR, "aggregation expression")
        if param is not None:
            self.expect_type(param, ast.SCALAR, "aggregation parameter")
        return ast.Aggregate(token.pos, end, op, expr, param, grouping or [], without)

    def call(self, token: Token) -> ast.Node:
        name = token.text
        function = ast.FUNCTIONS.get(name)
        if function is None:
            if name in ast.UNSUPPORTED_FUNCTIONS:
                raise self.error(token.pos, f'function "{name}" is not supported by this engine')
            raise self.error(token.pos, f'unknown function with name "{name}"')
        self.advance()
        args, end = self.call_arguments()
        node = ast.Call(token.pos, end, function, args)
        self.check_call(node)
        return node

    def call_arguments(self) -> tuple[list[ast.Node], int]:
        self.expect_text("(", "function call")
        args: list[ast.Node] = []
        while not self.at(")"):
            args.append(self.expression())
            if not self.at(")"):
                if not self.at(","):
                    raise self.unexpected("argument list", '"," or ")"' if args else "")
                self.advance()
        end = self.advance()
        return args, end.pos + 1

    def check_call(self, node: ast.Call) -> None:
        function, count = node.function, len(node.args)
        fixed = len(function.arg_types)
        if function.variadic == 0 and count != fixed:
            raise self.error(node, f'expected {fixed} argument(s) in call to "{function.name}", got {count}')
        if function.variadic != 0:
            least = fixed - 1
            if count < least:
                raise self.error(
                    node, f'expected at least {least} argument(s) in call to "{function.name}", got {count}'
                )
            most = least + function.variadic
            if function.variadic > 0 and count > most:
                raise self.error(node, f'expected at most {most} argument(s) in call to "{function.name}", got {count}')
        for index, arg in enumerate(node.args):
            wanted = function.arg_types[min(index, fixed - 1)]
            self.expect_type(arg, wanted, f'call to function "{function.name}"')

    def expect_type(self, node: ast.Node, wanted: str, context: str) -> None:
        if node.type != wanted:
            raise self.error(
                node,
                f"expected type {ast.DOCUMENTED_TYPE[wanted]} in {context}, got {ast.DOCUMENTED_TYPE[node.type]}",
            )
