"""Trino functions DuckDB lacks or computes otherwise, installed on the engine's DuckDB database as macros and
Python functions; Java date-time patterns translated to strftime; the names of Trino's functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qsl, quote_plus, unquote_plus, urlsplit

import duckdb
from duckdb.func import SPECIAL

__all__ = ["TRINO_FUNCTIONS", "PatternError", "install", "java_format_to_printf", "java_to_strftime", "trino_type_name"]

PREFIX: Final = "__lb_"

_MACROS: Final = (
    # arr[i] as Trino evaluates it: 1-based, an error outside the array (element_at stays lenient)
    f"CREATE OR REPLACE MACRO {PREFIX}subscript(a, i) AS CASE "
    "WHEN a IS NULL OR i IS NULL THEN NULL "
    "WHEN i = 0 THEN error('SQL array indices start at 1') "
    "WHEN i < 0 THEN error(concat('Array subscript is negative: ', i)) "
    "WHEN i > len(a) THEN "
    "error(concat('Array subscript must be less than or equal to array length: ', i, ' > ', len(a))) "
    "ELSE a[i] END",
    # integer division and remainder: truncated toward zero, an error for a zero divisor (DuckDB answers NULL)
    f"CREATE OR REPLACE MACRO {PREFIX}idiv(a, b) AS CASE WHEN b = 0 THEN error('Division by zero') ELSE a // b END",
    f"CREATE OR REPLACE MACRO {PREFIX}imod(a, b) AS CASE WHEN b = 0 THEN error('Division by zero') ELSE a % b END",
    # width_bucket(x, bound1, bound2, n)
    f"CREATE OR REPLACE MACRO {PREFIX}width_bucket(x, b1, b2, n) AS CASE "
    "WHEN b1 = b2 THEN error('bounds cannot equal each other') "
    "WHEN b1 < b2 AND x < b1 THEN CAST(0 AS BIGINT) WHEN b1 < b2 AND x >= b2 THEN CAST(n + 1 AS BIGINT) "
    "WHEN b1 > b2 AND x > b1 THEN CAST(0 AS BIGINT) WHEN b1 > b2 AND x <= b2 THEN CAST(n + 1 AS BIGINT) "
    "ELSE CAST(floor((x - b1) / (b2 - b1) * n) + 1 AS BIGINT) END",
    # array_distinct keeps the first occurrence of each element, in order
    f"CREATE OR REPLACE MACRO {PREFIX}array_distinct(a) AS "
    "list_filter(a, lambda x, i: i = coalesce(list_position(a, x), "
    "list_position(list_transform(a, lambda y: y IS NULL), true)))",
    # split_part past the last field is NULL
    f"CREATE OR REPLACE MACRO {PREFIX}split_part(s, d, n) AS CASE WHEN n > len(string_split(s, d)) THEN NULL "
    "ELSE split_part(s, d, n) END",
    # json_array_contains(json, value): NULL unless the JSON is an array
    f"CREATE OR REPLACE MACRO {PREFIX}json_array_contains(j, v) AS CASE "
    "WHEN json_type(CAST(j AS JSON)) <> 'ARRAY' THEN NULL "
    "ELSE coalesce(list_bool_or(list_transform(CAST(CAST(j AS JSON) AS JSON[]), "
    "lambda e: json_type(e) NOT IN ('ARRAY', 'OBJECT', 'NULL') AND json_extract_string(e, '$') = CAST(v AS VARCHAR))), "
    "false) END",
    # m[k]: a missing key is an error
    f"CREATE OR REPLACE MACRO {PREFIX}key(m, k) AS CASE "
    "WHEN m IS NULL OR k IS NULL THEN NULL "
    "WHEN NOT map_contains(m, k) THEN error(concat('Key not present in map: ', k)) "
    "ELSE m[k] END",
    # slice(x, start, length): a negative start counts from the end, start 0 is an error
    f"CREATE OR REPLACE MACRO {PREFIX}slice(a, s, n) AS CASE "
    "WHEN s = 0 THEN error('SQL array indices start at 1') "
    "WHEN n < 0 THEN error(concat('length must be greater than or equal to 0')) "
    "WHEN s > 0 THEN list_slice(a, s, s + n - 1) "
    "WHEN len(a) + s < 0 THEN [] "
    "ELSE list_slice(a, len(a) + s + 1, len(a) + s + n) END",
    # any_match / all_match / none_match over the booleans a lambda gave: Trino's three-valued answers
    f"CREATE OR REPLACE MACRO {PREFIX}any_match(t) AS CASE "
    "WHEN t IS NULL THEN NULL WHEN list_bool_or(list_transform(t, lambda x: coalesce(x, false))) THEN true "
    "WHEN len(list_filter(t, lambda x: x IS NULL)) > 0 THEN NULL ELSE false END",
    f"CREATE OR REPLACE MACRO {PREFIX}all_match(t) AS CASE "
    "WHEN t IS NULL THEN NULL WHEN len(list_filter(t, lambda x: x = false)) > 0 THEN false "
    "WHEN len(list_filter(t, lambda x: x IS NULL)) > 0 THEN NULL ELSE true END",
    f"CREATE OR REPLACE MACRO {PREFIX}none_match(t) AS CASE "
    "WHEN t IS NULL THEN NULL WHEN list_bool_or(list_transform(t, lambda x: coalesce(x, false))) THEN false "
    "WHEN len(list_filter(t, lambda x: x IS NULL)) > 0 THEN NULL ELSE true END",
    # json_extract_scalar: NULL for an array or an object
    f"CREATE OR REPLACE MACRO {PREFIX}json_scalar(j, p) AS CASE "
    "WHEN json_type(CAST(j AS JSON), p) IN ('ARRAY', 'OBJECT') THEN NULL "
    "ELSE json_extract_string(CAST(j AS JSON), p) END",
    # split_to_map(text, entry delimiter, key-value delimiter)
    f"CREATE OR REPLACE MACRO {PREFIX}split_to_map(s, e, kv) AS CASE WHEN s IS NULL THEN NULL "
    "WHEN len(list_filter(string_split(s, e), lambda x: len(string_split(x, kv)) <> 2)) > 0 "
    "THEN error(concat('Key-value delimiter must appear exactly once in each entry. Bad input: ', "
    "list_filter(string_split(s, e), lambda x: len(string_split(x, kv)) <> 2)[1])) "
    "ELSE map_from_entries(list_transform(list_filter(string_split(s, e), lambda x: x <> ''), "
    "lambda x: struct_pack(k := split_part(x, kv, 1), v := split_part(x, kv, 2)))) END",
)

_DUCK_TO_TRINO: Final = (
    (re.compile(r"\bVARCHAR\b"), "varchar"),
    (re.compile(r"\bHUGEINT\b"), "bigint"),
    (re.compile(r"\bBIGINT\b"), "bigint"),
    (re.compile(r"\bINTEGER\b"), "integer"),
    (re.compile(r"\bSMALLINT\b"), "smallint"),
    (re.compile(r"\bTINYINT\b"), "tinyint"),
    (re.compile(r"\bDOUBLE\b"), "double"),
    (re.compile(r"\bFLOAT\b"), "real"),
    (re.compile(r"\bBOOLEAN\b"), "boolean"),
    (re.compile(r"\bDATE\b"), "date"),
    (re.compile(r"\bTIMESTAMP WITH TIME ZONE\b"), "timestamp(3) with time zone"),
    (re.compile(r"\bTIMESTAMP\b"), "timestamp(3)"),
    (re.compile(r"\bBLOB\b"), "varbinary"),
    (re.compile(r"\bINTERVAL\b"), "interval day to second"),
    (re.compile(r"\bJSON\b"), "json"),
    (re.compile(r"\bDECIMAL\((\d+),(\d+)\)"), r"decimal(\1,\2)"),
    (re.compile(r"\bNULL\b"), "unknown"),
)


def trino_type_name(duck: str) -> str:
    """Trino's name of a DuckDB type (``INTEGER[]`` is ``array(integer)``, ``STRUCT(a INTEGER)`` a ``row``)."""
    text = duck
    while text.endswith("[]"):
        text = f"ARRAY({text[:-2]})"
    text = re.sub(r"(\w+)\[\]", r"ARRAY(\1)", text)
    for pattern, name in _DUCK_TO_TRINO:
        text = pattern.sub(name, text)
    text = re.sub(r"\bARRAY\(", "array(", text)
    text = re.sub(r"\bMAP\(", "map(", text)
    text = re.sub(r"\bSTRUCT\(", "row(", text)
    return text


def _url_part(part: str) -> Callable[[str | None], str | None]:
    def extract(url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        value = {
            "protocol": parts.scheme,
            "host": parts.hostname or "",
            "path": parts.path,
            "query": parts.query,
            "fragment": parts.fragment,
        }[part]
        if part in {"query", "fragment"} and not value:
            return None if (("?" if part == "query" else "#") not in url) else ""
        return value

    return extract


def _url_port(url: str | None) -> int | None:
    if url is None:
        return None
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _url_parameter(url: str | None, name: str | None) -> str | None:
    if url is None or name is None:
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


def _url_encode(text: str) -> str:
    """Java's URLEncoder: a space is ``+``; letters, digits and ``.-*_`` stay."""
    return quote_plus(text, safe="*").replace("~", "%7E")


def _url_decode(text: str) -> str:
    return unquote_plus(text)


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the macros and Python functions on a DuckDB database (once per database)."""
    con.create_function(f"{PREFIX}trino_type", trino_type_name, ["VARCHAR"], "VARCHAR", side_effects=False)
    for part in ("protocol", "host", "path", "query", "fragment"):
        con.create_function(
            f"{PREFIX}url_{part}",
            _url_part(part),
            ["VARCHAR"],
            "VARCHAR",
            null_handling=SPECIAL,
        )
    con.create_function(f"{PREFIX}url_port", _url_port, ["VARCHAR"], "BIGINT", null_handling=SPECIAL)
    con.create_function(
        f"{PREFIX}url_parameter", _url_parameter, ["VARCHAR", "VARCHAR"], "VARCHAR", null_handling=SPECIAL
    )
    con.create_function(f"{PREFIX}url_encode", _url_encode, ["VARCHAR"], "VARCHAR")
    con.create_function(f"{PREFIX}url_decode", _url_decode, ["VARCHAR"], "VARCHAR")
    for macro in _MACROS:
        con.execute(macro)


# ------------------------------------------------------------ Java patterns

_JAVA_LETTERS: Final = {
    "yyyy": "%Y",
    "yy": "%y",
    "y": "%Y",
    "YYYY": "%G",
    "xxxx": "%Y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%-m",
    "dd": "%d",
    "d": "%-d",
    "DDD": "%j",
    "HH": "%H",
    "H": "%-H",
    "hh": "%I",
    "h": "%-I",
    "mm": "%M",
    "m": "%-M",
    "ss": "%S",
    "s": "%-S",
    "SSSSSS": "%f",
    "SSS": "%g",
    "a": "%p",
    "EEEE": "%A",
    "EEE": "%a",
    "E": "%a",
    "ZZ": "%z",
    "Z": "%z",
    "z": "%Z",
    "zzzz": "%Z",
    "ww": "%V",
    "w": "%V",
}


class PatternError(ValueError):
    """A Joda-Time pattern letter the local engine cannot translate."""


def java_to_strftime(pattern: str) -> str:
    """Translate a Joda-Time (Java) date-time pattern such as ``yyyy-MM-dd HH:mm`` to a strftime format.

    Raises
    ------
    PatternError
        For a letter run with no strftime equivalent (the message names it).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            end = pattern.find("'", i + 1)
            if end == i + 1:
                out.append("'")
                i += 2
                continue
            literal = pattern[i + 1 : end if end > 0 else len(pattern)]
            out.append(literal.replace("%", "%%"))
            i = (end + 1) if end > 0 else len(pattern)
            continue
        if c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            run = pattern[i:j]
            if run not in _JAVA_LETTERS:
                raise PatternError(f"the pattern letters {run!r}")
            out.append(_JAVA_LETTERS[run])
            i = j
            continue
        out.append("%%" if c == "%" else c)
        i += 1
    return "".join(out)


_JAVA_FORMAT: Final = re.compile(r"%(?P<flags>[-#+ 0,(]*)(?P<width>\d+)?(?:\.(?P<precision>\d+))?(?P<conv>[a-zA-Z%])")
_PRINTF_CONVERSIONS: Final = set("sdfxXoeEc%")


def java_format_to_printf(pattern: str) -> str:
    """Check a java.util.Formatter pattern (Trino's ``format``) maps onto DuckDB's printf and return it.

    Raises
    ------
    PatternError
        For argument indexes, the ``,`` flag, ``%n``, ``%b``, ``%t`` conversions and the like.
    """
    for match in _JAVA_FORMAT.finditer(pattern):
        conv, flags = match.group("conv"), match.group("flags")
        if "$" in pattern or conv not in _PRINTF_CONVERSIONS or "," in flags or "(" in flags:
            raise PatternError(f"the format specifier {match.group(0)!r}")
    return pattern


TRINO_FUNCTIONS: Final = frozenset(
    [
        "abs",
        "acos",
        "all_match",
        "any_match",
        "any_value",
        "approx_distinct",
        "approx_most_frequent",
        "approx_percentile",
        "approx_set",
        "arbitrary",
        "array_agg",
        "array_distinct",
        "array_except",
        "array_first",
        "array_histogram",
        "array_intersect",
        "array_join",
        "array_last",
        "array_max",
        "array_min",
        "array_position",
        "array_remove",
        "array_sort",
        "array_union",
        "arrays_overlap",
        "asin",
        "at_timezone",
        "atan",
        "atan2",
        "avg",
        "bar",
        "beta_cdf",
        "bit_count",
        "bitwise_and",
        "bitwise_and_agg",
        "bitwise_left_shift",
        "bitwise_not",
        "bitwise_or",
        "bitwise_or_agg",
        "bitwise_right_shift",
        "bitwise_right_shift_arithmetic",
        "bitwise_xor",
        "bool_and",
        "bool_or",
        "cardinality",
        "cast",
        "cbrt",
        "ceil",
        "ceiling",
        "checksum",
        "chr",
        "codepoint",
        "coalesce",
        "combinations",
        "concat",
        "concat_ws",
        "contains",
        "contains_sequence",
        "corr",
        "cos",
        "cosh",
        "cosine_distance",
        "cosine_similarity",
        "count",
        "count_if",
        "covar_pop",
        "covar_samp",
        "crc32",
        "cume_dist",
        "current_date",
        "current_time",
        "current_timestamp",
        "current_timezone",
        "current_user",
        "date",
        "date_add",
        "date_diff",
        "date_format",
        "date_parse",
        "date_trunc",
        "day",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "degrees",
        "dense_rank",
        "dow",
        "doy",
        "e",
        "element_at",
        "empty_approx_set",
        "ends_with",
        "every",
        "exp",
        "extract",
        "features",
        "filter",
        "first_value",
        "flatten",
        "floor",
        "format",
        "format_datetime",
        "format_number",
        "from_base",
        "from_base32",
        "from_base64",
        "from_base64url",
        "from_big_endian_32",
        "from_big_endian_64",
        "from_hex",
        "from_ieee754_32",
        "from_ieee754_64",
        "from_iso8601_date",
        "from_iso8601_timestamp",
        "from_iso8601_timestamp_nanos",
        "from_unixtime",
        "from_unixtime_nanos",
        "from_utf8",
        "geometric_mean",
        "greatest",
        "hamming_distance",
        "histogram",
        "hmac_md5",
        "hmac_sha1",
        "hmac_sha256",
        "hmac_sha512",
        "hour",
        "human_readable_seconds",
        "if",
        "index",
        "infinity",
        "inverse_beta_cdf",
        "inverse_normal_cdf",
        "is_finite",
        "is_infinite",
        "is_json_scalar",
        "is_nan",
        "json_array_contains",
        "json_array_get",
        "json_array_length",
        "json_extract",
        "json_extract_scalar",
        "json_format",
        "json_parse",
        "json_size",
        "kurtosis",
        "lag",
        "last_day_of_month",
        "last_value",
        "lead",
        "least",
        "length",
        "levenshtein_distance",
        "listagg",
        "ln",
        "localtime",
        "localtimestamp",
        "log",
        "log10",
        "log2",
        "lower",
        "lpad",
        "ltrim",
        "luhn_check",
        "map",
        "map_agg",
        "map_concat",
        "map_entries",
        "map_filter",
        "map_from_entries",
        "map_keys",
        "map_union",
        "map_values",
        "map_zip_with",
        "max",
        "max_by",
        "md5",
        "millisecond",
        "min",
        "min_by",
        "minute",
        "mod",
        "month",
        "multimap_agg",
        "multimap_from_entries",
        "murmur3",
        "nan",
        "ngrams",
        "none_match",
        "normal_cdf",
        "normalize",
        "now",
        "nth_value",
        "ntile",
        "nullif",
        "numeric_histogram",
        "parse_datetime",
        "parse_duration",
        "parse_data_size",
        "percent_rank",
        "pi",
        "position",
        "pow",
        "power",
        "quarter",
        "radians",
        "rand",
        "random",
        "rank",
        "reduce",
        "reduce_agg",
        "regexp_count",
        "regexp_extract",
        "regexp_extract_all",
        "regexp_like",
        "regexp_position",
        "regexp_replace",
        "regexp_split",
        "regr_intercept",
        "regr_slope",
        "repeat",
        "replace",
        "reverse",
        "round",
        "row_number",
        "rpad",
        "rtrim",
        "second",
        "sequence",
        "sha1",
        "sha256",
        "sha512",
        "shuffle",
        "sign",
        "sin",
        "sinh",
        "skewness",
        "slice",
        "soundex",
        "split",
        "split_part",
        "split_to_map",
        "split_to_multimap",
        "spooky_hash_v2_32",
        "spooky_hash_v2_64",
        "sqrt",
        "starts_with",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "strpos",
        "substr",
        "substring",
        "sum",
        "tan",
        "tanh",
        "timezone_hour",
        "timezone_minute",
        "to_base",
        "to_base32",
        "to_base64",
        "to_base64url",
        "to_big_endian_32",
        "to_big_endian_64",
        "to_char",
        "to_date",
        "to_hex",
        "to_ieee754_32",
        "to_ieee754_64",
        "to_iso8601",
        "to_milliseconds",
        "to_timestamp",
        "to_unixtime",
        "to_utf8",
        "transform",
        "transform_keys",
        "transform_values",
        "translate",
        "trim",
        "trim_array",
        "truncate",
        "try",
        "try_cast",
        "typeof",
        "upper",
        "url_decode",
        "url_encode",
        "url_extract_fragment",
        "url_extract_host",
        "url_extract_parameter",
        "url_extract_path",
        "url_extract_port",
        "url_extract_protocol",
        "url_extract_query",
        "uuid",
        "var_pop",
        "var_samp",
        "variance",
        "version",
        "week",
        "week_of_year",
        "width_bucket",
        "wilson_interval_lower",
        "wilson_interval_upper",
        "with_timezone",
        "word_stem",
        "xxhash64",
        "year",
        "year_of_week",
        "yow",
        "zip",
        "zip_with",
    ]
)
"""Trino's functions (its reference's list of functions and operators), the names strict mode accepts."""
