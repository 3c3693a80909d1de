"""Trino semantics on DuckDB: a typed sqlglot tree rewritten so DuckDB computes what Athena computes, and the
strict checks that refuse what Athena refuses (see docs/local-differences.md, "Athena SQL", and ADR 0022).

`check_strict` runs on the annotated tree before any rewrite and raises with Athena's error category and message;
`trino_semantics` rewrites dates, integer division, `round`, `typeof`, subscripts, time zones, lambdas and the
functions DuckDB lacks (`lakebox.services.athena.functions`). Each output column whose values carry a time zone is
returned with its zone, so results print as Trino prints a `timestamp(3) with time zone`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError

from lakebox.services.athena.functions import (
    PREFIX,
    TRINO_FUNCTIONS,
    PatternError,
    java_format_to_printf,
    java_to_strftime,
)
from lakebox.services.athena.model import _QueryError, data_type

__all__ = ["UTC", "check_function_names", "check_strict", "trino_semantics", "unnest_arrays"]

UTC: Final = "UTC"
_T = exp.DataType.Type
_STRINGS: Final = {_T.VARCHAR, _T.TEXT, _T.CHAR, _T.NCHAR, _T.NVARCHAR}
_NUMBERS: Final = {_T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT, _T.DECIMAL, _T.DOUBLE, _T.FLOAT}
_INTEGERS: Final = {_T.TINYINT: 1, _T.SMALLINT: 2, _T.INT: 3, _T.BIGINT: 4}
_TIMES: Final = {_T.DATE, _T.TIMESTAMP, _T.TIMESTAMPTZ, _T.DATETIME}
_DATE_UNITS: Final = {"DAY", "WEEK", "MONTH", "YEAR", "QUARTER"}
_ZONE: Final = "lb_zone"
_ZONED_LITERAL: Final = re.compile(
    r"(?P<moment>\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (?P<zone>[A-Za-z][\w/+-]*)"
)
_NAMES: Final = {
    _T.VARCHAR: "varchar",
    _T.TEXT: "varchar",
    _T.CHAR: "char",
    _T.TINYINT: "tinyint",
    _T.SMALLINT: "smallint",
    _T.INT: "integer",
    _T.BIGINT: "bigint",
    _T.DOUBLE: "double",
    _T.FLOAT: "real",
    _T.BOOLEAN: "boolean",
    _T.DATE: "date",
    _T.TIMESTAMP: "timestamp(3)",
    _T.DATETIME: "timestamp(3)",
    _T.TIMESTAMPTZ: "timestamp(3) with time zone",
    _T.ARRAY: "array",
    _T.MAP: "map",
    _T.STRUCT: "row",
}
_STRING_FUNCTIONS: Final[dict[type[exp.Expr], str]] = {
    exp.Length: "length",
    exp.Upper: "upper",
    exp.Lower: "lower",
    exp.Substring: "substr",
    exp.Trim: "trim",
    exp.StrPosition: "strpos",
    exp.Split: "split",
    exp.RegexpLike: "regexp_like",
    exp.RegexpExtract: "regexp_extract",
    exp.RegexpReplace: "regexp_replace",
}
_NUMBER_FUNCTIONS: Final[dict[type[exp.Expr], str]] = {
    exp.Abs: "abs",
    exp.Round: "round",
    exp.Sqrt: "sqrt",
    exp.Ln: "ln",
    exp.Floor: "floor",
    exp.Ceil: "ceil",
    exp.Pow: "power",
    exp.Exp: "exp",
}
_DATE_FUNCTIONS: Final[dict[type[exp.Expr], str]] = {
    exp.DateAdd: "date_add",
    exp.DateDiff: "date_diff",
    exp.TimestampTrunc: "date_trunc",
    exp.DateTrunc: "date_trunc",
}


# ------------------------------------------------------------------ types


def _kind(node: exp.Expr | None) -> exp.DataType | None:
    kind = getattr(node, "type", None)
    if not isinstance(kind, exp.DataType) or kind.this in {_T.UNKNOWN, _T.NULL}:
        return None
    return kind


def _is(node: exp.Expr | None, kinds: Iterable[object]) -> bool:
    kind = _kind(node)
    return kind is not None and kind.this in set(kinds)


def _category(node: exp.Expr | None) -> str | None:
    kind = _kind(node)
    if kind is None or isinstance(node, exp.Null):
        return None
    if kind.this in _STRINGS:
        return "string"
    if kind.this in _NUMBERS:
        return "number"
    if kind.this in _TIMES:
        return "time"
    if kind.this == _T.BOOLEAN:
        return "boolean"
    return None


def trino_name(node: exp.Expr) -> str:
    """Trino's name of an annotated node's type, as its error messages print it (``varchar(1)``, ``integer``)."""
    kind = _kind(node)
    if kind is None:
        return "unknown"
    if kind.this in _STRINGS and isinstance(node, exp.Literal) and node.is_string:
        return f"varchar({len(node.name)})"
    if kind.this == _T.DECIMAL:
        params = [p.name for p in kind.expressions if isinstance(p, exp.DataTypeParam)]
        return f"decimal({','.join(params)})" if params else "decimal"
    return _NAMES.get(kind.this, kind.sql("trino").lower())


# ------------------------------------------------------------------ strict

_NOT_CALLS: Final = frozenset({"bernoulli", "system", "all", "any", "some", "grouping"})
"""Names followed by a parenthesis that are not function calls (TABLESAMPLE methods, quantifiers, GROUPING)."""
_SQL_JSON: Final = frozenset({"json_value", "json_query", "json_exists", "json_object", "json_array", "json_table"})


def check_function_names(sql: str) -> None:
    """Refuse a call of a function Trino does not have, by the name written in the query.

    sqlglot maps other dialects' names onto known functions (``nvl``, ``ifnull``, ``len``, ``left``), so the typed
    tree alone cannot tell that Athena would refuse them; the tokens can. A name followed by ``(`` is a call unless
    it follows ``AS``, ``.``, ``INTO``, ``TABLE`` or a closing parenthesis (a table alias with columns), or its
    parenthesised list is followed by ``AS`` (a WITH query's column list).

    Raises
    ------
    _QueryError
        ``FUNCTION_NOT_FOUND: Function 'nvl' not registered``.
    """
    try:
        tokens = Dialect.get_or_raise("athena").tokenize(sql)
    except TokenError:
        return
    for i, token in enumerate(tokens[:-1]):
        if token.token_type != TokenType.VAR or tokens[i + 1].token_type != TokenType.L_PAREN:
            continue
        name = token.text.lower()
        if name in TRINO_FUNCTIONS or name in _NOT_CALLS or name in _SQL_JSON:
            continue
        before = tokens[i - 1].token_type if i else None
        if before in {TokenType.ALIAS, TokenType.DOT, TokenType.INTO, TokenType.TABLE, TokenType.R_PAREN}:
            continue
        depth, j = 0, i + 1
        while j < len(tokens):
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[j].token_type, 0)
            if depth == 0:
                break
            j += 1
        if j + 1 < len(tokens) and tokens[j + 1].token_type == TokenType.ALIAS:
            continue
        raise _QueryError(f"FUNCTION_NOT_FOUND: Function '{name}' not registered")


def check_strict(tree: exp.Expr) -> None:
    """Refuse what Athena (Trino) refuses at analysis: type mismatches, implicit casts, unknown functions.

    Raises
    ------
    _QueryError
        ``TYPE_MISMATCH`` or ``FUNCTION_NOT_FOUND`` with Trino's message. Trino prefixes it with ``line L:C:``;
        sqlglot keeps the positions of identifiers only, so none is given rather than a wrong one.
    """
    for node in tree.walk():
        if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)):
            _compare(node, node.left, node.right, _OPERATORS.get(type(node), "="))
        elif isinstance(node, exp.In):
            for item in node.expressions:
                if _differ(node.this, item):
                    raise _QueryError(
                        f"TYPE_MISMATCH: IN value and list items must be the same type: {trino_name(item)}"
                    )
        elif isinstance(node, exp.Between):
            low, high = node.args.get("low"), node.args.get("high")
            if _differ(node.this, low) or _differ(node.this, high):
                names = [trino_name(n) if isinstance(n, exp.Expr) else "unknown" for n in (node.this, low, high)]
                raise _QueryError(f"TYPE_MISMATCH: Cannot check if {names[0]} is BETWEEN {names[1]} and {names[2]}")
        elif isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
            left, right = _category(node.left), _category(node.right)
            if "string" in {left, right} and left is not None and right is not None:
                _mismatch(node, node.left, node.right, _OPERATORS[type(node)])
            if {left, right} == {"boolean", "number"}:
                _mismatch(node, node.left, node.right, _OPERATORS[type(node)])
        elif isinstance(node, exp.DPipe):
            if any(_category(side) in {"number", "time", "boolean"} for side in (node.left, node.right)):
                _mismatch(node, node.left, node.right, "||")
        elif isinstance(node, exp.Concat):
            if any(_category(arg) in {"number", "time", "boolean"} for arg in node.expressions):
                _unexpected(node, "concat", node.expressions)
        elif isinstance(node, tuple(_DATE_FUNCTIONS)):
            if _category(node.this) == "string" or _category(node.args.get("expression")) == "string":
                args = [a for a in (node.args.get("expression"), node.this) if isinstance(a, exp.Expr)]
                unit = exp.Literal.string(_unit(node).lower())
                unit.type = data_type("VARCHAR")
                _unexpected(node, _DATE_FUNCTIONS[type(node)], [unit, *args])
        elif isinstance(node, tuple(_STRING_FUNCTIONS)):
            if _category(node.this) in {"number", "time", "boolean"}:
                _unexpected(node, _STRING_FUNCTIONS[type(node)], [node.this])
        elif isinstance(node, tuple(_NUMBER_FUNCTIONS)):
            if _category(node.this) in {"string", "time", "boolean"}:
                _unexpected(node, _NUMBER_FUNCTIONS[type(node)], [node.this])
        elif isinstance(node, (exp.Case, exp.Coalesce, exp.If)) and not isinstance(node.parent, exp.Case):
            _branches(node)
        elif isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name not in TRINO_FUNCTIONS and name not in {"all", "any", "some"}:
                raise _QueryError(f"FUNCTION_NOT_FOUND: Function '{name}' not registered")


_OPERATORS: Final[dict[type[exp.Expr], str]] = {
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.NullSafeEQ: "IS NOT DISTINCT FROM",
    exp.NullSafeNEQ: "IS DISTINCT FROM",
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.Mod: "%",
}


def _differ(left: exp.Expr | None, right: exp.Expr | None) -> bool:
    a, b = _category(left), _category(right)
    return a is not None and b is not None and a != b


def _compare(node: exp.Expr, left: exp.Expr | None, right: exp.Expr | None, operator: str) -> None:
    a, b = _category(left), _category(right)
    if a is not None and b is not None and a != b and left is not None and right is not None:
        _mismatch(node, left, right, operator)


def _mismatch(node: exp.Expr, left: exp.Expr, right: exp.Expr, operator: str) -> None:
    raise _QueryError(f"TYPE_MISMATCH: Cannot apply operator: {trino_name(left)} {operator} {trino_name(right)}")


def _unexpected(node: exp.Expr, name: str, args: list[exp.Expr]) -> None:
    listed = ", ".join(trino_name(a) for a in args)
    raise _QueryError(f"FUNCTION_NOT_FOUND: Unexpected parameters ({listed}) for function {name}")


def _branches(node: exp.Expr) -> None:
    if isinstance(node, exp.Coalesce):
        branches, what = [node.this, *node.expressions], "COALESCE operands"
    elif isinstance(node, exp.If):
        branches, what = [node.args.get("true"), node.args.get("false")], "IF results"
    else:
        ifs = node.args.get("ifs") or []
        branches, what = [w.args.get("true") for w in ifs] + [node.args.get("default")], "CASE results"
    typed = [b for b in branches if isinstance(b, exp.Expr) and _category(b) is not None]
    if len({_category(b) for b in typed}) > 1:
        names = ", ".join(dict.fromkeys(trino_name(b) for b in typed))
        raise _QueryError(
            f"TYPE_MISMATCH: All {what} must be the same type or coercible to a common type. "
            f"Cannot find common type between {trino_name(typed[0])} and "
            f"{next(trino_name(b) for b in typed if _category(b) != _category(typed[0]))}, "
            f"all types (without duplicates): [{names}]"
        )


# ------------------------------------------------------------- semantics


def trino_semantics(tree: exp.Expr, *, strict: bool) -> dict[str, str]:
    """Rewrite an annotated tree in place so DuckDB computes Trino's values and types.

    Returns the time zone of every output column whose values are a ``timestamp with time zone``, by name.
    """
    nodes = list(tree.walk(bfs=False))
    for node in reversed(nodes):  # children before their parents
        rewrite = _REWRITES.get(type(node))
        if rewrite is not None:
            replacement = rewrite(node, strict)
            if replacement is not None and replacement is not node:
                if node is tree:
                    tree = replacement
                else:
                    node.replace(replacement)
        elif isinstance(node, exp.Anonymous):
            _function(node)
    return _zones(tree)


def _zones(tree: exp.Expr) -> dict[str, str]:
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return {}
    zones = {}
    for projection in select.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        while isinstance(inner, exp.Paren):
            inner = inner.this
        zone = inner.meta.get(_ZONE) if isinstance(inner, exp.Expr) else None
        if zone:
            zones[projection.alias_or_name] = str(zone)
    return zones


def _zoned(node: exp.Expr, zone: str) -> exp.Expr:
    node.meta[_ZONE] = zone
    node.type = data_type("TIMESTAMPTZ")
    return node


def _zone_of(node: exp.Expr | None) -> str | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Expr):
        return None
    zone = node.meta.get(_ZONE)
    if zone:
        return str(zone)
    if _is(node, {_T.TIMESTAMPTZ}):
        return UTC
    return None


def _literal_zone(node: exp.Expr | None, what: str) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return node.name
    raise _QueryError(f"NOT_SUPPORTED: {what} with a time zone that is not a literal cannot be run locally")


def _call(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _cast(node: exp.Expr, to: str) -> exp.Cast:
    cast = exp.Cast(this=node, to=data_type(to, dialect="duckdb"))
    cast.type = data_type(to, dialect="duckdb")
    return cast


def _unit(node: exp.Expr) -> str:
    unit = node.args.get("unit")
    return unit.name.upper() if isinstance(unit, exp.Expr) else "DAY"


def _date_arith(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``date + interval``, ``date_add`` and ``date_trunc`` on a DATE stay a DATE for date units."""
    del strict
    if isinstance(node, (exp.Add, exp.Sub)):
        interval = node.expression
        if not (_is(node.this, {_T.DATE}) and isinstance(interval, exp.Interval)):
            return None
        if _unit(interval) not in _DATE_UNITS:
            raise _QueryError(f"INVALID_FUNCTION_ARGUMENT: '{_unit(interval).lower()}' is not a valid DATE field")
        return _cast(node.copy(), "DATE")
    if not _is(node.this, {_T.DATE}):
        return None
    if _unit(node) not in _DATE_UNITS:
        raise _QueryError(f"INVALID_FUNCTION_ARGUMENT: '{_unit(node).lower()}' is not a valid DATE field")
    return _cast(node.copy(), "DATE")


def _arith(node: exp.Expr, strict: bool) -> exp.Expr | None:
    if isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
        return _date_arith(node, strict)
    if isinstance(node, (exp.Div, exp.Mod)):
        left, right = _kind(node.left), _kind(node.right)
        if left is not None and right is not None and left.this in _INTEGERS and right.this in _INTEGERS:
            wider = left if _INTEGERS[left.this] >= _INTEGERS[right.this] else right
            name = "idiv" if isinstance(node, exp.Div) else "imod"
            return _cast(_call(f"{PREFIX}{name}", node.left.copy(), node.right.copy()), wider.sql("duckdb"))
    return None


def _sign(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``sign`` of an integer is of the argument's type (DuckDB's is a TINYINT)."""
    del strict
    kind = _kind(node.this)
    if kind is not None and kind.this in _INTEGERS:
        return _cast(node.copy(), kind.sql("duckdb"))
    return None


def _date_diff(node: exp.Expr, strict: bool) -> exp.Expr:
    """``date_diff`` counts whole units (DuckDB's ``date_sub``), not boundaries crossed (its ``date_diff``)."""
    del strict
    start, end = node.args["expression"], node.this
    return _cast(_call("date_sub", exp.Literal.string(_unit(node).lower()), start.copy(), end.copy()), "BIGINT")


def _round(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``round(decimal(p, s), d)`` is ``decimal(p + 1, s)``; ``round(decimal(p, s))`` is ``decimal(p - s + 1, 0)``."""
    del strict
    kind = _kind(node.this)
    if kind is None or kind.this != _T.DECIMAL:
        return None
    params = [int(p.name) for p in kind.expressions if isinstance(p, exp.DataTypeParam)]
    if len(params) != 2:
        return None
    precision, scale = params
    if node.args.get("decimals") is not None:
        return _cast(node.copy(), f"DECIMAL({min(38, precision + 1)},{scale})")
    return _cast(node.copy(), f"DECIMAL({min(38, precision - scale + min(scale, 1))},0)")


def _typeof(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    arg = node.this
    if isinstance(arg, exp.Literal) and arg.is_string:
        return exp.Literal.string(f"varchar({len(arg.name)})")
    zone = _zone_of(arg)
    if zone is not None:
        return exp.Literal.string("timestamp(3) with time zone")
    return _call(f"{PREFIX}trino_type", _call("typeof", arg.copy()))


def _substitute(body: exp.Expr, params: list[str], values: Sequence[exp.Expr]) -> exp.Expr:
    mapping = dict(zip(params, values, strict=True))

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, (exp.Column, exp.Identifier)) and not node.args.get("table") and node.name in mapping:
            if isinstance(node.parent, exp.Column) and isinstance(node, exp.Identifier):
                return node
            return exp.Paren(this=mapping[node.name].copy())
        return node

    return body.copy().transform(swap)


def _lambda(node: exp.Expr | None, arity: int, what: str) -> tuple[exp.Expr, list[str]]:
    if not isinstance(node, exp.Lambda) or len(node.expressions) != arity:
        raise _QueryError(f"FUNCTION_NOT_FOUND: {what} needs a lambda of {arity} argument(s)")
    return node.this, [p.name for p in node.expressions]


def _reduce(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``reduce(array, initial, input, output)``: the output function applied to the folded state."""
    del strict
    finish = node.args.get("finish")
    if finish is None:
        return None
    body, params = _lambda(finish, 1, "reduce")
    folded = node.copy()
    folded.set("finish", None)
    return _substitute(body, params, [folded])


def _slice(node: exp.Expr, strict: bool) -> exp.Expr:
    """``slice(x, start, length)``: DuckDB's slice takes an end, not a length."""
    del strict
    return _call(f"{PREFIX}slice", node.this.copy(), node.args["start"].copy(), node.args["end"].copy())


def _regexp_replace(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """Java's ``$1`` group references are RE2's ``\\1``; every match is replaced."""
    del strict
    replacement = node.args.get("replacement")
    if replacement is None:
        return None
    if not (isinstance(replacement, exp.Literal) and replacement.is_string):
        raise _QueryError("NOT_SUPPORTED: regexp_replace with a replacement that is not a literal cannot run locally")
    text, out, i = replacement.name, [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append("\\\\" if text[i + 1] == "\\" else text[i + 1])
            i += 2
        elif c == "$" and i + 1 < len(text) and text[i + 1].isdigit():
            out.append("\\" + text[i + 1])
            i += 2
        elif c == "$" and i + 1 < len(text) and text[i + 1] == "{":
            raise _QueryError("NOT_SUPPORTED: regexp_replace with a named group reference cannot run locally")
        else:
            out.append(c)
            i += 1
    return _call(
        "regexp_replace",
        node.this.copy(),
        node.expression.copy(),
        exp.Literal.string("".join(out)),
        exp.Literal.string("g"),
    )


def _json_scalar(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    return _call(f"{PREFIX}json_scalar", node.this.copy(), node.expression.copy())


def _format(node: exp.Expr, strict: bool) -> exp.Expr:
    """Trino's ``format`` takes a java.util.Formatter pattern: DuckDB's ``printf`` for the specifiers both share."""
    del strict
    pattern = node.this
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise _QueryError("NOT_SUPPORTED: format with a pattern that is not a literal cannot run locally")
    try:
        checked = java_format_to_printf(pattern.name)
    except PatternError as exc:
        raise _QueryError(f"NOT_SUPPORTED: format with {exc} cannot run locally") from exc
    return _call("printf", exp.Literal.string(checked), *(e.copy() for e in node.expressions))


def _bracket(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``a[i]`` fails outside the array and ``m[k]`` on a missing key, as in Trino (``element_at`` stays lenient)."""
    if not strict or node.args.get("safe") or len(node.expressions) != 1:
        return None
    index = node.expressions[0]
    if _is(node.this, {_T.ARRAY}):
        if isinstance(index, exp.Literal) and index.is_number:
            position: exp.Expr = exp.Literal.number(int(index.name) + int(node.args.get("offset") or 0) + 1)
        else:
            position = index.copy()
        return _call(f"{PREFIX}subscript", node.this.copy(), position)
    if _is(node.this, {_T.MAP}):
        return _call(f"{PREFIX}key", node.this.copy(), index.copy())
    return None


def _split_to_map(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    entries, pairs = node.args.get("pair_delim"), node.args.get("key_value_delim")
    if entries is None or pairs is None:
        raise _QueryError("FUNCTION_NOT_FOUND: Unexpected parameters for function split_to_map")
    replacement = _call(f"{PREFIX}split_to_map", node.this.copy(), entries.copy(), pairs.copy())
    replacement.type = exp.DataType(this=_T.MAP)
    return replacement


def _at_time_zone(node: exp.Expr, strict: bool) -> exp.Expr:
    """``x AT TIME ZONE z``: the same instant shown in zone z (a timestamp without zone is in the session's, UTC)."""
    del strict
    zone = _literal_zone(node.args.get("zone"), "AT TIME ZONE")
    return _zoned(_cast(node.this.copy(), "TIMESTAMPTZ"), zone)


def _from_unixtime(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    zone_arg = node.args.get("zone")
    zone = _literal_zone(zone_arg, "from_unixtime") if zone_arg is not None else UTC
    if node.args.get("hours") is not None or node.args.get("minutes") is not None:
        raise _QueryError("NOT_SUPPORTED: from_unixtime with hour and minute offsets cannot run locally")
    scale = node.args.get("scale")
    if scale is not None:
        raise _QueryError("NOT_SUPPORTED: from_unixtime with a scale cannot run locally")
    return _zoned(_call("to_timestamp", _cast(node.this.copy(), "DOUBLE")), zone)


def _parse_datetime(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    pattern = _java_pattern(node.args.get("format"), "parse_datetime")
    return _zoned(_cast(_call("strptime", node.this.copy(), exp.Literal.string(pattern)), "TIMESTAMPTZ"), UTC)


def _java_pattern(node: exp.Expr | None, what: str) -> str:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise _QueryError(f"NOT_SUPPORTED: {what} with a pattern that is not a literal cannot run locally")
    try:
        return java_to_strftime(node.name)
    except PatternError as exc:
        raise _QueryError(f"NOT_SUPPORTED: {what} with {exc} cannot run locally") from exc


def _cast_node(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """A literal ``TIMESTAMP '… zone'`` keeps its zone; a zoned value cast to ``timestamp`` is its local time."""
    del strict
    to = node.args.get("to")
    if not isinstance(to, exp.DataType):
        return None
    if to.this == _T.DECIMAL and not to.expressions:
        # DECIMAL '12.50' is a decimal(4, 2); CAST(x AS decimal) a decimal(38, 0)
        text = node.this.name.strip().lstrip("+-") if isinstance(node.this, exp.Literal) else ""
        whole, _, fraction = text.partition(".")
        if text and (whole + fraction).isdigit():
            precision, scale = max(len(whole) + len(fraction), 1), len(fraction)
        else:
            precision, scale = 38, 0
        return _cast(node.this.copy(), f"DECIMAL({precision},{scale})")
    if to.this == _T.TIMESTAMPTZ and isinstance(node.this, exp.Literal) and node.this.is_string:
        text = node.name.strip()
        match = _ZONED_LITERAL.fullmatch(text)
        if match is None:
            return _zoned(node, UTC)
        zone = match.group("zone")
        moment = match.group("moment") + (":00" if match.group("moment").count(":") == 1 else "")
        return _zoned(_cast(exp.Literal.string(f"{moment} {zone}"), "TIMESTAMPTZ"), zone)
    if to.this in {_T.TIMESTAMP, _T.DATE} and _zone_of(node.this) not in {None, UTC}:
        local = _call("timezone", exp.Literal.string(str(_zone_of(node.this))), node.this.copy())
        return _cast(local, to.sql("duckdb"))
    return None


def unnest_arrays(tree: exp.Expr) -> exp.Expr:
    """Rewrite every ``UNNEST(a, b, …)`` in FROM (run after the tables are bound: it moves columns into subqueries)."""
    for node in list(tree.find_all(exp.Unnest)):
        replacement = _unnest(node)
        if replacement is not None:
            node.replace(replacement)
    return tree


def _unnest(node: exp.Unnest) -> exp.Expr | None:
    """``UNNEST(a, b)`` of arrays of different lengths pads the shorter with NULLs (DuckDB's unnests in one select)."""
    alias = node.args.get("alias")
    values = node.expressions
    if len(values) < 2 or not isinstance(alias, exp.TableAlias):
        return None
    columns = list(alias.columns)
    offset = node.args.get("offset")
    ordinality = offset is not None and offset is not False
    if isinstance(offset, exp.Identifier):
        columns.append(offset)
    if len(columns) != len(values) + (1 if ordinality else 0):
        return None
    alias = alias.copy()
    alias.set("columns", [c.copy() for c in columns])
    selects = [exp.alias_(exp.Unnest(expressions=[v.copy()]), c.copy()) for v, c in zip(values, columns, strict=False)]
    if ordinality:
        longest = _call("greatest", *(_call("len", v.copy()) for v in values))
        ordinal = _call("range", exp.Literal.number(1), exp.Add(this=longest, expression=exp.Literal.number(1)))
        selects.append(exp.alias_(exp.Unnest(expressions=[ordinal]), columns[-1].copy()))
    return exp.Subquery(this=exp.select(*selects), alias=alias.copy())


def _current_timezone(node: exp.Expr, strict: bool) -> exp.Expr:
    del node, strict
    return exp.Literal.string(UTC)


def _approx_percentile(node: exp.Expr, strict: bool) -> exp.Expr | None:
    """``approx_percentile`` of integers is a bigint (a value of the data), not DuckDB's interpolated double."""
    del strict
    kind = _kind(node.this)
    if kind is not None and kind.this in _INTEGERS and not isinstance(node.args.get("quantile"), exp.Array):
        return _cast(_call("round", node.copy()), "BIGINT")
    return None


def _width_bucket(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    args = [node.this, node.args.get("min_value"), node.args.get("max_value"), node.args.get("num_buckets")]
    if any(a is None for a in args):
        raise _QueryError("NOT_SUPPORTED: width_bucket with an array of bins cannot run locally")
    return _call(f"{PREFIX}width_bucket", *(a.copy() for a in args if a is not None))


def _reverse(node: exp.Expr, strict: bool) -> exp.Expr | None:
    del strict
    return _call("list_reverse", node.this.copy()) if _is(node.this, {_T.ARRAY}) else None


def _array_distinct(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    return _call(f"{PREFIX}array_distinct", node.this.copy())


def _array_position(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    return _cast(_call("coalesce", node.copy(), exp.Literal.number(0)), "BIGINT")


def _split_part(node: exp.Expr, strict: bool) -> exp.Expr:
    del strict
    return _call(f"{PREFIX}split_part", node.this.copy(), node.args["delimiter"].copy(), node.args["part_index"].copy())


def _split(node: exp.Expr, strict: bool) -> exp.Expr | None:
    del strict
    if node.args.get("limit") is not None:
        raise _QueryError("NOT_SUPPORTED: split with a limit cannot run locally")
    return None


_Rewrite = Callable[[exp.Expr, bool], "exp.Expr | None"]
_REWRITES: Final[dict[type[exp.Expr], _Rewrite]] = {
    exp.Add: _arith,
    exp.Sub: _arith,
    exp.Div: _arith,
    exp.Mod: _arith,
    exp.Sign: _sign,
    exp.WidthBucket: _width_bucket,
    exp.ApproxQuantile: _approx_percentile,
    exp.Reverse: _reverse,
    exp.ArrayDistinct: _array_distinct,
    exp.ArrayPosition: _array_position,
    exp.SplitPart: _split_part,
    exp.Split: _split,
    exp.JSONArrayContains: lambda node, strict: _call(
        f"{PREFIX}json_array_contains", node.this.copy(), node.expression.copy()
    ),
    exp.DateAdd: _date_arith,
    exp.DateSub: _date_arith,
    exp.TimestampTrunc: _date_arith,
    exp.DateTrunc: _date_arith,
    exp.DateDiff: _date_diff,
    exp.Round: _round,
    exp.Typeof: _typeof,
    exp.Reduce: _reduce,
    exp.ArraySlice: _slice,
    exp.RegexpReplace: _regexp_replace,
    exp.JSONExtractScalar: _json_scalar,
    exp.Format: _format,
    exp.Bracket: _bracket,
    exp.StrToMap: _split_to_map,
    exp.AtTimeZone: _at_time_zone,
    exp.UnixToTime: _from_unixtime,
    exp.ParseDatetime: _parse_datetime,
    exp.Cast: _cast_node,
    exp.CurrentTimezone: _current_timezone,
}


def _function(node: exp.Anonymous) -> None:
    """Trino functions sqlglot leaves unnamed: replaced in place by their DuckDB forms."""
    name = node.name.lower()
    args = node.expressions
    replacement: exp.Expr | None = None
    if name == "format_datetime":
        value = args[0]
        zone = _zone_of(value)
        local = value.copy() if zone is None else _call("timezone", exp.Literal.string(zone), value.copy())
        replacement = _call("strftime", local, exp.Literal.string(_java_pattern(args[1], "format_datetime")))
    elif name == "with_timezone":
        zone = _literal_zone(args[1], "with_timezone")
        replacement = _zoned(_call("timezone", exp.Literal.string(zone), _cast(args[0].copy(), "TIMESTAMP")), zone)
    elif name == "at_timezone":
        zone = _literal_zone(args[1], "at_timezone")
        replacement = _zoned(_cast(args[0].copy(), "TIMESTAMPTZ"), zone)
    elif name == "map_agg":
        entry = exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier("k"), expression=args[0].copy()),
                exp.PropertyEQ(this=exp.to_identifier("v"), expression=args[1].copy()),
            ]
        )
        listed = exp.Filter(
            this=_call("list", entry),
            expression=exp.Where(this=exp.Not(this=exp.Is(this=args[0].copy(), expression=exp.Null()))),
        )
        replacement = _call("map_from_entries", listed)
        replacement.type = exp.DataType(this=_T.MAP)
    elif name == "every":
        replacement = _call("bool_and", *(a.copy() for a in args))
    elif name in {"any_match", "all_match", "none_match"}:
        replacement = _call(f"{PREFIX}{name}", _call("list_transform", args[0].copy(), args[1].copy()))
    elif name == "zip_with":
        body, params = _lambda(args[2], 2, "zip_with")
        index = exp.to_identifier(f"{PREFIX}i")
        picked = [_call("list_extract", a.copy(), exp.column(index.copy())) for a in args[:2]]
        longest = _call("greatest", _call("len", args[0].copy()), _call("len", args[1].copy()))
        positions = _call("range", exp.Literal.number(1), exp.Add(this=longest, expression=exp.Literal.number(1)))
        mapped = exp.Lambda(this=_substitute(body, params, picked), expressions=[index])
        replacement = _call("list_transform", positions, mapped)
    elif name.startswith("url_extract_"):
        part = name.removeprefix("url_extract_")
        if part in {"protocol", "host", "path", "query", "fragment", "port", "parameter"}:
            replacement = _call(f"{PREFIX}url_{part}", *(a.copy() for a in args))
    elif name == "current_timezone":
        replacement = exp.Literal.string(UTC)
    elif name in {"is_infinite", "is_finite"}:
        replacement = _call("isinf" if name == "is_infinite" else "isfinite", *(a.copy() for a in args))
    elif name == "width_bucket" and len(args) == 4:
        replacement = _call(f"{PREFIX}width_bucket", *(a.copy() for a in args))
    elif name == "arrays_overlap":
        replacement = _call("list_has_any", *(a.copy() for a in args))
    elif name == "codepoint":
        replacement = _cast(_call("unicode", *(a.copy() for a in args)), "INTEGER")
    elif name in {"url_encode", "url_decode"}:
        replacement = _call(f"{PREFIX}{name}", *(a.copy() for a in args))
    elif name in {"zip", "all", "any", "some"}:
        what = "zip" if name == "zip" else "a quantified comparison (ALL, ANY, SOME)"
        raise _QueryError(f"NOT_SUPPORTED: {what} cannot run locally")
    elif name == "nan":
        replacement = _cast(exp.Literal.string("NaN"), "DOUBLE")
    elif name == "infinity":
        replacement = _cast(exp.Literal.string("Infinity"), "DOUBLE")
    if replacement is not None:
        node.replace(replacement)
