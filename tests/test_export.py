"""`likra export`: peft-loadable heads, a model card the hub's parser reads, runs loaded back from the folder
and from a hub repo id, and one-line failures for bad paths and pushes without credentials or network."""

import json

import pytest
import torch
from conftest import one_line_error, train_tiny_run

from likra.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = train_tiny_run(tmp_path_factory.mktemp("export") / "run", limit=16)
    assert main(["-q", "eval", "--run", str(run), "--data", "arc_easy:validation", "--limit", "12"]) == 0
    return run


@pytest.fixture(scope="module")
def exported(run):
    out = run.parent / "exported"
    assert main(["-q", "export", str(run), str(out)]) == 0
    return out


def test_each_head_loads_with_peft_alone(run, exported):
    from peft import PeftModel

    from likra.model.heads import use_head
    from likra.model.loading import load_base_model
    from likra.runs import load_run_model

    ours, _, _ = load_run_model(run)
    ids = torch.tensor([[5, 17, 42, 99, 3, 8]])
    for head in ("positive", "negative"):
        model = PeftModel.from_pretrained(load_base_model("random-tiny"), str(exported), subfolder=f"adapters/{head}")
        with torch.no_grad(), use_head(ours, head):
            expected = ours(input_ids=ids).logits
        assert torch.allclose(model.eval()(input_ids=ids).logits, expected, atol=1e-6)
        with torch.no_grad(), use_head(ours, "base"):
            assert not torch.allclose(ours(input_ids=ids).logits, expected, atol=1e-6)  # the head changes the model


def test_model_card_metadata_reads_back_with_huggingface_hub(run, exported):
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported / "README.md")
    assert card.data.library_name == "peft" and "likra" in card.data.tags
    assert card.data.datasets == ["allenai/ai2_arc"]
    assert card.data.base_model is None  # random-tiny has no hub id; the embedded model's is tested below
    (result_file,) = (run / "eval").glob("*.json")
    metrics = json.loads(result_file.read_text())["metrics"]
    got = {(r.metric_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {
        (f"{metric} ({mode})", metric): round(m["value"], 4) for mode, ms in metrics.items() for metric, m in ms.items()
    }
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert "PeftModel.from_pretrained" in card.text and "likra eval --run" in card.text


def test_embedded_model_card_names_the_hub_base_and_says_it_is_the_gguf():
    from likra.reports.hub import model_card

    manifest = {"model": {"name": "smollm2-135m"}, "heads": ["positive", "negative"], "data": {"spec": "arc-train"}}
    card = model_card("x", manifest, [])
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "GGUF" in card


def test_exported_folder_is_a_run_locally_and_from_a_hub_id(run, exported, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    results = {}
    for name, where in (("run", run), ("export", exported)):
        out = tmp_path / f"{name}.json"
        assert (
            main(
                ["-q", "eval", "--run", str(where), "--data", "arc_easy:validation", "--limit", "12", "--out", str(out)]
            )
            == 0
        )
        results[name] = json.loads(out.read_text())["metrics"]
    asked = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo_id, **kw: asked.append(repo_id) or str(exported)
    )
    out = tmp_path / "hub.json"
    assert (
        main(
            [
                "-q",
                "eval",
                "--run",
                "someone/likra-heads",
                "--data",
                "arc_easy:validation",
                "--limit",
                "12",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert asked == ["someone/likra-heads"]
    assert results["run"] == results["export"] == json.loads(out.read_text())["metrics"]
    assert not (tmp_path / "someone").exists()


def test_bad_paths_and_failed_pushes_are_one_line(run, exported, tmp_path, capsys, monkeypatch):
    one_line_error(capsys, main(["-q", "export", str(tmp_path / "nowhere"), str(tmp_path / "o")]))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    err = one_line_error(capsys, main(["-q", "export", str(run), str(mine), "--overwrite"]))
    assert "not a likra run folder" in err and (mine / "precious.txt").read_text() == "keep"
    one_line_error(capsys, main(["-q", "export", str(run), str(exported)]))  # exists: needs --overwrite
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    out = tmp_path / "o"
    err = one_line_error(capsys, main(["-q", "export", str(run), str(out), "--push-to-hub", "me/heads"]))
    assert "token" in err and (out / "likra.json").is_file()  # the export is kept when the push fails
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_not_a_real_token")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", unreachable)
    err = one_line_error(capsys, main(["-q", "export", str(run), str(out), "--overwrite", "--push-to-hub", "me/heads"]))
    assert "pushing to me/heads" in err
    bad = tmp_path / "never"
    one_line_error(capsys, main(["-q", "export", str(run), str(bad), "--push-to-hub", "not a repo"]))
    assert not bad.exists()  # checked before anything is written
