"""Reading one field of a JSON-string column (properties, traits, context) on any engine.

Spark's ``get_json_object`` is used by name; the DuckDB engine defines a macro of that name
over ``json_extract_string``. Both return the field as a string (null when absent), so cast
the result for numbers.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from tenure.errors import ValidationError


@ibis.udf.scalar.builtin  # type: ignore[untyped-decorator]
def get_json_object(doc: str, path: str) -> str:  # type: ignore[empty-body]
    """The value at a JSONPath such as ``$.category``, as a string."""


def json_field(column: ir.StringValue, key: str) -> ir.StringValue:
    """The top-level ``key`` of a JSON object held in ``column``, as a string."""
    if not key or not key.replace("_", "").replace("-", "").isalnum():
        raise ValidationError("property", f"{key!r} must be letters, digits, '_' or '-'")
    result: ir.StringValue = get_json_object(column, f"$.{key}")
    return result
