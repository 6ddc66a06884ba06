"""`likra compare A B`: two curve folders question by question (here fp32 against bf16, the comparison the bf16
default rests on). Every compared accuracy is the one in its folder's curve.json, each difference is a - b,
and a folder compared with itself differs nowhere."""

import json
import shutil

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for dtype in ("fp32", "bf16"):
        assert main(["-q", "curve", *TINY_CURVE_ARGS, "--dtype", dtype, "--out", str(root / dtype)]) == 0
    return root


def rows_of(folder) -> dict:
    curve = json.loads((folder / "curve.json").read_text())
    return {(r["seed"], r["examples"], r["mode"], r["metric"]): r["value"] for r in curve["rows"]}


def test_fp32_against_bf16_uses_each_curves_own_values(curves, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", str(curves / "fp32"), str(curves / "bf16"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fp32 | bf16 |" in printed and "differences significant at 0.05" in printed
    comparison = json.loads(out.read_text())
    assert (comparison["a"]["dtype"], comparison["b"]["dtype"]) == ("fp32", "bf16")
    a, b = rows_of(curves / "fp32"), rows_of(curves / "bf16")
    keys = {(r["seed"], r["examples"], r["mode"], r["metric"]) for r in comparison["rows"]}
    assert keys == set(a) == set(b)  # every row of both curves, base included
    for r in comparison["rows"]:
        key = (r["seed"], r["examples"], r["mode"], r["metric"])
        assert (r["a"], r["b"]) == (a[key], b[key])
        assert r["diff"] == pytest.approx(r["a"] - r["b"], abs=1e-12)
        assert r["ci_low"] <= r["diff"] <= r["ci_high"] and 0 <= r["p_mcnemar"] <= 1
        # McNemar counts questions one side gets right and the other not: at least |a - b| * n of them
        assert r["a_only"] + r["b_only"] >= round(abs(r["a"] - r["b"]) * r["n"]) and r["n"] == comparison["n_eval"]


def test_a_folder_against_its_copy_differs_nowhere(curves, tmp_path, capsys):
    shutil.copytree(curves / "fp32", tmp_path / "copy")
    out = tmp_path / "self.json"
    assert main(["compare", str(curves / "fp32"), str(tmp_path / "copy"), "--labels", "x,y", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["diff"] == 0 and r["a_only"] == r["b_only"] == 0 and not r["significant"] for r in rows)
    assert "0 of" in capsys.readouterr().out


def test_a_folder_with_heads_and_pair_settings_of_an_earlier_version_compares(tmp_path, capsys):
    """Earlier versions took --negative-kind beside --heads (it reached no head) and recorded it: such a folder
    still loads, while a new curve refuses the pair."""
    heads = ["--heads", "positive=mle:gold,near=mle:negatives:near_miss", "--modes", "positive-w*near"]
    assert main(["-q", "curve", *TINY_CURVE_ARGS, *heads, "--out", str(tmp_path / "a")]) == 0
    curve_file = tmp_path / "a" / "curve.json"
    curve = json.loads(curve_file.read_text())
    curve["config"] |= {"negative_kind": "random_question", "contamination": 0.25}
    curve_file.write_text(json.dumps(curve))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert {r["mode"] for r in rows} >= {"positive-w*near"} and all(r["diff"] == 0 for r in rows)
    capsys.readouterr()
    refused = ["--negative-kind", "random_question", "--out", str(tmp_path / "x")]
    code = main(["-q", "curve", *TINY_CURVE_ARGS, *heads, *refused])
    assert "--negative-kind sets the default pair" in one_line_error(capsys, code)


def test_mismatched_or_altered_folders_are_one_line(curves, tmp_path, capsys):
    # A score file that no longer gives its curve's values: refused, naming the folder.
    altered = tmp_path / "altered"
    shutil.copytree(curves / "bf16", altered)
    path = sorted((altered / "seed-0" / "scores").rglob("step-*-positive.json"))[-1]
    scores = json.loads(path.read_text())
    # every choice tied: each question then earns 1/choices, a sum over 10 questions no k/10 accuracy equals
    path.write_text(json.dumps([[0.0] * len(q) for q in scores]))
    assert main(["compare", str(curves / "fp32"), str(altered)]) == 2
    assert f"{altered}: the score files give" in one_line_error(capsys, 2)
    # Other questions: refused before anything is compared.
    other = tmp_path / "other"  # as a curve with --eval-limit 6 records itself
    shutil.copytree(curves / "fp32", other)
    curve = json.loads((other / "curve.json").read_text())
    curve["config"]["eval_limit"], curve["n_eval"] = 6, 6
    (other / "curve.json").write_text(json.dumps(curve))
    assert main(["compare", str(curves / "fp32"), str(other)]) == 2
    assert "differ in evaluation limit (10 vs 6)" in one_line_error(capsys, 2)
    assert main(["compare", str(curves / "fp32"), str(tmp_path / "nothing")]) == 2
    assert "no curve.json" in one_line_error(capsys, 2)
    assert main(["compare", str(curves / "fp32"), str(curves / "bf16"), "--labels", "one"]) == 2
    assert "--labels has 1 names" in one_line_error(capsys, 2)


def test_folders_scored_with_other_weights_or_chat_templates_are_refused(curves, tmp_path, capsys):
    """likra and negbase weigh the negative head by w: two curves run with other --weight values score other
    settings, and other chat templates give other prompts; both are refused, as other questions are."""
    weighted = tmp_path / "w05"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--dtype", "fp32", "--weight", "0.5", "--out", str(weighted)]) == 0
    capsys.readouterr()
    report = (weighted / "report.md").read_text()  # the report says which w the modes scored with, and the shots
    assert "(10 questions, 0-shot), 1 seed(s). Weight w = 0.5 in likra, negbase." in report
    code = main(["compare", str(curves / "fp32"), str(weighted)])
    err = one_line_error(capsys, code)
    assert "differ in the weight w of likra, negbase (1.0 vs 0.5)" in err and str(weighted) in err
    # A chat template (as curve.json records --chat-template): other prompts, refused before any data is loaded.
    templated = tmp_path / "templated"
    shutil.copytree(curves / "fp32", templated)
    curve = json.loads((templated / "curve.json").read_text())
    curve["config"]["chat_template"] = True
    (templated / "curve.json").write_text(json.dumps(curve))
    assert "differ in chat template (False vs True)" in one_line_error(
        capsys, main(["compare", str(curves / "fp32"), str(templated)])
    )
    # Without a mode that uses w, the weight changes nothing compared: the two folders compare (and agree).
    for folder in (curves / "fp32", weighted):
        shutil.copytree(folder, tmp_path / f"plain-{folder.name}")
        curve_file = tmp_path / f"plain-{folder.name}" / "curve.json"
        curve = json.loads(curve_file.read_text())
        curve["config"]["modes"] = ["base", "sft"]
        curve_file.write_text(json.dumps(curve))
    out = tmp_path / "plain.json"
    assert main(["compare", str(tmp_path / "plain-fp32"), str(tmp_path / "plain-w05"), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["mode"] for r in rows} == {"base", "sft"} and all(r["diff"] == 0 for r in rows)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda c: c.pop("rows"), "not a likra curve.json (it lacks 'rows')"),
        (lambda c: c["rows"][2].pop("value"), "row 3 lacks 'value'"),
        (lambda c: c.update(rows="x"), "'rows' is str 'x', not a list of rows"),
        (lambda c: c["rows"].__setitem__(0, 7), "row 1 is int 7, not an object"),
        (lambda c: c["rows"][1].update(value="high"), "row 2 has value = str 'high', not a number"),
        (lambda c: c.update(config=[]), "'config' is list, not an object"),
    ],
)
def test_a_damaged_curve_json_is_one_line_naming_it(curves, tmp_path, capsys, damage, says):
    """compare, report and plot read curve.json through one check: a damaged one is one line naming the file and
    what is wrong, never a KeyError or TypeError."""
    damaged = shutil.copytree(curves / "fp32", tmp_path / "damaged")
    curve_file = damaged / "curve.json"
    curve = json.loads(curve_file.read_text())
    damage(curve)
    curve_file.write_text(json.dumps(curve))
    report = (damaged / "report.md").read_text()
    for command in (
        ["compare", str(curves / "bf16"), str(damaged)],
        ["compare", str(damaged), str(curves / "bf16")],
        ["report", str(damaged)],
        ["plot", str(damaged), "--out", str(tmp_path / "fig")],
        ["plot", str(curve_file), "--out", str(tmp_path / "fig")],
    ):
        err = one_line_error(capsys, main(command))
        assert f"{curve_file}: {says}" in err, command
    assert not list(tmp_path.glob("fig.*")) and (damaged / "report.md").read_text() == report  # nothing written
