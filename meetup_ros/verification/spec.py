"""Properties: input boxes and an unsafe output set as a disjunction of linear conjunctions.

A :class:`Property` is a tuple of :class:`Disjunct` s; each has an input box
``lower <= x <= upper`` and a conjunction ``coeffs @ y <= rhs`` (all rows) over the
network's outputs ``y``. The property is violated iff some input in some disjunct's box
maps into that disjunct's conjunction; "unsat" means no such input exists.

YAML form (``load_property_yaml``), keys exactly these (unknown keys are rejected)::

    inputs: [forward_speed_mps, lateral_speed_mps, vertical_speed_mps,
             yaw_rate_radps, nearest_depth_m]          # names, in network input order
    outputs: [continue, slow, stop]                     # names, in network output order
    domain:                                             # where the property applies
      lower: [0.5, .nan, .nan, .nan, .nan]              # .nan / null / -.inf = unbounded
      upper: [.nan, .nan, .nan, .nan, 1.0]
    unsafe:                                             # DNF: a list of conjunctions
      - ["continue >= slow", "continue >= stop"]        # each a list of linear constraints
    description: "optional free text"

A constraint is ``<expr> <= <expr>`` or ``<expr> >= <expr>`` where ``<expr>`` is a sum of
terms ``[number *] output_name`` or numbers, e.g. ``"continue - 0.5 * slow >= 0.1"``. Input
names cannot appear in constraints (the input region is ``domain``). Unbounded domain sides
are fine for the runtime monitor (the region bounds them); offline verification needs
finite boxes.

Numbers are exact: integers as YAML 1.1 reads them (``010`` is 8, ``0x10`` 16, ``1_000``
1000), decimals as written (``0.1`` is 1/10, not float64's nearest); each becomes float64
rounded outward only for the proof, and a counterexample is checked against the values as
written. Base-60 numbers (``1:30``) are refused, and so are names that read as an exponent
after a number (``e1``: ``2e1`` is 20).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from meetup_ros.verification import VerificationInputError, exact, require_file


@dataclass(frozen=True)
class ExactRow:
    """``sum c * v[j] over terms (j, c) <= bound`` in exact rationals; ``<`` if ``strict``.

    A row without terms is a constant atom (``0 < 0`` is false as written)."""

    terms: tuple[tuple[int, Fraction], ...]
    bound: Fraction
    strict: bool = False

    def holds(self, values: Sequence[Fraction] | Mapping[int, Fraction]) -> bool:
        """At ``values`` (indexed by the terms' variables; a mapping may hold only those)."""
        total = sum((c * values[j] for j, c in self.terms), Fraction(0))
        return total < self.bound if self.strict else total <= self.bound


def _finite_sides(side: np.ndarray) -> list[Fraction | None]:
    """A float box side as exact values, None where it is unbounded."""
    return [Fraction(float(v)) if np.isfinite(v) else None
            for v in np.asarray(side, dtype=np.float64)]


def _exact_values(v: np.ndarray) -> list[Fraction]:
    return [Fraction(float(a)) for a in np.asarray(v, dtype=np.float64).reshape(-1)]


@dataclass(frozen=True)
class ExactDisjunct:
    """A disjunct as written, before float64 rounding: rows over the inputs (each a bound on
    one input) and rows over the outputs, strict ones strict. The float :class:`Disjunct`
    holds a superset (rounded outward, strict read as non-strict), which is sound for a proof
    but not for a counterexample: it must lie in this set."""

    inputs: tuple[ExactRow, ...]
    outputs: tuple[ExactRow, ...]

    @staticmethod
    def from_floats(lower: np.ndarray, upper: np.ndarray, coeffs: np.ndarray, rhs: np.ndarray
                    ) -> ExactDisjunct:
        """The float disjunct's own set, for properties with no written form of their own."""
        outputs = [ExactRow(tuple((j, Fraction(float(c))) for j, c in enumerate(row) if c != 0),
                            Fraction(float(bound)))
                   for row, bound in zip(np.asarray(coeffs, dtype=np.float64),
                                         np.asarray(rhs, dtype=np.float64), strict=True)]
        return ExactDisjunct(ExactDisjunct.box_rows(_finite_sides(lower), _finite_sides(upper)),
                             tuple(outputs))

    @staticmethod
    def box_rows(lower: Sequence[Fraction | None], upper: Sequence[Fraction | None]
                 ) -> tuple[ExactRow, ...]:
        """A box's bounded sides as rows (x_i <= u_i, -x_i <= -l_i; None: unbounded)."""
        rows = [ExactRow(((i, Fraction(1)),), u) for i, u in enumerate(upper) if u is not None]
        rows += [ExactRow(((i, Fraction(-1)),), -lo) for i, lo in enumerate(lower)
                 if lo is not None]
        return tuple(rows)

    def contains_input(self, x: np.ndarray) -> bool:
        if not np.isfinite(x).all():
            return False
        values = _exact_values(x)
        return all(row.holds(values) for row in self.inputs)

    def unsafe_output(self, y: np.ndarray) -> bool:
        """Every output row holds at ``y`` in exact arithmetic (float64 rounds a sum: a
        tester's y = (2^53, 1) met Y_0 + Y_1 <= 2^53 in float64, a wrong "sat"). An output
        that overflowed (inf, NaN) has no exact value and confirms nothing."""
        if not np.isfinite(y).all():
            return False
        values = _exact_values(y)
        return all(row.holds(values) for row in self.outputs)


@dataclass(frozen=True, eq=False)
class Disjunct:
    """Input box ``lower <= x <= upper`` with unsafe outputs ``coeffs @ y <= rhs``.

    Args:
        lower, upper: ``(n,)`` float64, may hold ``-inf``/``+inf``.
        coeffs: ``(k, m)`` float64; rhs: ``(k,)``.
        exact: the disjunct as written where it was read from text (VNN-LIB, YAML
            constraints: exact decimals); None where the float form is the property itself.
    """

    lower: np.ndarray
    upper: np.ndarray
    coeffs: np.ndarray
    rhs: np.ndarray
    exact: ExactDisjunct | None = None

    def exact_form(self) -> ExactDisjunct:
        """What a counterexample must meet: the written form, else the float one."""
        if self.exact is not None:
            return self.exact
        return ExactDisjunct.from_floats(self.lower, self.upper, self.coeffs, self.rhs)

    def margins(self, y: np.ndarray) -> np.ndarray:
        """``coeffs @ y - rhs``: ``(m,)`` -> ``(k,)``, ``(B, m)`` -> ``(B, k)``; all <= 0 is
        unsafe."""
        return np.asarray(y, dtype=np.float64) @ self.coeffs.T - self.rhs

    def contains_input(self, x: np.ndarray) -> bool:
        x = np.asarray(x, dtype=np.float64)
        return bool(np.all(x >= self.lower) and np.all(x <= self.upper))


def _fits(exact: ExactDisjunct, n_inputs: int, n_outputs: int) -> bool:
    return (all(0 <= j < n_inputs for row in exact.inputs for j, _ in row.terms)
            and all(0 <= j < n_outputs for row in exact.outputs for j, _ in row.terms))


@dataclass(frozen=True)
class Property:
    """Unsafe set = union over ``disjuncts`` of (input box x output conjunction)."""

    disjuncts: tuple[Disjunct, ...]
    n_inputs: int
    n_outputs: int
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    source: str = "<memory>"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.disjuncts:
            raise VerificationInputError(f"property {self.source!r} has no unsafe disjunct")
        for i, d in enumerate(self.disjuncts):
            ok = (
                d.lower.shape == (self.n_inputs,) and d.upper.shape == (self.n_inputs,)
                and d.coeffs.ndim == 2 and d.coeffs.shape[1] == self.n_outputs
                and d.rhs.shape == (d.coeffs.shape[0],) and d.coeffs.shape[0] >= 1
            )
            if not ok:
                raise VerificationInputError(
                    f"property {self.source!r} disjunct {i}: shapes lower {d.lower.shape!r} "
                    f"upper {d.upper.shape!r} coeffs {d.coeffs.shape!r} rhs {d.rhs.shape!r}; "
                    f"expected ({self.n_inputs},) boxes and (k, {self.n_outputs}) constraints"
                )
            if np.isnan(d.lower).any() or np.isnan(d.upper).any():
                raise VerificationInputError(f"property {self.source!r}: NaN in the input box")
            if d.exact is not None and not _fits(d.exact, self.n_inputs, self.n_outputs):
                raise VerificationInputError(
                    f"property {self.source!r} disjunct {i}: its written form names variables "
                    f"beyond {self.n_inputs} inputs and {self.n_outputs} outputs")

    def is_unsafe(self, x: np.ndarray, y: np.ndarray) -> bool:
        """True iff ``(x, y)`` lies in the unsafe set (non-strict inequalities)."""
        return any(d.contains_input(x) and bool(np.all(d.margins(y) <= 0.0))
                   for d in self.disjuncts)

    def vacuous_disjuncts(self) -> list[int]:
        """Disjuncts no (x, y) can meet, whatever the network: an empty input box, or output
        conditions that contradict each other (``continue - continue >= 1``), by an LP.

        A property made only of these can never be violated, so a proof of it says nothing of
        the network (a tester's was accepted by the monitor and 'verified' every tick). Near
        the LP's tolerance a feasible set of one point may be reported empty: callers refuse,
        which errs towards not running."""
        from scipy.optimize import linprog

        out = []
        for i, d in enumerate(self.disjuncts):
            if np.any(d.lower > d.upper):
                out.append(i)
                continue
            result = linprog(np.zeros(self.n_outputs), A_ub=d.coeffs, b_ub=d.rhs,
                             bounds=[(None, None)] * self.n_outputs, method="highs")
            if result.status == 2:  # infeasible
                out.append(i)
        return out

    def check_network(self, n_inputs: int, n_outputs: int, network_name: str) -> None:
        """Raise if the property does not fit a network of this size."""
        if (n_inputs, n_outputs) != (self.n_inputs, self.n_outputs):
            raise VerificationInputError(
                f"property {self.source!r} has {self.n_inputs!r} inputs and {self.n_outputs!r} "
                f"outputs but network {network_name!r} has {n_inputs!r} and {n_outputs!r}"
            )


# -- YAML ----------------------------------------------------------------------------------
_YAML_KEYS = {"inputs", "outputs", "domain", "unsafe", "description"}
_EXPONENT_NAME = re.compile(r"[eE][0-9]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")  # the name part of _TERM
_TERM = re.compile(r"\s*([+-]?)\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
                   r"\s*(\*)?\s*)?([A-Za-z_][A-Za-z0-9_.]*)?\s*")


def _parse_expr(text: str, names: Sequence[str], where: str
                ) -> tuple[dict[int, Fraction], Fraction]:
    """``"2*a - b + 1"`` -> ({name index: coefficient}, constant), exactly (``exact``)."""
    coeffs: dict[int, Fraction] = {}
    const = Fraction(0)
    pos = 0
    text = text.strip()
    if not text:
        raise VerificationInputError(f"{where}: empty expression")
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos or (m.group(2) is None and m.group(4) is None):
            raise VerificationInputError(
                f"{where}: cannot read {text[pos:]!r}; expected terms like '2 * name' or numbers"
            )
        sign = -1 if m.group(1) == "-" else 1
        if pos > 0 and not m.group(1):
            raise VerificationInputError(f"{where}: missing '+' or '-' before {text[pos:]!r}")
        try:
            number = exact.read_decimal(m.group(2)) if m.group(2) else Fraction(1)
        except exact.ExactError as exc:
            raise VerificationInputError(f"{where}: {exc}") from None
        name = m.group(4)
        if m.group(3) and name is None:
            raise VerificationInputError(f"{where}: '*' without a name in {text!r}")
        if m.group(2) and name is not None and not m.group(3):
            raise VerificationInputError(
                f"{where}: missing '*' between {m.group(2)!r} and {name!r} in {text!r}")
        if name is None:
            const += sign * number
        else:
            if name not in names:
                raise VerificationInputError(
                    f"{where}: unknown output {name!r}; expected one of {list(names)!r}"
                )
            j = list(names).index(name)
            coeffs[j] = coeffs.get(j, Fraction(0)) + sign * number
        pos = m.end()
    return coeffs, const


def parse_constraint(text: str, names: Sequence[str], where: str = "constraint"
                     ) -> ExactRow:
    """``"a >= b + 1"`` -> the row ``b - a <= -1`` as written (exact; non-strict)."""
    if not isinstance(text, str):
        raise VerificationInputError(f"{where}: {text!r} is not a string like 'a >= b'")
    for op in ("<=", ">="):
        if text.count(op) == 1 and text.count("<") + text.count(">") == 1:
            left, right = text.split(op)
            lc, lk = _parse_expr(left, names, where)
            rc, rk = _parse_expr(right, names, where)
            if op == ">=":  # l >= r  <=>  r - l <= lk - rk
                lc, lk, rc, rk = rc, rk, lc, lk
            coeffs = dict(lc)
            for j, c in rc.items():
                coeffs[j] = coeffs.get(j, Fraction(0)) - c
            terms = tuple(sorted((j, c) for j, c in coeffs.items() if c != 0))
            return ExactRow(terms, rk - lk)
    raise VerificationInputError(
        f"{where}: {text!r} needs exactly one '<=' or '>='"
    )


def _bound_list(value: object, n: int, up: bool, where: str
                ) -> tuple[np.ndarray, list[Fraction | None]]:
    """Domain bounds as written (exact; None = unbounded) and as floats rounded outward.

    Numbers are read exactly: ``load_property_yaml`` hands finite YAML numbers over as their
    text (PyYAML's float() made ``0.99999999999999999`` an upper bound of 1.0, and a tester's
    counterexample at x = 1.0 lay outside the box as written); numbers given as Python floats
    or ints (a dict built in code) are taken as the values they are. ``.nan`` / null / the
    infinity on the open side mean unbounded; the other infinity would empty the domain, and
    is refused.
    """
    if not isinstance(value, list) or len(value) != n:
        raise VerificationInputError(f"{where}: {value!r}; expected a list of {n} numbers")
    floats = np.full(n, np.inf if up else -np.inf)
    written: list[Fraction | None] = [None] * n
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float, str, type(None))):
            raise VerificationInputError(f"{where}[{i}]: {v!r} is not a number")
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, float) and math.isinf(v):
            if (v > 0) == up:
                continue  # the open side: unbounded
            raise VerificationInputError(
                f"{where}[{i}]: {v!r} leaves the domain empty; use .nan or null for unbounded")
        try:
            exact_value = (exact.read_decimal(v.strip()) if isinstance(v, str)
                           else Fraction(v))
            floats[i] = exact.float_out(exact_value, up)
        except exact.ExactError as exc:
            raise VerificationInputError(f"{where}[{i}]: {exc}") from None
        except (OverflowError, ValueError):
            raise VerificationInputError(
                f"{where}[{i}]: {v!r} is beyond the float64 range") from None
        written[i] = exact_value
    return floats, written


def property_from_dict(data: object, source: str = "<dict>") -> Property:
    """Build a :class:`Property` from the YAML schema above (already parsed)."""
    if not isinstance(data, dict):
        raise VerificationInputError(f"property {source!r}: top level is {type(data).__name__}; "
                                     "expected a mapping")
    unknown = set(data) - _YAML_KEYS
    missing = {"inputs", "outputs", "domain", "unsafe"} - set(data)
    if unknown or missing:
        raise VerificationInputError(
            f"property {source!r}: unknown keys {sorted(unknown)!r}, missing keys "
            f"{sorted(missing)!r}; expected keys {sorted(_YAML_KEYS)!r}"
        )
    inputs, outputs = data["inputs"], data["outputs"]
    for key, names in (("inputs", inputs), ("outputs", outputs)):
        if (not isinstance(names, list) or not names
                or not all(isinstance(s, str) for s in names) or len(set(names)) != len(names)):
            raise VerificationInputError(
                f"property {source!r} {key}: {names!r}; expected a list of distinct names"
            )
        for s in names:
            # A constraint reads a name only in this form: "0" would be read as the number
            # 0 (a constraint "0 >= 2" about output 0 would become a false statement, and
            # the property vacuously safe), "a b" as two terms.
            if _NAME.fullmatch(s) is None or isinstance(s, WrittenNumber):
                raise VerificationInputError(
                    f"property {source!r} {key}: name {s!r} is not a name a constraint can "
                    "use; expected a letter or '_' first, then letters, digits, '_' or '.'")
            if _EXPONENT_NAME.fullmatch(s):  # "2e1" would read as 20, not 2 * e1
                raise VerificationInputError(
                    f"property {source!r} {key}: name {s!r} reads as an exponent after a "
                    f"number (2{s} is a number); rename it")
    domain = data["domain"]
    if not isinstance(domain, dict) or set(domain) != {"lower", "upper"}:
        raise VerificationInputError(
            f"property {source!r} domain: {domain!r}; expected a mapping with lower and upper"
        )
    n = len(inputs)
    lower, lower_written = _bound_list(domain["lower"], n, False,
                                       f"property {source!r} domain.lower")
    upper, upper_written = _bound_list(domain["upper"], n, True,
                                       f"property {source!r} domain.upper")
    if any(lo is not None and up is not None and lo > up
           for lo, up in zip(lower_written, upper_written, strict=True)):
        raise VerificationInputError(
            f"property {source!r}: domain lower {lower.tolist()!r} > upper {upper.tolist()!r}"
        )
    unsafe = data["unsafe"]
    if not isinstance(unsafe, list) or not unsafe:
        raise VerificationInputError(
            f"property {source!r} unsafe: {unsafe!r}; expected a non-empty list of conjunctions"
        )
    disjuncts = []
    for i, conj in enumerate(unsafe):
        conj_list = [conj] if isinstance(conj, str) else conj
        if not isinstance(conj_list, list) or not conj_list:
            raise VerificationInputError(
                f"property {source!r} unsafe[{i}]: {conj!r}; expected a list of constraints"
            )
        written, rows, rhs = [], [], []
        for j, c in enumerate(conj_list):
            where = f"property {source!r} unsafe[{i}][{j}]"
            row = parse_constraint(c, outputs, where)
            try:  # rounded outward for the proof; the row as written checks counterexamples
                coeffs, bound = exact.integer_row(dict(row.terms), row.bound, len(outputs))
            except exact.ExactError as exc:
                raise VerificationInputError(f"{where}: {exc}") from None
            written.append(row)
            rows.append(coeffs)
            rhs.append(bound)
        disjuncts.append(Disjunct(lower.copy(), upper.copy(), np.array(rows), np.array(rhs),
                                  ExactDisjunct(ExactDisjunct.box_rows(lower_written,
                                                                        upper_written),
                                                tuple(written))))
    description = data.get("description", "")
    return Property(
        tuple(disjuncts), n, len(outputs), tuple(inputs), tuple(outputs), source,
        str(description or ""),
    )


def _loader() -> type:
    """PyYAML's safe loader, but finite numbers stay the text written (read exactly later,
    ``_bound_list``): its float() rounds, and a 400-digit integer overflowed float()."""
    import yaml

    class ExactNumberLoader(yaml.SafeLoader):
        pass

    def integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
        # Python ints are exact: YAML 1.1's own reading (010 is 8, 0x10 16, 1_000 1000); a
        # tester's 010 read as decimal text was 10, a wrong "unsat"
        try:
            return yaml.SafeLoader.construct_yaml_int(loader, node)
        except ValueError:  # past Python's 4300 digits: the text, refused by name later
            return WrittenNumber(loader.construct_scalar(node))

    def real(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
        text = str(loader.construct_scalar(node))
        if text.strip().lower().lstrip("+-") in (".inf", ".nan"):
            return yaml.SafeLoader.construct_yaml_float(loader, node)
        if ":" in text:  # YAML 1.1's base 60 (1:30.5): float() only, so not exact
            raise yaml.constructor.ConstructorError(
                None, None, f"base-60 number {text!r} is not supported in a property; write "
                "it as a decimal", node.start_mark)
        return WrittenNumber(text.replace("_", ""))  # YAML 1.1 allows 1_000.5

    ExactNumberLoader.add_constructor("tag:yaml.org,2002:int", integer)
    ExactNumberLoader.add_constructor("tag:yaml.org,2002:float", real)
    return ExactNumberLoader


class WrittenNumber(str):
    """A YAML float kept as the decimal text written, read exactly later (shown unquoted)."""

    def __repr__(self) -> str:
        return str(self)


def load_property_yaml(path: str | Path) -> Property:
    """Read the YAML form documented in this module.

    Raises:
        VerificationInputError: missing file, YAML syntax error or schema violation.
    """
    import yaml

    path = require_file(path, "property file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())
    except UnicodeDecodeError as exc:
        raise VerificationInputError(f"property file {str(path)!r} is not UTF-8 text: {exc}"
                                     ) from exc
    except yaml.YAMLError as exc:
        raise VerificationInputError(f"property file {str(path)!r}: YAML error: {exc}") from exc
    return property_from_dict(data, str(path))


def load_property(path: str | Path) -> Property:
    """``.vnnlib`` or ``.yaml``/``.yml`` by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".vnnlib":
        from meetup_ros.verification.vnnlib import load_vnnlib

        return load_vnnlib(path)
    if suffix in (".yaml", ".yml"):
        return load_property_yaml(path)
    raise VerificationInputError(
        f"property file {str(path)!r} has suffix {suffix!r}; expected .vnnlib, .yaml or .yml"
    )
