"""Safe parsing of linear contrast expressions and contrast specifications.

Expressions such as ``"audio - visual"`` or ``"(audio + visual) / 2"`` are parsed with
:mod:`ast` and evaluated symbolically: only numbers, known names, ``+ - * /``, unary signs
and parentheses are accepted, and products must keep the expression linear. Nothing is
ever passed to ``eval``. Names that are not Python identifiers (``"face-famous"``) are
written between backticks: ``"`face-famous` - `face-unfamiliar`"``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bids_hrf.conditions import clean_label

MAX_EXPRESSION_LENGTH = 2000

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True)
class ContrastSpec:
    """One contrast: a t contrast (one expression) or an F contrast (several).

    Attributes
    ----------
    label : str
        Alphanumeric camelCase label used in file names (``contrast-<label>``).
    expressions : tuple of str
        Linear expressions over condition names; one per row.
    stat_type : {"t", "F"}
        ``"t"`` for one expression, ``"F"`` for several (or when requested).
    name : str
        The name as the user wrote it.
    """

    label: str
    expressions: tuple[str, ...]
    stat_type: str = "t"
    name: str = ""


def _describe(node: ast.AST, expression: str) -> str:
    try:
        return ast.get_source_segment(expression, node) or ast.dump(node)
    except Exception:  # pragma: no cover - defensive
        return type(node).__name__


def _substitute_backticks(expression: str, names: Sequence[str]) -> tuple[str, dict[str, str]]:
    mapping: dict[str, str] = {}

    def repl(match: re.Match) -> str:
        key = f"__q{len(mapping)}__"
        mapping[key] = match.group(1)
        return f" {key} "

    text = re.sub(r"`([^`]*)`", repl, expression)
    if "`" in text:
        raise ValueError(f"Contrast {expression!r} has an unmatched backtick")
    return text, mapping


class _LinearForm:
    """Weights and constant term of a parsed contrast expression (linear forms only).

    Parameters
    ----------
    expression : str
        The user's expression (quoted in error messages).
    text : str
        The expression parsed (backtick-quoted names substituted).
    names : list of str
        Valid names, in output order.
    quoted : dict of str to str
        Substituted identifier -> the backtick-quoted name it stands for.
    """

    def __init__(self, expression: str, text: str, names: list[str],
                 quoted: dict[str, str]) -> None:
        self.expression, self.text, self.names, self.quoted = expression, text, names, quoted
        self.index = {n: i for i, n in enumerate(names)}

    def fail(self, node: ast.AST, why: str) -> ValueError:
        """The error for a node that is not a linear combination."""
        return ValueError(
            f"Contrast {self.expression!r}: {why} in {_describe(node, self.text)!r}; only "
            "numbers, condition names, + - * /, unary minus and parentheses are allowed"
        )

    def visit(self, node: ast.AST) -> tuple[np.ndarray, float]:
        """Return (weights, constant) of the linear form of ``node``."""
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            name = self.quoted.get(node.id, node.id)
            if name not in self.index:
                raise ValueError(f"Contrast {self.expression!r} uses unknown name {name!r}; "
                                 f"valid names: {self.names}")
            w = np.zeros(len(self.names))
            w[self.index[name]] = 1.0
            return w, 0.0
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            w, c = self.visit(node.operand)
            return (-w, -c) if isinstance(node.op, ast.USub) else (w, c)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            # both sides here, not in _combine: one stack frame per nesting level
            return self._combine(node, *self.visit(node.left), *self.visit(node.right))
        if isinstance(node, ast.BinOp):
            raise self.fail(node, f"operator {type(node.op).__name__} not allowed")
        raise self.fail(node, f"{type(node).__name__} not allowed")

    def _constant(self, node: ast.Constant) -> tuple[np.ndarray, float]:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"{type(value).__name__} literal not allowed")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(node, "non-finite number")
        return np.zeros(len(self.names)), value

    def _combine(self, node: ast.BinOp, lw: np.ndarray, lc: float, rw: np.ndarray,
                 rc: float) -> tuple[np.ndarray, float]:
        """The linear form of ``left <op> right`` from those of its sides."""
        if isinstance(node.op, ast.Add):
            return lw + rw, lc + rc
        if isinstance(node.op, ast.Sub):
            return lw - rw, lc - rc
        if isinstance(node.op, ast.Mult):
            if lw.any() and rw.any():
                raise self.fail(node, "product of two names is not linear")
            return lw * rc + rw * lc, lc * rc
        if rw.any():
            raise self.fail(node, "division by a name is not linear")
        if rc == 0:
            raise self.fail(node, "division by zero")
        return lw / rc, lc / rc


def parse_contrast(expression: str, names: Sequence[str]) -> np.ndarray:
    """Turn a linear expression over ``names`` into a weight vector.

    Parameters
    ----------
    expression : str
        E.g. ``"audio - visual"``, ``"0.5*audio + 0.5*visual"``, ``"(audio + visual) / 2"``.
        Names that are not identifiers go between backticks.
    names : sequence of str
        Valid names (conditions or design-matrix columns), in output order.

    Returns
    -------
    ndarray, shape (len(names),)
        The weight of each name.

    Raises
    ------
    ValueError
        The expression is not a linear combination of the names (syntax error, call,
        attribute, string, power, product or quotient of two names, division by zero,
        constant term, unknown name, all-zero weights); the message names the expression
        and the offending part. Nothing in the expression is executed.
    """
    if not isinstance(expression, str):
        raise ValueError(f"Contrast expression must be a string, got {type(expression).__name__}")
    names = [str(n) for n in names]
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"Contrast names contain duplicates: {names}")
    if not expression.strip():
        raise ValueError("Contrast expression is empty; write e.g. 'audio - visual'")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"Contrast expression is {len(expression)} characters long "
            f"(at most {MAX_EXPRESSION_LENGTH})"
        )
    if expression.strip() in index:  # a bare (possibly non-identifier) name
        out = np.zeros(len(names))
        out[index[expression.strip()]] = 1.0
        return out
    text, quoted = _substitute_backticks(expression, names)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(
            f"Contrast {expression!r} is not a valid expression ({type(e).__name__}); write a "
            "linear combination such as 'audio - visual' (names with other characters "
            "between backticks)"
        ) from None
    try:
        weights, constant = _LinearForm(expression, text, names, quoted).visit(tree)
    except RecursionError:
        raise ValueError(f"Contrast {expression!r} is nested too deeply") from None
    if not np.all(np.isfinite(weights)) or not math.isfinite(constant):
        raise ValueError(f"Contrast {expression!r} has non-finite weights (numbers too large)")
    if constant != 0:
        raise ValueError(
            f"Contrast {expression!r} has a constant term ({constant:g}); contrasts are "
            "weights on conditions only (e.g. 'audio - visual', not 'audio - 1')"
        )
    if not weights.any():
        raise ValueError(f"Contrast {expression!r} has all weights zero (null contrast)")
    return weights


def expression_names(expression: str) -> list[str]:
    """Names an expression refers to (backticked names unquoted), each once.

    Only the syntax is checked (no list of valid names is needed), so callers can find
    which conditions a contrast needs before choosing to compute or skip it.

    Raises
    ------
    ValueError
        The expression cannot be parsed.
    """
    text, quoted = _substitute_backticks(str(expression), [])
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError(f"Contrast {expression!r} is not a valid expression") from None
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            name = quoted.get(node.id, node.id)
            if name not in out:
                out.append(name)
    return out


def _spec_from_entry(name: str, value: object) -> ContrastSpec:
    if isinstance(value, str):
        return ContrastSpec(clean_label(name), (value,), "t", str(name))
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        exprs = tuple(value)
        return ContrastSpec(clean_label(name), exprs, "F" if len(exprs) > 1 else "t", str(name))
    if isinstance(value, Mapping):
        return _spec_from_mapping(value, default_name=name)
    raise ValueError(
        f"Contrast {name!r}: expected an expression string or a list of expressions "
        f"(F contrast), got {value!r}"
    )


def _spec_from_mapping(item: Mapping, default_name: str | None = None) -> ContrastSpec:
    keys = {str(k).lower(): k for k in item}
    name = next((item[keys[k]] for k in ("name", "label") if k in keys), default_name)
    test = next((item[keys[k]] for k in ("test", "stat_type", "type") if k in keys), "")
    test = str(test).lower()
    if "conditionlist" in keys:  # BIDS Stats Models style
        conds = [str(c) for c in item[keys["conditionlist"]]]
        raw = item[keys["weights"]] if "weights" in keys else [1.0] * len(conds)
        weights = np.atleast_2d(np.asarray(raw, dtype=float))
        if weights.shape[1] != len(conds):
            raise ValueError(
                f"Contrast {name!r}: {weights.shape[1]} weights for {len(conds)} conditions"
            )
        exprs = tuple(
            " + ".join(f"{float(w)!r}*`{c}`" for w, c in zip(row, conds, strict=True) if w != 0)
            for row in weights
        )
    else:
        expr = next(
            (item[keys[k]] for k in ("expression", "expressions", "formula", "definition")
             if k in keys),
            None,
        )
        if expr is None:
            raise ValueError(
                f"Contrast entry {dict(item)!r} needs an 'expression' (or BIDS "
                "'ConditionList' + 'Weights')"
            )
        exprs = (expr,) if isinstance(expr, str) else tuple(str(e) for e in expr)
    if name is None:
        name = exprs[0]
    stat = "F" if test in ("f", "ftest") or len(exprs) > 1 else "t"
    return ContrastSpec(clean_label(str(name)), exprs, stat, str(name))


def load_contrasts(spec: Mapping | Sequence) -> dict[str, ContrastSpec]:
    """Read contrast definitions into :class:`ContrastSpec` objects keyed by label.

    Accepted forms:

    - ``{"label": "expression"}`` (PyHRF contrasts JSON) and ``{"label": ["e1", "e2"]}``
      (an F contrast);
    - a list of expressions (each labelled from its text) or of mappings with
      ``name``/``label`` and ``expression`` (string or list), optional ``test``
      (``"t"``/``"F"``), or BIDS Stats Models ``Name``/``ConditionList``/``Weights``/``Test``.

    Expressions are only checked for syntax here; names are checked against the design in
    :func:`contrast_matrix`.

    Raises
    ------
    ValueError
        Malformed entries or two contrasts with the same label.
    """
    if isinstance(spec, Mapping):
        specs = [_spec_from_entry(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        specs = []
        for item in spec:
            if isinstance(item, str):
                specs.append(_spec_from_entry(item, item))
            elif isinstance(item, Mapping):
                specs.append(_spec_from_mapping(item))
            else:
                raise ValueError(f"Contrast list entries must be strings or objects, got {item!r}")
    else:
        raise ValueError(f"Contrasts must be a JSON object or list, got {type(spec).__name__}")
    out: dict[str, ContrastSpec] = {}
    for s in specs:
        if not s.expressions or not all(isinstance(e, str) and e.strip() for e in s.expressions):
            raise ValueError(f"Contrast {s.name!r} has an empty expression")
        if s.label in out:
            raise ValueError(
                f"Contrasts {out[s.label].name!r} and {s.name!r} both get the label "
                f"{s.label!r}; rename one"
            )
        out[s.label] = s
    return out


def default_contrasts(conditions: Sequence[str]) -> dict[str, ContrastSpec]:
    """One t contrast per condition (its effect against the implicit baseline)."""
    specs = []
    for c in conditions:
        expr = c if c.isidentifier() else f"`{c}`"
        specs.append(ContrastSpec(clean_label(c), (expr,), "t", str(c)))
    out: dict[str, ContrastSpec] = {}
    for s in specs:
        if s.label in out:
            raise ValueError(
                f"Conditions {out[s.label].name!r} and {s.name!r} both get the label {s.label!r}"
            )
        out[s.label] = s
    return out


def contrast_matrix(spec: ContrastSpec | str | Sequence[str], design_columns: Sequence[str]):
    """Weights of a contrast over the columns of a design matrix.

    Parameters
    ----------
    spec : ContrastSpec, str or list of str
        A contrast, one expression (t) or several (F).
    design_columns : sequence of str
        Column names of the design; confounds and drifts get weight 0 unless named.

    Returns
    -------
    ndarray
        Shape (n_columns,) for a t contrast, (n_rows, n_columns) for an F contrast.
    """
    if isinstance(spec, str):
        return parse_contrast(spec, design_columns)
    if isinstance(spec, ContrastSpec):
        exprs, stat = spec.expressions, spec.stat_type
    else:
        exprs = tuple(spec)
        stat = "F" if len(exprs) > 1 else "t"
    rows = np.vstack([parse_contrast(e, design_columns) for e in exprs])
    if stat == "t" and rows.shape[0] == 1:
        return rows[0]
    return rows


@dataclass
class ContrastResult:
    """Statistics of one contrast over voxels (masked-voxel space).

    Attributes
    ----------
    effect : ndarray
        Shape (n_voxels,) for a t contrast (the contrast estimate, e.g. ``beta_a - beta_b``);
        for an F contrast shape (q, n_voxels): the whitened effects, as nilearn returns them.
    variance : ndarray, shape (n_voxels,)
        Variance of the effect (t) or the residual variance (F), as in nilearn.
    stat, z, p : ndarray, shape (n_voxels,)
        t or F statistic, z score and one-sided p value (upper tail).
    dof : ndarray, shape (n_voxels,)
        Residual degrees of freedom.
    contrast_type : {"t", "F"}
    dim : int
        Number of rows of the contrast (1 for t).
    """

    effect: np.ndarray
    variance: np.ndarray
    stat: np.ndarray
    z: np.ndarray
    p: np.ndarray
    dof: np.ndarray
    contrast_type: str = "t"
    dim: int = 1

    @classmethod
    def from_effects(
        cls, effect: np.ndarray, variance: np.ndarray, dof: np.ndarray | float, contrast_type: str,
        dim: int | None = None,
    ) -> ContrastResult:
        """Compute stat, z and p from effects, variances and dof with nilearn's ``Contrast``.

        ``dof`` may vary over voxels (voxels are grouped by their dof value).
        """
        from nilearn.glm.contrasts import Contrast

        if contrast_type not in ("t", "F"):
            raise ValueError(f"contrast_type must be 't' or 'F', got {contrast_type!r}")
        effect = np.asarray(effect, dtype=float)
        variance = np.asarray(variance, dtype=float).ravel()
        n = variance.size
        if contrast_type == "F":
            effect = np.atleast_2d(effect)
            dim = effect.shape[0] if dim is None else dim
        else:
            effect = effect.ravel()
            dim = 1
        dof = np.broadcast_to(np.asarray(dof, dtype=float), (n,)).copy()
        stat, z, p = np.zeros(n), np.zeros(n), np.ones(n)
        for value in np.unique(dof):
            sel = dof == value
            con = Contrast(
                effect=effect[..., sel], variance=variance[sel], dim=dim, dof=value,
                stat_type=contrast_type,
            )
            stat[sel] = con.stat()
            z[sel] = con.z_score()
            p[sel] = con.p_value_
        return cls(effect, variance, stat, z, p, dof, contrast_type, int(dim))
