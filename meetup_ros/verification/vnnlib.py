"""VNN-LIB reader: the file describes the UNSAFE set over inputs ``X_i`` and outputs ``Y_j``.

Supported: ``(declare-const X_i Real)``/``(declare-const Y_j Real)``, ``(assert F)`` where F
is built from ``and``, ``or``, and ``<=``/``>=``/``<``/``>`` between linear terms (numbers,
variables, ``(+ ...)``, ``(- ...)``, ``(* number term)``). All asserts are conjoined and turned
into disjunctive normal form; in each disjunct the atoms over inputs must be bounds on one
input (``X_i <= c``), the atoms over outputs become the linear conjunction. Strict and
non-strict comparisons are both read as non-strict (a closed unsafe set), which is the
conservative reading for "unsat". Errors name the line.

Numbers are decimals read exactly (``fractions.Fraction``) and the arithmetic of the linear
terms is exact; only the results become float64, rounded outward: an input bound ``0.03 X_0
>= 0.9`` is X_0 >= 30, not >= 30.000000000000004 (which emptied a tester's box and made its
one unsafe point "unsat"), and an output constraint's right-hand side is rounded up, so the
unsafe set read contains the one written. An output constraint is first scaled to integer
coefficients (by the least common denominator, then divided by their greatest common
divisor: 0.1 Y_0 <= 0.3 is Y_0 <= 3), which float64 holds exactly up to 2^53; a constraint
whose coefficients need more is refused rather than rounded (a tester's
1.0000000000000001 Y_1, read as Y_1, hid an unsafe point).

Each disjunct also keeps its atoms as written (:class:`spec.ExactDisjunct`: exact rationals,
strict ones strict). The proof reads the rounded set; a counterexample must lie in the
written one (a tester's Y_0 <= 0.99999999999999999999, read as Y_0 <= 1, was "sat" at
y = 1.0, and Y_0 < 1 would have been too).
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from meetup_ros.verification import VerificationInputError, exact, require_file
from meetup_ros.verification.spec import Disjunct, ExactDisjunct, ExactRow, Property

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_MAX_DISJUNCTS = 10_000
# Bits of a numerator or denominator (about 4900 digits). Only products make exact values
# grow (decimal sums keep the largest denominator), and a product of 6000 factors of 1e300
# took 87 s to read: any value past this is refused where the product reaches it.
_MAX_BITS = 16_384
_Linear = tuple[dict[str, Fraction], Fraction]


@dataclass
class _Node:
    """An s-expression: atom ``text`` or list ``items``, with its line."""

    line: int
    text: str | None = None
    items: list[_Node] | None = None


# an atom ``sum coeffs * v <= const`` (``<`` if strict), with its node for error lines
_Atom = tuple[_Node, dict[str, Fraction], Fraction, bool]


def _tokenise(text: str, source: str) -> list[tuple[str, int]]:
    tokens: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split(";", 1)[0]
        tokens.extend((m.group(0), lineno) for m in _TOKEN.finditer(line))
    return tokens


def _parse(tokens: list[tuple[str, int]], source: str) -> list[_Node]:
    stack: list[_Node] = []
    top: list[_Node] = []
    for tok, line in tokens:
        if tok == "(":
            stack.append(_Node(line, items=[]))
        elif tok == ")":
            if not stack:
                raise VerificationInputError(f"{source!r} line {line}: unbalanced ')'")
            node = stack.pop()
            (stack[-1].items if stack else top).append(node)  # type: ignore[union-attr]
        else:
            if not stack:
                raise VerificationInputError(
                    f"{source!r} line {line}: {tok!r} outside parentheses")
            stack[-1].items.append(_Node(line, text=tok))  # type: ignore[union-attr]
    if stack:
        raise VerificationInputError(
            f"{source!r} line {stack[-1].line}: '(' never closed")
    return top


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.inputs: dict[str, int] = {}
        self.outputs: dict[str, int] = {}

    def fail(self, node: _Node, what: str) -> VerificationInputError:
        return VerificationInputError(f"{self.source!r} line {node.line}: {what}")

    def declare(self, node: _Node) -> None:
        items = node.items or []
        if len(items) == 3 and items[2].text == "Int":
            # an integer input would make the box a lattice: reading it as Real gave a
            # tester's "sat" at X_0 = 0.5 where no integer violates the property
            raise self.fail(node, f"{items[1].text!r} is declared Int; only Real variables "
                                  "are supported")
        if (len(items) != 3 or items[1].text is None or items[2].text != "Real"):
            raise self.fail(node, "expected (declare-const NAME Real)")
        name = items[1].text
        m = re.fullmatch(r"([XY])_(\d+)", name)
        if m is None:
            raise self.fail(node, f"variable {name!r}; expected X_<i> or Y_<j>")
        table = self.inputs if m.group(1) == "X" else self.outputs
        if name in table:
            raise self.fail(node, f"variable {name!r} declared twice")
        table[name] = int(m.group(2))

    def linear(self, node: _Node) -> _Linear:
        """A term -> ({variable: coefficient}, constant), exactly."""
        if node.text is not None:
            if node.text in self.inputs or node.text in self.outputs:
                return {node.text: Fraction(1)}, Fraction(0)
            try:
                return {}, exact.read_decimal(node.text)
            except exact.NotADecimalError:
                raise self.fail(node, f"unknown variable or number {node.text!r} (numbers are "
                                      "ASCII decimals such as -0.5 or 1e-3)") from None
            except exact.ExactError as exc:
                raise self.fail(node, str(exc)) from None
        items = node.items or []
        if not items or items[0].text not in ("+", "-", "*"):
            raise self.fail(node, "expected a number, a variable, (+ ...), (- ...) or (* c t)")
        op = items[0].text
        parts = [self.linear(it) for it in items[1:]]
        if not parts:
            raise self.fail(node, f"({op}) without operands")
        if op == "+":
            return self._sum(parts, [1] * len(parts))
        if op == "-":
            if len(parts) == 1:
                return self._sum(parts, [-1])
            return self._sum(parts, [1] + [-1] * (len(parts) - 1))
        constants = [p for p in parts if not p[0]]
        terms = [p for p in parts if p[0]]
        if len(terms) > 1:
            raise self.fail(node, "product of variables is not linear")
        scale = Fraction(1)
        for _, c in constants:
            scale = self._bounded(node, scale * c)
        if not terms:
            return {}, scale
        coeffs, const = terms[0]
        return ({k: self._bounded(node, v * scale) for k, v in coeffs.items()},
                self._bounded(node, const * scale))

    def _bounded(self, node: _Node, value: Fraction) -> Fraction:
        if max(value.numerator.bit_length(), value.denominator.bit_length()) > _MAX_BITS:
            raise self.fail(node, f"a product whose exact value needs more than {_MAX_BITS} "
                                  "bits; too many digits")
        return value

    @staticmethod
    def _sum(parts: list[_Linear], signs: list[int]) -> _Linear:
        coeffs: dict[str, Fraction] = {}
        const = Fraction(0)
        for (c, k), s in zip(parts, signs, strict=True):
            for name, v in c.items():
                coeffs[name] = coeffs.get(name, Fraction(0)) + s * v
            const += s * k
        return coeffs, const

    def conjoin(self, node: _Node, left: list[list[_Atom]], right: list[list[_Atom]]
                ) -> list[list[_Atom]]:
        """DNF of (left and right), refused before it is built if it would pass the cap (two
        asserts of 3000-way ``or`` built 9 million lists, 1.2 GB, before the check)."""
        if len(left) * len(right) > _MAX_DISJUNCTS:
            raise self.fail(node, f"more than {_MAX_DISJUNCTS} disjuncts in DNF "
                                  f"({len(left)} x {len(right)})")
        return [a + b for a, b in itertools.product(left, right)]

    def formula(self, node: _Node) -> list[list[_Atom]]:
        """DNF: list of conjunctions of atoms ``sum coeffs * v <= const``."""
        if node.text is not None:
            raise self.fail(node, f"{node.text!r} is not a formula; expected (<= a b), "
                                  "(>= a b), (< a b), (> a b), (and ...) or (or ...)")
        items = node.items or []
        head = items[0].text if items else None
        if head == "and":
            result: list[list[_Atom]] = [[]]
            for sub in items[1:]:
                result = self.conjoin(node, result, self.formula(sub))
            return result
        if head == "or":
            if len(items) == 1:  # false: the property would hold vacuously, surely a slip
                raise self.fail(node, "(or) with no operands")
            out: list[list[_Atom]] = []
            for sub in items[1:]:
                out.extend(self.formula(sub))
                if len(out) > _MAX_DISJUNCTS:
                    raise self.fail(node, f"more than {_MAX_DISJUNCTS} disjuncts in DNF")
            return out
        if head in ("<=", ">=", "<", ">"):
            if len(items) != 3:
                raise self.fail(node, f"({head} a b) needs two operands, got {len(items) - 1}")
            lc, lk = self.linear(items[1])
            rc, rk = self.linear(items[2])
            zero = Fraction(0)
            strict = head in ("<", ">")
            if head in ("<=", "<"):  # l - r <= rk - lk
                coeffs = self._sum([(lc, zero), (rc, zero)], [1, -1])[0]
                return [[(node, coeffs, rk - lk, strict)]]
            coeffs = self._sum([(rc, zero), (lc, zero)], [1, -1])[0]
            return [[(node, coeffs, lk - rk, strict)]]
        raise self.fail(node, f"unsupported formula head {head!r}; expected and, or, <=, >=, <, >")


def parse_vnnlib(text: str, source: str = "<string>") -> Property:
    """Parse VNN-LIB text into a :class:`Property` (see the module docstring)."""
    try:
        return _parse_vnnlib(text, source)
    except RecursionError:  # the reader recurses on nested terms
        raise VerificationInputError(
            f"{source!r}: terms or formulas nested too deeply to read") from None


def _parse_vnnlib(text: str, source: str) -> Property:
    reader = _Reader(source)
    asserts: list[_Node] = []
    for node in _parse(_tokenise(text, source), source):
        items = node.items or []
        head = items[0].text if items else None
        if head == "declare-const":
            reader.declare(node)
        elif head == "assert":
            if len(items) != 2:
                raise reader.fail(node, "expected (assert FORMULA)")
            asserts.append(items[1])
        else:
            raise reader.fail(node, f"unsupported command {head!r}; expected declare-const or "
                                    "assert")
    n_in, n_out = len(reader.inputs), len(reader.outputs)
    for table, letter in ((reader.inputs, "X"), (reader.outputs, "Y")):
        if sorted(table.values()) != list(range(len(table))):
            raise VerificationInputError(
                f"{source!r}: {letter} variables {sorted(table)!r} are not {letter}_0..{letter}_k")
    if n_in == 0 or n_out == 0:
        raise VerificationInputError(f"{source!r}: declares {n_in} inputs and {n_out} outputs; "
                                     "expected at least one of each")
    if not asserts:
        raise VerificationInputError(f"{source!r}: no assert")
    dnf: list[list[_Atom]] = [[]]
    for a in asserts:
        dnf = reader.conjoin(a, dnf, reader.formula(a))
    disjuncts = []
    for conj in dnf:
        d = _disjunct(reader, conj)
        if d is not None:
            disjuncts.append(d)
    if not disjuncts:
        # Every disjunct is empty: nothing is unsafe. Keep one empty box so callers see "unsat".
        logger.warning("%s: every input box of the property is empty (a lower bound above its "
                       "upper bound?): nothing can violate it, so the answer is unsat by "
                       "construction", source)
        disjuncts.append(Disjunct(np.ones(n_in), np.zeros(n_in), np.zeros((1, n_out)),
                                  np.zeros(1)))
    return Property(tuple(disjuncts), n_in, n_out,
                    tuple(f"X_{i}" for i in range(n_in)), tuple(f"Y_{j}" for j in range(n_out)),
                    source)


def _disjunct(reader: _Reader, conj: list[_Atom]) -> Disjunct | None:
    """One conjunction as a :class:`Disjunct` (rounded outward, strict read as non-strict,
    for proofs) with its written form beside it (for counterexamples); None if empty."""
    n_in, n_out = len(reader.inputs), len(reader.outputs)
    lower = np.full(n_in, -np.inf)
    upper = np.full(n_in, np.inf)
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    exact_in: list[ExactRow] = []
    exact_out: list[ExactRow] = []
    for node, coeffs, const, strict in conj:
        coeffs = {k: v for k, v in coeffs.items() if v != 0}
        xs = [k for k in coeffs if k in reader.inputs]
        ys = [k for k in coeffs if k in reader.outputs]
        if xs and ys:
            raise reader.fail(node, "constraint mixes inputs and outputs; unsupported")
        if xs:
            if len(xs) != 1:
                raise reader.fail(node, "constraint over several inputs; only bounds on one "
                                        "input are supported")
            i, coef = reader.inputs[xs[0]], coeffs[xs[0]]
            bound = const / coef  # exact; rounded outward, the box can only grow
            try:
                if coef > 0:
                    upper[i] = min(upper[i], exact.float_out(bound, up=True))
                else:
                    lower[i] = max(lower[i], exact.float_out(bound, up=False))
            except OverflowError:
                raise reader.fail(node, "bound beyond the float64 range") from None
            exact_in.append(ExactRow(((i, coef),), const, strict))
        elif ys:
            row, read_rhs = _output_row(reader, node, coeffs, const)
            rows.append(row)
            rhs.append(read_rhs)
            exact_out.append(ExactRow(tuple((reader.outputs[k], v) for k, v in coeffs.items()),
                                      const, strict))
        elif const < 0:
            return None  # a constant false atom (0 <= negative): no point satisfies it
        elif strict and const == 0:  # 0 < 0: read as 0 <= 0 (true), false as written
            exact_out.append(ExactRow((), const, strict))
    if np.any(lower > upper):
        return None  # an empty disjunct cannot be violated
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise VerificationInputError(
            f"{reader.source!r}: a disjunct leaves inputs "
            f"{np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper)).tolist()!r} "
            "unbounded; expected a bounded input box")
    if not rows:  # no output constraint: every output is unsafe
        rows, rhs = [np.zeros(n_out)], [0.0]
    return Disjunct(lower, upper, np.array(rows), np.array(rhs),
                    ExactDisjunct(tuple(exact_in), tuple(exact_out)))


def _output_row(reader: _Reader, node: _Node, coeffs: dict[str, Fraction], const: Fraction
                ) -> tuple[np.ndarray, float]:
    """``coeffs @ y <= const`` with exact integer coefficients, the bound rounded up."""
    try:
        return exact.integer_row({reader.outputs[k]: v for k, v in coeffs.items()}, const,
                                 len(reader.outputs))
    except exact.ExactError as exc:
        raise reader.fail(node, str(exc)) from None


def load_vnnlib(path: str | Path) -> Property:
    """Read a ``.vnnlib`` file.

    Raises:
        VerificationInputError: missing file or malformed/unsupported content (names the line).
    """
    path = require_file(path, "property file")
    # VNN-LIB is ASCII; some files carry Latin-1 comments. Undecodable bytes become U+FFFD,
    # which the tokeniser rejects with its line number unless they sit in a comment.
    raw = path.read_bytes()
    head = raw[:256]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(head) >= 8 and (not head[0::2].strip(b"\x00") or not head[1::2].strip(b"\x00"))):
        raise VerificationInputError(f"property file {str(path)!r} looks like UTF-16 text (a "
                                     "byte-order mark, or every other byte NUL); VNN-LIB is "
                                     "ASCII")
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a UTF-8 BOM
    return parse_vnnlib(text, str(path))
