"""The filter grammar (a subset of Milvus' boolean expressions): what parses to what, and typed errors."""

from __future__ import annotations

import pytest

from recsys import InvalidRequest
from recsys.exceptions import InvalidFilter
from recsys.serving._filter_grammar import And, Compare, Member, Not, Or, parse_filter


def test_parses_the_milvus_subset():
    assert parse_filter('genre == "Comedy" and year >= 1990') == And((
        Compare("genre", "==", "Comedy", 0), Compare("year", ">=", 1990, 22)))
    assert parse_filter("genre in ['Comedy', \"Drama\"]") == Member("genre", ("Comedy", "Drama"), False, 0)
    assert parse_filter("in_stock == true") == Compare("in_stock", "==", True, 0)
    assert parse_filter("x NOT IN [1, -2.5e1]") == Member("x", (1, -25.0), True, 0)
    assert parse_filter("1990 <= year < 2000") == And((Compare("year", ">=", 1990, 8), Compare("year", "<", 2000, 8)))
    assert parse_filter("5 > rating") == Compare("rating", "<", 5, 4)
    assert parse_filter('!(a != "x") || b > 1 && c < 2') == Or((
        Not(Compare("a", "!=", "x", 2)), And((Compare("b", ">", 1, 15), Compare("c", "<", 2, 24)))))
    assert parse_filter(r'title == "say \"hi\""') == Compare("title", "==", 'say "hi"', 0)


@pytest.mark.parametrize(("expression", "message"), [
    ("genre = 'Comedy'", "'=' at position 6"),
    ("genre == ", "expected a value .* at position 9"),
    ("(a == 1", "expected '\\)' at position 7"),
    ("a == 1 b == 2", "position 7, found 'b'"),
    ("a == b", "expected a value .* position 5, found 'b'"),
    ("1 < a > 2", "range .* position 6"),
    ("a in 1", "'\\[' .* position 5"),
    ("a in [1,", "position 8, found the end"),
    ('"abc', "unterminated string starting at position 0"),
    ("a == 'x\\q'", "unknown escape"),
    ("and == 1", "field name at position 0"),
    ("not a == 1", "'\\(' after 'not' .* at position 4"),
    ("a == 1 ; drop", "unexpected character ';' at position 7"),
    ("__import__('os')", "comparison .* after field '__import__'"),
    ("", "empty"),
    ("(" * 100 + "a == 1" + ")" * 100, "nests deeper"),
    # issue 28, items 12, 15 and 18: a 5,000-digit literal gave a raw ValueError (Python's int digit limit),
    # Unicode digits parsed (Milvus refuses them), and terms and lists were unbounded (seconds per request)
    ("year == " + "9" * 5000, "number at position 8 has 5000 characters"),
    ("year > 1e400", "beyond float64's range"),
    ("year == \u0661\u0669\u0669\u0664", "unexpected character '\u0661' at position 8"),
    ("year ==\u20031994", "unexpected character"),
    (" or ".join(f"year == {y}" for y in range(1900, 1965)), "more than 64 comparisons .* position 1024"),
    ("year in [" + ",".join(["7"] * 4097) + "]", "list of field 'year' at position 0 has more than 4096"),
])
def test_bad_expressions_are_typed_errors_naming_the_token(expression, message):
    with pytest.raises(InvalidFilter, match=message) as info:
        parse_filter(expression)
    assert isinstance(info.value, InvalidRequest) and isinstance(info.value, ValueError)


def test_the_bounds_themselves_are_accepted():
    assert len(parse_filter(" or ".join(f"year == {y}" for y in range(64))).parts) == 64
    assert len(parse_filter("year in [" + ",".join(["7"] * 4096) + "]").values) == 4096
    assert parse_filter("year == " + "9" * 32).value == int("9" * 32)


def test_a_filter_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidFilter, match="expression string, got list"):
        parse_filter(["genre == 1"])  # type: ignore[arg-type]
