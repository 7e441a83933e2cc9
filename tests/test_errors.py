"""`overture.errors.invalid_filter`: the one translation of a filter error to a 422 naming the field."""

from __future__ import annotations

import pytest

from overture.core.filters import FilterError, parse
from overture.errors import Invalid, invalid_filter


def _error(raw: object, root: str = "filter") -> FilterError:
    with pytest.raises(FilterError) as exc:
        parse(raw, root=root)
    return exc.value


def test_invalid_filter__path_from_the_parser__422_naming_it() -> None:
    exc = _error({"all": [{"field": "a", "operator": "is", "value": 1}, {"field": "b", "operator": "eq"}]})
    error = invalid_filter(exc)
    assert isinstance(error, Invalid) and error.status_code == 422
    assert error.field == "filter.all[1].operator"
    assert error.message.startswith("filter.all[1].operator: unknown operator 'eq'")
    assert error.to_dict()["field"] == "filter.all[1].operator"


def test_invalid_filter__prefix_roots_the_path_in_the_request() -> None:
    exc = _error([{"field": "a", "operator": "gt"}], root="filters")
    error = invalid_filter(exc, prefix="audiences[0]")
    assert error.field == "audiences[0].filters[0].value"
    assert error.message.startswith("audiences[0].filters[0].value: ")


@pytest.mark.parametrize(
    ("path", "prefix", "field", "message"),
    [
        ("", None, None, "bad"),
        ("", "audience.filter", "audience.filter", "audience.filter: bad"),
        ("filter.not", None, "filter.not", "filter.not: bad"),
        ("filter.not", "", "filter.not", "filter.not: bad"),
    ],
)
def test_invalid_filter__empty_parts(path: str, prefix: str | None, field: str | None, message: str) -> None:
    error = invalid_filter(FilterError(path, "bad"), prefix=prefix)
    assert (error.field, error.message) == (field, message)
