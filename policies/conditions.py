"""Policy conditions: the ABAC expression in the last field of a ``p`` line of ``policy.csv``.

A condition is a casbin expression over the request:

- ``r.attrs.NAME``: a request attribute (a string, number or boolean);
- ``r.sub``, ``r.dom``, ``r.obj``, ``r.act``: the request's subject, domain, object and action;
- constants: ``'text'``, ``12``, ``-0.5``, ``true``, ``false``, and after ``in`` a list of
  constants in brackets, ``('a', 'b')`` or ``['a']``;
- ``level(x)``: the rank of a data classification name, public < internal < confidential <
  restricted (used to compare a clearance with a classification);
- comparisons ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and ``in``, combined with ``&&``,
  ``||`` and parentheses.

Missing attributes never raise. A comparison that involves a missing attribute (or ``level()`` of
something that is not a classification name) is false whatever its operator, ``!=`` included, and
so is an ordering of values that cannot be ordered (``'a' < 1``). Negation (``!``) is not part of
the language: it would turn such a false comparison into a true condition.

The same text is evaluated by plain pycasbin (``eval(p.cond)`` in ``model.conf``, with
:data:`CASBIN_FUNCTIONS` registered and the attributes passed as an :class:`AttributeView`) and
by the engine, which compiles it once into closures. Both rewrite the text the way pycasbin does
(``r.`` to ``r_``, ``&&`` to ``and``, ...) and compare the same wrapped values with the same
operators, so they always agree.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from policies.decisions import AuthzRequest
from policies.vocabulary import CLASSIFICATIONS

Condition = Callable[[AuthzRequest], bool]
"""A compiled condition: whether it holds for a request."""

_Comparison = Callable[[Any, Any], object]

MAX_CONDITION_LENGTH: Final = 2000

_ABSENT: Final = object()
_REQUEST_FIELDS: Final = {
    "r_sub": "subject",
    "r_dom": "domain",
    "r_obj": "object",
    "r_act": "action",
}
_ATTRIBUTE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Attribute names pycasbin's evaluator (simpleeval) refuses to read.
_REFUSED_ATTRIBUTE_NAMES: Final = frozenset(
    {"format", "format_map", "mro", "tb_frame", "gi_frame", "ag_frame", "cr_frame", "exec"}
)
_COMPARISONS: Final[Mapping[type[ast.cmpop], _Comparison]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ORDERINGS: Final = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


class _Value:
    """A value as conditions compare it: never raises, and a missing value equals nothing."""

    __slots__ = ("_raw",)

    def __init__(self, raw: object) -> None:
        self._raw = raw

    def __repr__(self) -> str:
        return "missing" if self._raw is _ABSENT else repr(self._raw)

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)

    def __ne__(self, other: object) -> bool:
        return self._compare(other, operator.ne)

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)

    def _compare(self, other: object, compare: _Comparison) -> bool:
        theirs = _unwrap(other)
        if self._raw is _ABSENT or theirs is _ABSENT:
            return False
        try:
            return bool(compare(self._raw, theirs))
        except TypeError:
            return False


_MISSING: Final = _Value(_ABSENT)
_LEVELS: Final = {name: _Value(rank) for rank, name in enumerate(CLASSIFICATIONS)}


def _unwrap(value: object) -> object:
    return value._raw if isinstance(value, _Value) else value


def level(value: object) -> _Value:
    """The rank of a classification name (public is 0); missing for anything else."""
    raw = _unwrap(value)
    return _LEVELS.get(raw, _MISSING) if isinstance(raw, str) else _MISSING


class AttributeView:
    """Request attributes as pycasbin's evaluator reads them (``r.attrs.NAME``).

    Every public attribute name is data: a name the request does not carry reads as missing
    instead of raising, and no method can shadow an attribute.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> _Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Value(self._values.get(name, _ABSENT))

    def __repr__(self) -> str:
        return f"AttributeView({dict(self._values)!r})"


CASBIN_FUNCTIONS: Final[Mapping[str, object]] = {"level": level, "true": True, "false": False}
"""What an enforcer registers with ``add_function`` for conditions to evaluate in pycasbin.

pycasbin resolves a name it does not know (``true``) through its function map, so the two
boolean constants are registered there next to ``level``.
"""


def compile_condition(text: str) -> Condition:
    """Validate a condition and compile it for the engine.

    Raises:
        ValueError: the condition is not in the condition language; the message says why.
    """
    if not text:
        raise ValueError("the condition is empty (write `true` for an unconditional rule)")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ValueError(f"the condition is longer than {MAX_CONDITION_LENGTH} characters")
    try:
        tree = ast.parse(as_python(text), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"the condition {text!r} is not a valid expression ({exc.msg})") from None
    try:
        return _condition(tree.body)
    except ValueError as exc:
        raise ValueError(f"the condition {text!r}: {exc}") from None


def as_python(text: str) -> str:
    """The Python expression pycasbin evaluates for a condition (its own rewriting, mirrored)."""
    for prefix in ("p", "r"):
        found = re.search(rf"\b{prefix}(\d*)\.", text)
        if found is not None:
            suffix = found.group(1)
            text = re.sub(rf"\b{prefix}{suffix}\.", f"{prefix}{suffix}_", text)
    text = text.replace("&&", "and").replace("||", "or")
    return re.sub(r"!(?!=)", "not ", text)


def _condition(node: ast.expr) -> Condition:
    if isinstance(node, ast.BoolOp):
        parts = tuple(_condition(value) for value in node.values)
        return _all_of(parts) if isinstance(node.op, ast.And) else _any_of(parts)
    if isinstance(node, ast.Compare):
        return _comparison(node)
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        constant = node.id == "true"
        return lambda _request: constant
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        raise ValueError(
            "negation (!) is not supported: it would make a comparison on a missing attribute "
            "true; compare with != instead"
        )
    raise ValueError(
        f"{ast.unparse(node)!r} is not a condition: use comparisons joined by && and ||, "
        "or true/false"
    )


def _all_of(parts: tuple[Condition, ...]) -> Condition:
    def holds(request: AuthzRequest) -> bool:
        return all(part(request) for part in parts)

    return holds


def _any_of(parts: tuple[Condition, ...]) -> Condition:
    def holds(request: AuthzRequest) -> bool:
        return any(part(request) for part in parts)

    return holds


_Operand = Callable[[AuthzRequest], object]


def _comparison(node: ast.Compare) -> Condition:
    if any(isinstance(op, ast.In) for op in node.ops):
        return _membership(node)
    operands = [node.left, *node.comparators]
    getters = [_operand(operand) for operand in operands]
    steps: list[tuple[_Comparison, _Operand, _Operand]] = []
    for position, op in enumerate(node.ops):
        compare = _COMPARISONS.get(type(op))
        if compare is None:
            raise ValueError(f"the operator {type(op).__name__} is not supported")
        left, right = operands[position], operands[position + 1]
        if isinstance(op, _ORDERINGS) and not (_is_wrapped(left) or _is_wrapped(right)):
            raise ValueError(
                f"{ast.unparse(left)} and {ast.unparse(right)} cannot be ordered: one side of "
                "<, <=, > or >= must be an attribute (r.attrs.NAME) or level(...)"
            )
        steps.append((compare, getters[position], getters[position + 1]))
    if len(steps) == 1:
        compare, left_value, right_value = steps[0]

        def single(request: AuthzRequest) -> bool:
            return bool(compare(left_value(request), right_value(request)))

        return single

    def chain(request: AuthzRequest) -> bool:
        return all(compare(left(request), right(request)) for compare, left, right in steps)

    return chain


def _membership(node: ast.Compare) -> Condition:
    if len(node.ops) != 1:
        raise ValueError("`in` cannot be chained with other comparisons")
    collection = node.comparators[0]
    if not isinstance(collection, ast.Tuple | ast.List):
        raise ValueError(
            f"the right side of `in` must be a list of constants such as ('a', 'b') or ['a'], "
            f"not {ast.unparse(collection)}"
        )
    values = tuple(_constant(element) for element in collection.elts)
    value = _operand(node.left)

    def member(request: AuthzRequest) -> bool:
        return value(request) in values

    return member


def _is_wrapped(node: ast.expr) -> bool:
    """Whether an operand evaluates to a :class:`_Value` (so ordering it never raises)."""
    return isinstance(node, ast.Attribute | ast.Call)


def _operand(node: ast.expr) -> _Operand:
    if isinstance(node, ast.Attribute):
        return _attribute(node)
    if isinstance(node, ast.Name) and node.id in _REQUEST_FIELDS:
        field = _REQUEST_FIELDS[node.id]
        return operator.attrgetter(field)
    if isinstance(node, ast.Call):
        return _level_call(node)
    constant = _constant(node)
    return lambda _request: constant


def _attribute(node: ast.Attribute) -> _Operand:
    if not (isinstance(node.value, ast.Name) and node.value.id == "r_attrs"):
        raise ValueError(f"{ast.unparse(node)} is not a request attribute (r.attrs.NAME)")
    name = node.attr
    if not _ATTRIBUTE_NAME.fullmatch(name) or name.startswith("func_"):
        raise ValueError(f"attribute names start with a letter: {name!r}")
    if name in _REFUSED_ATTRIBUTE_NAMES:
        raise ValueError(f"pycasbin cannot read an attribute named {name!r}")

    def value(request: AuthzRequest) -> _Value:
        return _Value(request.attributes.get(name, _ABSENT))

    return value


def _level_call(node: ast.Call) -> _Operand:
    if not (isinstance(node.func, ast.Name) and node.func.id == "level"):
        raise ValueError(f"{ast.unparse(node.func)}() is not a condition function (only level)")
    if len(node.args) != 1 or node.keywords:
        raise ValueError("level() takes exactly one argument")
    argument = _operand(node.args[0])
    return lambda request: level(argument(request))


def _constant(node: ast.expr) -> object:
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return node.id == "true"
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
    ):
        number = _constant(node.operand)
        if isinstance(number, int | float):
            return -number
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str | int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    raise ValueError(
        f"{ast.unparse(node)} is not an operand: use r.attrs.NAME, r.sub, r.dom, r.obj, r.act, "
        "level(...), a string, a number, true or false"
    )
