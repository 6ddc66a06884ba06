import json

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main
from likra.experiments.studies.weight import choose_weight

BASE = TINY_CURVE_ARGS


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("studies") / "study"


def test_negatives_study_shares_the_positive_head(folder, monkeypatch):
    from pathlib import Path

    from transformers import Trainer

    trained = []
    real = Trainer.train

    def counting(self, *args, **kwargs):
        trained.append(Path(self.args.output_dir).name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", counting)
    import likra.training.pipeline as pipeline

    loads = []
    real_load = pipeline.load_base_model
    monkeypatch.setattr(pipeline, "load_base_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert (
        main(["-q", "study", "negatives", "--kinds", "near_miss,random_question,hardest", *BASE, "--out", str(folder)])
        == 0
    )
    # one plan: the base loaded once, the positive head trained once, one negative head per kind
    assert trained == ["positive", "negative", "negative-random_question", "negative-hardest"]
    assert len(loads) == 1
    study = json.loads((folder / "study-negatives.json").read_text())
    assert set(study["curves"]) == {"near_miss", "random_question", "hardest"}
    assert (folder / "mined-base-scores.json").is_file()  # hardest distractors mined with the base model
    assert (folder / "study-negatives.png").read_bytes()[:4] == b"\x89PNG"
    # each kind's curve is the one `likra curve --negative-kind <kind>` gives (it reuses the study's heads and scores)
    # and reports its own negative head only
    for kind, head in (("random_question", "negative_random_question"), ("hardest", "negative_hardest")):
        view = study["curves"][kind]
        assert [set(t) for t in view["train"]] == [{"positive", head}]
        assert set(view["head_data"][0]) == {"positive", head}
        assert main(["-q", "curve", "--negative-kind", kind, *BASE, "--out", str(folder)]) == 0
        alone = json.loads((folder / "curve.json").read_text())
        assert alone["rows"] == view["rows"] and alone["paired"] == view["paired"]
        assert alone["negatives"] == view["negatives"] == kind and view["config"]["negative_kind"] == kind
    assert trained == ["positive", "negative", "negative-random_question", "negative-hardest"]  # nothing retrained
    likra = {k: [r["value"] for r in c["rows"] if r["mode"] == "likra"] for k, c in study["curves"].items()}
    assert likra["random_question"] != likra["hardest"]  # each view reads its own negative head


def test_contamination_study(folder):
    assert main(["-q", "study", "contamination", "--rates", "0,0.5", *BASE, "--out", str(folder)]) == 0
    study = json.loads((folder / "study-contamination.json").read_text())
    assert set(study["curves"]) == {"0.0", "0.5"}
    assert (folder / "seed-0" / "negative-near_miss-contaminated0.5.done.json").is_file()


@pytest.mark.parametrize(
    "study, flag, value",
    [("negatives", "--negative-kind", "hardest"), ("negatives", "--contamination", "0.5"),
     ("contamination", "--contamination", "0.5")],
)  # fmt: skip
def test_a_setting_the_study_sets_for_each_curve_is_refused(tmp_path, capsys, study, flag, value):
    out = tmp_path / "study"
    err = one_line_error(capsys, main(["-q", "study", study, *BASE, flag, value, "--out", str(out)]))
    assert err == f"likra: error: {flag}: this study sets it for each of its curves"
    assert not out.exists()


def test_weight_is_chosen_on_held_out_split_only(folder):
    assert (
        main(
            [
                "-q",
                "study",
                "weight",
                "--tune-data",
                "arc_challenge:validation",
                "--weights",
                "0,0.5,1,1.5",
                *BASE[:-4],
                "--eval-data",
                "arc_challenge:test",
                "--eval-limit",
                "10",
                "--out",
                str(folder),
            ]
        )
        == 0
    )
    study = json.loads((folder / "study-weight.json").read_text())
    for row in study["rows"]:
        assert row["chosen_weight"] == choose_weight(study["weights"], row["tune_curve"])
        assert row["test_at_chosen"] == row["test_curve"][study["weights"].index(row["chosen_weight"])]
        assert row["test_at_1"] == row["test_curve"][2]


def test_choose_weight_prefers_default_on_ties():
    assert choose_weight([0.0, 0.5, 1.0, 2.0], [0.3, 0.4, 0.4, 0.1]) == 1.0
    assert choose_weight([0.0, 0.5, 1.0, 2.0], [0.3, 0.5, 0.4, 0.1]) == 0.5


def test_weight_refuses_tuning_on_the_test_split(folder, capsys):
    code = main(["-q", "study", "weight", "--tune-data", "arc_challenge:validation", *BASE, "--out", str(folder)])
    assert code == 2 and "held-out" in capsys.readouterr().err


def test_dpo_and_likelihood_studies_and_report(folder):
    assert main(["-q", "study", "dpo", "--dpo-lr", "0.01", *BASE, "--out", str(folder)]) == 0
    dpo = json.loads((folder / "study-dpo.json").read_text())
    assert {r["mode"] for r in dpo["rows"]} == {"dpo", "dpo_base"}
    assert sorted({r["examples"] for r in dpo["rows"]}) == [8, 16]
    assert main(["-q", "study", "likelihood", *BASE, "--out", str(folder)]) == 0
    lik = json.loads((folder / "study-likelihood.json").read_text())
    assert set(lik["means"]) == {"base", "positive", "negative"}
    assert set(lik["means"]["base"]) == {"correct", "near_miss", "implausible"}
    assert lik["shift_from_base"]["positive"]["correct"] == pytest.approx(
        lik["means"]["positive"]["correct"] - lik["means"]["base"]["correct"]
    )
    assert main(["-q", "report", str(folder)]) == 0
    report = (folder / "report.md").read_text()
    for name in ("negatives", "contamination", "weight", "dpo", "likelihood"):
        assert f"## Study: {name}" in report
