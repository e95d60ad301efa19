"""Contrast parser (safe, linear), contrast specs, labels, fixed effects."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nilearn.glm.contrasts import compute_fixed_effects

from bids_hrf.glm import (
    ContrastResult,
    ContrastSpec,
    clean_label,
    conjunction_tmin,
    contrast_matrix,
    default_contrasts,
    expression_names,
    fixed_effects,
    load_contrasts,
    parse_contrast,
)

NAMES = ["audio", "visual", "motor", "rest"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("audio", [1, 0, 0, 0]),
        ("audio - visual", [1, -1, 0, 0]),
        ("0.5*audio + 0.5*visual", [0.5, 0.5, 0, 0]),
        ("(audio + visual) / 2", [0.5, 0.5, 0, 0]),
        ("-audio", [-1, 0, 0, 0]),
        ("2 * (audio - 3 * motor) - rest / 4", [2, 0, -6, -0.25]),
        ("audio*2 + visual - audio", [1, 1, 0, 0]),
        ("  +audio  -  -visual ", [1, 1, 0, 0]),
        ("1e-1 * audio", [0.1, 0, 0, 0]),
        ("(audio + visual + motor) / 3 - rest", [1 / 3, 1 / 3, 1 / 3, -1]),
    ],
)
def test_parse_known_answers(expression, expected):
    np.testing.assert_allclose(parse_contrast(expression, NAMES), expected)


def test_backticks_for_non_identifier_names():
    names = ["face-famous", "face unfamiliar", "house"]
    np.testing.assert_allclose(
        parse_contrast("`face-famous` - `face unfamiliar`", names), [1, -1, 0]
    )
    np.testing.assert_allclose(parse_contrast("face-famous", names), [1, 0, 0])  # bare name
    with pytest.raises(ValueError, match="unmatched backtick"):
        parse_contrast("`face-famous - house", names)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os').system('echo hi')", "Call"),
        ("audio.real", "Attribute"),
        ("'audio'", "str literal"),
        ("audio ** 2", "Pow"),
        ("audio * visual", "product of two names"),
        ("audio / visual", "division by a name"),
        ("audio / 0", "division by zero"),
        ("audio - 1", "constant term"),
        ("audio - audio", "null contrast"),
        ("audio if visual else motor", "IfExp"),
        ("[audio]", "List"),
        ("lambda: audio", "Lambda"),
        ("audio; visual", "not a valid expression"),
        ("audio == visual", "Compare"),
        ("True * audio", "bool literal"),
        ("1e400 * audio", "non-finite"),
        ("", "empty"),
        ("audio +", "not a valid expression"),
    ],
)
def test_rejects_unsafe_or_nonlinear(expression, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        parse_contrast(expression, NAMES)
    if expression:
        assert repr(expression) in str(info.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown name 'vision'") as info:
        parse_contrast("audio - vision", NAMES)
    assert "audio" in str(info.value) and "rest" in str(info.value)


def test_deep_nesting_is_a_value_error():
    with pytest.raises(ValueError):
        parse_contrast("(" * 1500 + "audio" + ")" * 1500, NAMES)
    with pytest.raises(ValueError, match="characters long"):
        parse_contrast("audio + " * 400 + "audio", NAMES)


_coef = st.integers(min_value=-50, max_value=50).filter(bool).map(lambda k: k / 4)


@given(st.lists(st.tuples(st.sampled_from(NAMES), _coef), min_size=1, max_size=6),
       st.sampled_from(["{c}*{n}", "{n}*{c}", "({n})*{c}", "{n}/{d}"]))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_property_linear_combinations_round_trip(terms, template):
    expected = np.zeros(len(NAMES))
    parts = []
    for name, c in terms:
        if template == "{n}/{d}":
            parts.append(f"{name}/{1 / c!r}")
        else:
            parts.append(template.format(c=repr(c), n=name))
        expected[NAMES.index(name)] += c
    expression = " + ".join(parts)
    if not np.any(np.abs(expected) > 1e-9):
        with pytest.raises(ValueError, match="null"):
            parse_contrast(expression, NAMES)
        return
    weights = parse_contrast(expression, NAMES)
    np.testing.assert_allclose(weights, expected, atol=1e-9)


_junk_tokens = st.sampled_from(
    ["audio", "visual", "x", "os", "(", ")", "[", "]", ".", ",", "*", "**", "+", "-", "/",
     "//", "%", "@", "1", "2.5", "'s'", "lambda", ":", "__import__", "open", "exec", "=",
     "==", "if", "else", "not", "~", "{", "}", "`", ";", "\\n", "print"]
)


@given(st.lists(_junk_tokens, min_size=1, max_size=12))
@settings(max_examples=300, deadline=None)
def test_property_junk_never_executes(tokens):
    """Random token soup either parses to a linear contrast or raises ValueError; no
    builtin is ever looked up or called (we watch builtins.print/open/__import__)."""
    import builtins

    calls = []
    saved = {k: getattr(builtins, k) for k in ("print", "open", "__import__", "exec", "eval")}

    def spy(name):
        def inner(*a, **k):
            calls.append(name)
            return saved[name](*a, **k)

        return inner

    expression = " ".join(tokens)
    try:
        for k in ("print", "open", "exec", "eval"):
            setattr(builtins, k, spy(k))
        try:
            weights = parse_contrast(expression, NAMES)
        except ValueError:
            weights = None
    finally:
        for k, v in saved.items():
            setattr(builtins, k, v)
    assert calls == []
    if weights is not None:
        assert weights.shape == (len(NAMES),) and np.all(np.isfinite(weights))
        assert set(tokens) <= {"audio", "visual", "(", ")", "*", "+", "-", "/", "1", "2.5"}


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("audio - visual", "audioMinusVisual"),
        ("Audio-Video", "audioMinusVideo"),
        ("audio + visual", "audioPlusVisual"),
        ("faces > houses", "facesGtHouses"),
        ("left_hand", "leftHand"),
        ("0.5*audio", "05audio"),
    ],
)
def test_clean_label_matches_nilearn(name, label):
    try:
        from nilearn.glm._base import _clean_contrast_name
    except ImportError:  # older nilearn
        from nilearn.interfaces.bids.glm import _clean_contrast_name

    assert clean_label(name) == label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _clean_contrast_name(name) == label


def test_load_contrasts_forms():
    specs = load_contrasts({"Audio-Video": "audio - visual", "effects": ["audio", "visual"]})
    assert list(specs) == ["audioMinusVideo", "effects"]
    assert specs["audioMinusVideo"] == ContrastSpec("audioMinusVideo", ("audio - visual",), "t",
                                                     "Audio-Video")
    assert specs["effects"].stat_type == "F" and specs["effects"].expressions == (
        "audio", "visual")
    listed = load_contrasts(["audio - visual", {"name": "both", "expression": ["audio", "motor"]},
                             {"label": "f1", "expression": "audio", "test": "F"}])
    assert list(listed) == ["audioMinusVisual", "both", "f1"]
    assert listed["both"].stat_type == "F" and listed["f1"].stat_type == "F"
    bids = load_contrasts([{"Name": "AvsV", "ConditionList": ["audio", "visual"],
                            "Weights": [1, -1], "Test": "t"}])
    np.testing.assert_allclose(contrast_matrix(bids["avsv"], NAMES), [1, -1, 0, 0])


def test_load_contrasts_errors():
    with pytest.raises(ValueError, match="both get the label"):
        load_contrasts({"a-b": "audio", "a - b": "visual"})
    with pytest.raises(ValueError, match="expected an expression"):
        load_contrasts({"x": 3})
    with pytest.raises(ValueError, match="2 weights for 3 conditions"):
        load_contrasts([{"Name": "x", "ConditionList": ["a", "b", "c"], "Weights": [1, 2]}])
    with pytest.raises(ValueError, match="JSON object or list"):
        load_contrasts("audio")


def test_default_contrasts_and_matrix():
    specs = default_contrasts(["audio", "face-famous"])
    assert list(specs) == ["audio", "faceMinusFamous"]
    columns = ["audio", "face-famous", "trans_x", "drift_1", "constant"]
    np.testing.assert_allclose(contrast_matrix(specs["faceMinusFamous"], columns), [0, 1, 0, 0, 0])
    F = contrast_matrix(["audio", "`face-famous` - audio"], columns)
    np.testing.assert_allclose(F, [[1, 0, 0, 0, 0], [-1, 1, 0, 0, 0]])


def _random_result(rng, n=50, dof=100.0):
    effect = rng.normal(size=n)
    variance = rng.uniform(0.1, 2.0, n)
    return ContrastResult.from_effects(effect, variance, dof, "t")


def test_fixed_effects_matches_nilearn_compute_fixed_effects():
    rng = np.random.default_rng(3)
    results = [_random_result(rng, dof=d) for d in (90.0, 110.0, 80.0)]
    ours = fixed_effects(results)
    mask = np.ones((50, 1, 1), bool)
    affine = np.eye(4)

    def img(a):
        return nib.Nifti1Image(a.reshape(50, 1, 1).astype(float), affine)

    # older nilearn returns the z map only when asked
    import inspect

    z_kw = ({"return_z_score": True} if "return_z_score"
            in inspect.signature(compute_fixed_effects).parameters else {})
    con, var, stat, z = compute_fixed_effects(
        [img(r.effect) for r in results], [img(r.variance) for r in results],
        mask=nib.Nifti1Image(mask.astype(np.uint8), affine), precision_weighted=True,
        dofs=[90, 110, 80], **z_kw,
    )
    np.testing.assert_allclose(ours.effect, con.get_fdata().ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.variance, var.get_fdata().ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.stat, stat.get_fdata().ravel(), rtol=1e-6)
    np.testing.assert_allclose(ours.z, z.get_fdata().ravel(), atol=1e-6)
    np.testing.assert_allclose(ours.dof, 280.0)
    # precision weighting by hand for one voxel
    w = np.array([1 / r.variance[0] for r in results])
    assert ours.effect[0] == pytest.approx(np.sum(w * [r.effect[0] for r in results]) / w.sum())


def test_fixed_effects_checks_and_conjunction():
    rng = np.random.default_rng(4)
    a, b = _random_result(rng), _random_result(rng)
    with pytest.raises(ValueError, match="at least one"):
        fixed_effects([])
    with pytest.raises(ValueError, match="voxels"):
        fixed_effects([a, _random_result(rng, n=10)])
    conj = conjunction_tmin([a, b])
    np.testing.assert_allclose(conj.stat, np.minimum(a.stat, b.stat))
    pick_b = b.stat < a.stat
    np.testing.assert_allclose(conj.z[pick_b], b.z[pick_b])
    np.testing.assert_allclose(conj.p, np.where(pick_b, b.p, a.p))


def test_expression_names():
    assert expression_names("`face-famous` - 0.5 * (house + face)") == ["face-famous", "house",
                                                                        "face"]
    assert expression_names("a + a") == ["a"]
    with pytest.raises(ValueError, match="not a valid expression"):
        expression_names("a +")
