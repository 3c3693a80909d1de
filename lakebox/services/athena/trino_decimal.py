"""Trino's DECIMAL arithmetic on DuckDB: result types by Trino's rules, exact division rounded HALF_UP.

DuckDB divides a DECIMAL in floating point (`1847.85 / 6` is 307.974999…, so a cast to two places gives 307.97
where Athena gives 307.98), types `decimal(18,2) * decimal(18,2)` as `DECIMAL(18,4)` (and overflows where Trino
gives `decimal(36,4)`) and averages decimals as DOUBLE. `exact_decimals` rewrites a qualified, type-annotated
sqlglot tree so that every operation on decimals is computed exactly and typed as Trino types it:

============  =======================================================  ====================
operation     result precision                                         result scale
============  =======================================================  ====================
``x + y``     ``min(38, 1 + max(xs, ys) + max(xp - xs, yp - ys))``      ``max(xs, ys)``
``x * y``     ``min(38, xp + yp)``                                      ``xs + ys``
``x / y``     ``min(38, xp + ys + max(0, ys - xs))``                    ``max(xs, ys)``, HALF_UP
``x % y``     ``min(xp - xs, yp - ys) + max(xs, ys)``                   ``max(xs, ys)``
``avg(x)``    ``xp``                                                    ``xs``, HALF_UP
============  =======================================================  ====================

An integer operand counts as ``decimal(3|5|10|19, 0)`` for tinyint, smallint, integer and bigint; a numeric
literal with a point (and no exponent) is a decimal of its digits; ``sum`` of ``decimal(p, s)`` is
``decimal(38, s)``. Division runs on the operands' unscaled HUGEINT values (``DIVIDE_MACRO``), never a float;
a cast to a smaller scale rounds HALF_UP in DuckDB already.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope

from lakebox.services.athena.model import data_type

__all__ = ["DIVIDE_MACRO", "DecimalPlanError", "exact_decimals"]

MAX_PRECISION: Final = 38
_DIVIDE: Final = "__lb_divide_half_up"
DIVIDE_MACRO: Final = (
    f"CREATE OR REPLACE MACRO {_DIVIDE}(n, d) AS "
    "CASE WHEN d = 0 THEN error('Division by zero') ELSE (2 * n + sign(n) * abs(d)) // (2 * d) END"
)
"""``round_half_up(n / d)`` for HUGEINTs: DuckDB's ``//`` truncates toward zero, so adding half the divisor, signed
like the quotient, before it rounds halves away from zero (Java's and Trino's HALF_UP)."""

_T = exp.DataType.Type
_INTEGER_DIGITS: Final = {_T.TINYINT: 3, _T.SMALLINT: 5, _T.INT: 10, _T.BIGINT: 19}
_INTEGER_TYPES: Final = {digits: kind for kind, digits in _INTEGER_DIGITS.items()}
_DECIMAL_LITERAL = re.compile(r"(\d*)\.(\d*)")
_INT32_MAX: Final = 2**31 - 1
_INT64_MAX: Final = 2**63 - 1
_SAME_TYPE: Final = (exp.Paren, exp.Neg, exp.Alias, exp.Min, exp.Max, exp.AnyValue, exp.First, exp.Last, exp.Window)


class DecimalPlanError(Exception):
    """A decimal operation the local engine cannot compute exactly within 128-bit integers; the message starts with
    the Athena error code."""


_Tree = TypeVar("_Tree", bound=exp.Expr)
_Unscale = Callable[["exp.Expr", "_Num", int], "exp.Expr"]
_Over = Callable[[exp.Expr], exp.Expr]
"""Wraps an aggregate the way the averaged one was wrapped (as is, or in its window)."""


@dataclass(frozen=True)
class _Num:
    """A decimal type, or an integer type as the decimal Trino treats it as (`integer` set)."""

    precision: int
    scale: int
    integer: bool = False

    def data_type(self) -> exp.DataType:
        if self.integer:
            return data_type(_INTEGER_TYPES[self.precision])
        return data_type(f"DECIMAL({self.precision}, {self.scale})")


def exact_decimals(tree: _Tree) -> _Tree:
    """Rewrite every decimal `+ - * / %` and `avg` of `tree` into exact DuckDB expressions typed as Trino types them.

    `tree` must be qualified and annotated (`annotate_types`); scopes are visited inner first, so a column of a
    derived table or CTE takes the type its projection was given.

    Raises
    ------
    DecimalPlanError
        A division whose scaled operands need more than 38 digits, or a product whose scale exceeds 38.
    """
    for scope in traverse_scope(tree):
        nodes = list(walk_in_scope(scope.expression))
        for node in reversed(nodes):  # children before their parents
            _retype(node, scope)
    return tree


def _retype(node: exp.Expr, scope: Scope) -> None:
    if isinstance(node, exp.Column):
        _type_column(node, scope)
    elif isinstance(node, exp.Literal) and node.is_number:
        literal = _literal_type(node.name)
        if literal is not None:
            node.type = literal.data_type()
    elif isinstance(node, exp.Window) and isinstance(node.this, exp.Avg):
        window = node

        def over(agg: exp.Expr) -> exp.Expr:
            copy = window.copy()
            copy.set("this", agg)
            return copy

        _average(node.this, over, replace=node)
    elif isinstance(node, _SAME_TYPE):
        inner = node.this if isinstance(node.this, exp.Expr) else None
        if inner is not None and inner.type is not None and _num(inner) is not None:
            node.type = inner.type.copy()
    elif isinstance(node, exp.Sum):
        arg = _num(node.this)
        if arg is not None and not arg.integer:
            node.type = _Num(MAX_PRECISION, arg.scale).data_type()
    elif isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
        _arithmetic(node)
    elif isinstance(node, exp.Avg) and not isinstance(node.parent, (exp.Window, exp.Filter)):
        _average(node, lambda agg: agg)
    elif isinstance(node, (exp.Coalesce, exp.Case)) or (
        isinstance(node, exp.If) and not isinstance(node.parent, exp.Case)
    ):
        _common_type(node)  # an If inside a Case is one of its WHEN branches, typed with the Case


def _num(node: exp.Expr | None) -> _Num | None:
    """The decimal (or integer) type of an annotated node, or None for any other type."""
    kind = getattr(node, "type", None)
    if not isinstance(kind, exp.DataType):
        return None
    if kind.this in _INTEGER_DIGITS:
        return _Num(_INTEGER_DIGITS[kind.this], 0, integer=True)
    if kind.this != _T.DECIMAL:
        return None
    params = [p for p in kind.expressions if isinstance(p, exp.DataTypeParam)]
    if len(params) != 2:
        return None
    return _Num(int(params[0].name), int(params[1].name))


def _literal_type(text: str) -> _Num | None:
    match = _DECIMAL_LITERAL.fullmatch(text)
    if match:
        whole, fraction = match.group(1).lstrip("0"), match.group(2)
        return _Num(max(len(whole) + len(fraction), 1), len(fraction))
    if text.isdigit():
        value = int(text)
        if value <= _INT32_MAX:
            return _Num(10, 0, integer=True)
        if value <= _INT64_MAX:
            return _Num(19, 0, integer=True)
        return _Num(len(text.lstrip("0")) or 1, 0)
    return None


def _type_column(column: exp.Column, scope: Scope) -> None:
    source = scope.sources.get(column.table)
    if not isinstance(source, Scope):
        return  # a base table: annotate_types typed it from the catalog
    query = source.expression
    if not isinstance(query, exp.Query):
        return
    for projection in query.selects:
        if projection.alias_or_name == column.name:
            if projection.type is not None and _num(projection) is not None:
                column.type = projection.type.copy()
            return


def _arithmetic(node: exp.Binary) -> None:
    left, right = _num(node.left), _num(node.right)
    if left is None or right is None or (left.integer and right.integer):
        return
    xp, xs, yp, ys = left.precision, left.scale, right.precision, right.scale
    scale = max(xs, ys)
    if isinstance(node, (exp.Add, exp.Sub)):
        result = _Num(min(MAX_PRECISION, 1 + scale + max(xp - xs, yp - ys)), scale)
        replacement: exp.Expr = _cast(node.copy(), result.data_type())
    elif isinstance(node, exp.Mul):
        if xs + ys > MAX_PRECISION:
            raise DecimalPlanError(f"NUMERIC_VALUE_OUT_OF_RANGE: the scale of {node.sql('athena')} exceeds 38")
        result = _Num(min(MAX_PRECISION, xp + yp), xs + ys)
        wide = exp.Mul(this=_widened(node.left, xs), expression=_widened(node.right, ys))
        replacement = _cast(wide, result.data_type())
    elif isinstance(node, exp.Mod):
        result = _Num(min(xp - xs, yp - ys) + scale, scale)
        replacement = _cast(node.copy(), result.data_type())
    else:
        result = _Num(min(MAX_PRECISION, xp + ys + max(0, ys - xs)), scale)
        replacement = _divide(node.left, left, node.right, right, result, node)
    replacement.type = result.data_type()
    node.replace(replacement)


def _cast(node: exp.Expr, to: exp.DataType) -> exp.Cast:
    return exp.Cast(this=node, to=to)


def _widened(node: exp.Expr, scale: int) -> exp.Expr:
    return _cast(node.copy(), _Num(MAX_PRECISION, scale).data_type())


_NARROW_DIGITS: Final = 18
"""Digits a BIGINT holds with room for the rounding step (`2 * n + |d|` stays below 2^63)."""


def _integer(value: int, kind: str) -> exp.Expr:
    return _cast(exp.Literal.number(value), data_type(kind, dialect="duckdb"))


def _unscaled_wide(node: exp.Expr, kind: _Num, shift: int) -> exp.Expr:
    """`node * 10^(scale + shift)` as a HUGEINT: its unscaled value, shifted left by `shift` places."""
    value: exp.Expr
    if kind.scale:
        scaled = exp.Mul(this=_widened(node, kind.scale), expression=_integer(10**kind.scale, "HUGEINT"))
        value = _cast(scaled, data_type("HUGEINT", dialect="duckdb"))
    else:
        value = _cast(node.copy(), data_type("HUGEINT", dialect="duckdb"))
    return exp.Mul(this=value, expression=_integer(10**shift, "HUGEINT")) if shift else value


def _unscaled_narrow(node: exp.Expr, kind: _Num, shift: int) -> exp.Expr:
    """The same as a BIGINT, for a value of at most 18 digits: whole and fractional parts apart, in 64-bit decimals.

    A value typed wider (a `decimal(38, s)` sum) is cast to `DECIMAL(18, s)` first: the caller checked that it fits.

    DuckDB's 128-bit arithmetic costs some twenty times its 64-bit arithmetic, and `decimal(18, s) * 10^s` would
    overflow its `DECIMAL(18, s)` result type. The powers of ten are plain literals: a BIGINT-typed factor would
    make DuckDB widen the fraction's product to a 128-bit DECIMAL(38, s).
    """
    bigint = data_type("BIGINT")
    value: exp.Expr
    if kind.scale:
        narrow = node.copy()
        if kind.precision > _NARROW_DIGITS:
            narrow = _cast(narrow, _Num(_NARROW_DIGITS, kind.scale).data_type())
        whole = exp.Anonymous(this="trunc", expressions=[narrow])
        fraction = exp.Paren(this=exp.Sub(this=narrow.copy(), expression=whole.copy()))
        unit = exp.Literal.number(10**kind.scale)
        value = exp.Add(
            this=exp.Mul(this=_cast(whole, bigint), expression=unit),
            expression=_cast(exp.Mul(this=fraction, expression=unit.copy()), bigint),
        )
    else:
        value = _cast(node.copy(), bigint)
    return exp.Mul(this=exp.Paren(this=value), expression=exp.Literal.number(10**shift)) if shift else value


def _divide(left: exp.Expr, lkind: _Num, right: exp.Expr, rkind: _Num, result: _Num, node: exp.Expr) -> exp.Expr:
    """`left / right` rounded HALF_UP at `result.scale`: `round(X * 10^(S + ys - xs) / Y)` on unscaled values.

    In BIGINTs when the operands' types guarantee they fit, else in HUGEINTs, except for the rows whose values fit
    (a sum typed `decimal(38, 2)` rarely needs 128 bits): those take the BIGINT path.
    """
    shift = result.scale + rkind.scale - lkind.scale
    if lkind.scale + shift > MAX_PRECISION or rkind.scale > MAX_PRECISION:
        raise DecimalPlanError(
            f"NOT_SUPPORTED: {node.sql('athena')} needs more than 38 digits to divide exactly in lakebox"
        )

    def quotient(unscaled: _Unscale, digits: int) -> exp.Expr:
        halves = exp.Anonymous(this=_DIVIDE, expressions=[unscaled(left, lkind, shift), unscaled(right, rkind, 0)])
        whole = _cast(halves, _Num(digits, 0).data_type())
        if not result.scale:
            return _cast(whole, result.data_type())
        unit = _cast(
            exp.Literal.string(f"0.{'0' * (result.scale - 1)}1"),
            _Num(min(result.scale + 1, MAX_PRECISION), result.scale).data_type(),
        )
        return _cast(exp.Mul(this=whole, expression=unit), result.data_type())

    if lkind.precision + shift <= _NARROW_DIGITS and rkind.precision <= _NARROW_DIGITS:
        return quotient(_unscaled_narrow, _NARROW_DIGITS)
    wide = quotient(_unscaled_wide, MAX_PRECISION)
    left_digits = _NARROW_DIGITS - shift - lkind.scale  # |left| < 10^left_digits keeps X * 10^shift in 18 digits
    if left_digits <= 0 or rkind.scale >= _NARROW_DIGITS:
        return wide
    fits = exp.and_(
        exp.LT(this=exp.Abs(this=left.copy()), expression=exp.Literal.number(10**left_digits)),
        exp.LT(this=exp.Abs(this=right.copy()), expression=exp.Literal.number(10 ** (_NARROW_DIGITS - rkind.scale))),
    )
    narrow = quotient(_unscaled_narrow, _NARROW_DIGITS)  # the rows that fit: cast down to DECIMAL(18, s) first
    return exp.Case(ifs=[exp.If(this=fits, true=narrow)], default=wide)


def _average(avg: exp.Avg, over: _Over, replace: exp.Expr | None = None) -> None:
    """Trino's `avg(decimal(p, s))` is `decimal(p, s)`, HALF_UP: the exact `sum / count`, then cast back."""
    arg = _num(avg.this)
    if arg is None or arg.integer or isinstance(avg.this, exp.Distinct):
        return
    total = over(exp.Sum(this=avg.this.copy()))
    count = over(exp.Count(this=avg.this.copy()))
    summed = _Num(MAX_PRECISION, arg.scale)
    counted = _Num(19, 0, integer=True)
    quotient = _divide(total, summed, count, counted, _Num(MAX_PRECISION, arg.scale), avg)
    replacement = _cast(quotient, arg.data_type())
    replacement.type = arg.data_type()
    (replace or avg).replace(replacement)


def _common_type(node: exp.Expr) -> None:
    """Trino's common super type of decimal branches: the most integer digits and the largest scale."""
    if isinstance(node, exp.Coalesce):
        branches = [node.this, *node.expressions]
    elif isinstance(node, exp.If):
        branches = [node.args.get("true"), node.args.get("false")]
    else:
        branches = [when.args.get("true") for when in node.args.get("ifs") or []] + [node.args.get("default")]
    kinds = [_num(b) for b in branches if b is not None and not isinstance(b, exp.Null)]
    if not kinds or any(k is None for k in kinds):
        return
    known = [k for k in kinds if k is not None]
    if all(k.integer for k in known):
        return
    scale = max(k.scale for k in known)
    digits = max(k.precision - k.scale for k in known)
    result = _Num(min(MAX_PRECISION, digits + scale), scale)
    replacement = _cast(node.copy(), result.data_type())
    replacement.type = result.data_type()
    node.replace(replacement)
