"""`likra export`: peft-loadable heads (the root one by every loader), a model card the hub's parser reads and
whose commands run as written, runs loaded back from the folder and from a hub repo id, and one-line failures
for bad paths and pushes without credentials or network."""

import hashlib
import json
import shlex

import pytest
import torch
from conftest import one_line_error, save_tiny_model, train_tiny_run
from numerics import kernel_close

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
        assert kernel_close(model.eval()(input_ids=ids).logits, expected)
        with torch.no_grad(), use_head(ours, "base"):
            assert not kernel_close(ours(input_ids=ids).logits, expected)  # the head changes the model


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_the_root_is_the_positive_head_for_every_loader(run, tmp_path):
    """Exported for a base saved as a plain folder (`--base-model-path`): the folder's root loads with
    PeftModel.from_pretrained, AutoPeftModelForCausalLM and transformers' AutoModelForCausalLM, each giving
    likra's positive head."""
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    from likra.model.heads import use_head
    from likra.runs import load_run_model

    base_dir = save_tiny_model(tmp_path / "tiny-base")
    out = tmp_path / "for-peft"
    assert main(["-q", "export", str(run), str(out), "--base-model-path", str(base_dir)]) == 0
    ours, _, _ = load_run_model(run)
    ids = torch.tensor([[5, 17, 42, 99, 3, 8]])
    with torch.no_grad(), use_head(ours, "positive"):
        expected = ours(input_ids=ids).logits
    loaded = {
        "PeftModel": PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(out)),
        "AutoPeftModelForCausalLM": AutoPeftModelForCausalLM.from_pretrained(str(out)),
        "AutoModelForCausalLM": AutoModelForCausalLM.from_pretrained(str(out)),
    }
    for name, model in loaded.items():
        assert kernel_close(logits(model, ids), expected), name
    for head in ("positive", "negative"):
        config = json.loads((out / "adapters" / head / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(base_dir)


def test_model_card_metadata_reads_back_with_huggingface_hub(run, exported):
    from huggingface_hub import ModelCard

    from likra.model.loading import tiny_model_dir
    from likra.reports.hub import weights_sha256

    card = ModelCard.load(exported / "README.md")
    assert card.data.library_name == "peft" and "likra" in card.data.tags and card.data.license == "apache-2.0"
    assert card.data.datasets == ["allenai/ai2_arc"]
    assert card.data.base_model is None  # random-tiny has no hub id; hub bases are named (below)
    (result_file,) = (run / "eval").glob("*.json")
    metrics = json.loads(result_file.read_text())["metrics"]
    got = {(r.metric_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    # the heads' rows only, each saying how many questions it is on; the base model's rows are in the text
    assert got == {
        (f"{metric} ({mode}, 12 questions)", metric): round(m["value"], 4)
        for mode, ms in metrics.items()
        if mode != "base"
        for metric, m in ms.items()
    }
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert {r.dataset_args["questions"] for r in card.data.eval_results} == {12}
    assert "12 questions (the first 12: --limit 12)" in card.text and "| base |" in card.text
    assert "no `base_model`: this base has no hub id" in card.text
    base_files = weights_sha256(tiny_model_dir())
    assert base_files and all(f"{digest}  {name}" in card.text for name, digest in base_files.items())
    assert json.loads((exported / "likra.json").read_text())["exported"]["root_head"] == "positive"


def test_the_cards_sha256_are_those_of_the_exported_files(exported):
    """Every weight file of the folder is listed as `sha256sum` prints it, and its bytes hash to that value."""
    text = (exported / "README.md").read_text()
    block = text.split("sha256 of the weight files", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    listed = dict(reversed(line.split("  ", 1)) for line in block.strip().splitlines())
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.safetensors"))
    heads = [f"adapters/{h}/adapter_model.safetensors" for h in ("negative", "positive")]
    assert sorted(listed) == files == ["adapter_model.safetensors", *heads]
    for name, digest in listed.items():
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == digest


def test_the_cards_commands_run_as_written(run, exported, capsys):
    """Every command of the card's bash and python blocks, exactly as the card writes them."""
    text = (exported / "README.md").read_text()
    bash = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    python = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert [line.split()[0] for line in bash] == ["likra", "python"]
    for line in bash:
        words = shlex.split(line)
        if words[0] == "likra":
            assert main(["-q", *words[1:]]) == 0, line
        else:
            assert words[:3] == ["python", "-m", "likra.lmeval"]
            pytest.importorskip("lm_eval")
            from likra.lmeval.__main__ import main as lmeval_main

            assert lmeval_main(words[3:]) == 0, line
    assert "likra_arc_challenge" in capsys.readouterr().out
    scope = {}
    exec(compile(python, "card", "exec"), scope)
    assert set(scope["model"].peft_config) == {"positive", "negative"}


def test_embedded_model_card_names_the_exact_weights(monkeypatch, tmp_path):
    """The embedded model's heads were trained on its GGUF's rebuild: the card says so with its weight file's
    sha256, names the hub checkpoint it comes from as base_model (the metadata's), and loads the base with likra's
    rebuild."""
    from huggingface_hub import ModelCard

    from likra.model import loading
    from likra.reports.hub import base_weights, model_card, weights_sha256

    rebuilt = save_tiny_model(tmp_path / "rebuilt")  # stands in for the rebuild (20 s and 540 MB)
    monkeypatch.setattr(loading, "embedded_model_dir", lambda: rebuilt)
    base = base_weights("smollm2-135m")
    assert base.load_from == str(rebuilt) and base.hub_id is None and base.sha256 == weights_sha256(rebuilt)
    manifest = {"model": {"name": "smollm2-135m"}, "heads": ["positive", "negative"], "data": {"spec": "arc-train"}}
    card = model_card("x", manifest, [], "exports/x", base)
    # base_model names the hub checkpoint the weights come from; the adapters load the rebuild
    assert ModelCard(card).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and "GGUF" in card
    assert f"`base_model_name_or_path` is `{rebuilt}`" in card and "not the weights themselves" in card
    ((name, digest),) = base.sha256.items()
    assert digest == hashlib.sha256((rebuilt / name).read_bytes()).hexdigest() and f"{digest}  {name}" in card
    assert "AutoModelForCausalLM.from_pretrained(embedded_model_dir())" in card
    hub = base_weights("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.hub_id == hub.load_from == "HuggingFaceTB/SmolLM2-135M-Instruct" and hub.sha256 is None
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in model_card("x", manifest, [], "x", hub)


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


def test_the_card_describes_the_heads_that_were_trained(tmp_path):
    """A run without the Likra pair gets a card about its own heads; the pair's card names the extra ones."""
    from likra.reports.hub import heads_paragraph

    run = tmp_path / "rq"
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    assert main([*args, "--heads", "rq=mle:negatives:random_question?contamination=0.25", "--out", str(run)]) == 0
    assert main(["-q", "export", str(run), str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "a *positive* head" not in card
        and "`rq` (mle on incorrect answers (random_question?contamination=0.25))" in card
    )
    assert "| rq | mle | `negatives:random_question?contamination=0.25` | 8 |" in card
    assert "Training data: `arc_easy:train` (8 questions). LoRA r=8, alpha=8 on " in card  # the data set, not a head's
    pair = json.loads((tmp_path / "rq" / "likra.json").read_text())
    pair["head_specs"] = [
        {"name": "positive", "objective": "mle", "data": "gold"},
        {"name": "negative", "objective": "mle", "data": "negatives:near_miss"},
        {"name": "dpo", "objective": "dpo", "data": "pairs:near_miss"},
    ]
    pair["head_data"] = {}
    text = heads_paragraph(pair)
    assert "a *positive* head" in text and "Also trained: `dpo` (dpo on correct against incorrect answers" in text


def card_eval_command(folder) -> list[str]:
    """The card's `likra eval` command, as a shell would split it."""
    text = (folder / "README.md").read_text()
    bash = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    (line,) = [line for line in bash if line.startswith("likra eval ")]
    return shlex.split(line)


@pytest.fixture(scope="module")
def crossed(tmp_path_factory):
    """A run evaluated on another format than it trained on, with shots from a named spec, its own few-shot seed
    and w = 0.5; exported. Returns (eval result, exported folder)."""
    run = train_tiny_run(tmp_path_factory.mktemp("crossed") / "run", limit=8)
    asked = ["--data", "arc_easy:validation", "--limit", "8", "--format", "letter", "--cross-format", "--shots", "2"]
    asked += ["--fewshot-seed", "9", "--fewshot-data", "arc_easy:train", "--weight", "0.5"]
    assert main(["-q", "eval", "--run", str(run), *asked]) == 0
    (result_file,) = (run / "eval").glob("*.json")
    out = run.parent / "exported"
    assert main(["-q", "export", str(run), str(out)]) == 0
    return json.loads(result_file.read_text()), out


def test_the_cards_eval_command_reproduces_the_reported_scores(crossed, tmp_path):
    """The card states every setting that shaped the scores, and its `likra eval` command, run on the exported
    folder, scores the same prompts: the same few-shot examples, log-likelihoods and metrics as the card reports.
    The command as it was (no --format, --cross-format, --fewshot-*) scores another prompt."""
    from likra.reports.hub import _row

    result, exported = crossed
    text = (exported / "README.md").read_text()
    stated = text.split("## Evaluation", 1)[1].split("| mode |", 1)[0]
    for setting in (
        "`arc_easy:validation`",
        "letter format (across formats, --cross-format: the heads were trained on cloze)",
        "no chat template",
        "2-shot (drawn from `arc_easy:train`, few-shot seed 9)",
        "8 questions (the first 8: --limit 8)",
        "w = 0.5",
        "scored in fp32",
    ):
        assert setting in stated, setting
    assert all(_row(mode, m) in text for mode, m in result["metrics"].items())  # the card's rows are the result's
    words = card_eval_command(exported)
    assert words[:4] == ["likra", "eval", "--run", str(exported)]
    for flag, value in (("--format", "letter"), ("--fewshot-seed", "9"), ("--fewshot-data", "arc_easy:train")):
        assert words[words.index(flag) + 1] == value
    out = tmp_path / "again.json"
    assert main(["-q", *words[1:], "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["fewshot_ids"] == result["fewshot_ids"] and again["question_ids"] == result["question_ids"]
    assert again["loglikelihoods"] == result["loglikelihoods"]
    assert again["metrics"] == result["metrics"]
    old = ["eval", "--run", str(exported), "--data", "arc_easy:validation", "--limit", "8", "--shots", "2"]
    assert main(["-q", *old, "--weight", "0.5", "--out", str(tmp_path / "old.json")]) == 0
    assert json.loads((tmp_path / "old.json").read_text())["loglikelihoods"] != result["loglikelihoods"]


def test_the_cards_modes_are_those_the_heads_can_score(tmp_path, capsys):
    """A run without the Likra pair (no `negative` head): the card's commands name modes of its own heads, and
    both run as written."""
    from likra.scoring.modes import check_heads

    run = tmp_path / "heads"
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    heads = "positive=mle:gold,rq=mle:negatives:random_question,d=dpo:pairs:near_miss"
    assert main([*args, "--heads", heads, "--out", str(run)]) == 0
    out = tmp_path / "out"
    assert main(["-q", "export", str(run), str(out)]) == 0
    words = card_eval_command(out)
    modes = words[words.index("--modes") + 1].split(",")
    assert modes == ["base", "positive", "rq", "d", "positive-w*rq", "base-w*rq"]
    check_heads(modes, ["positive", "rq", "d"])
    assert main(["-q", *words[1:]]) == 0
    text = (out / "README.md").read_text()
    (lmeval,) = [line for line in text.splitlines() if line.startswith("python -m likra.lmeval")]
    lmeval_words = shlex.split(lmeval)
    assert lmeval_words[lmeval_words.index("--model_args") + 1] == f"run={out},mode=positive-w*rq"
    pytest.importorskip("lm_eval")
    from likra.lmeval.__main__ import main as lmeval_main

    assert lmeval_main(lmeval_words[3:]) == 0, lmeval
    assert "likra_arc_challenge" in capsys.readouterr().out


DPO_D = {"name": "d", "objective": "dpo", "data": "pairs:near_miss"}
RQ = {"name": "rq", "data": "negatives:random_question"}


@pytest.mark.parametrize(
    "heads, specs, expected, lmeval",
    [
        (["positive", "negative", "dpo"], [], ["base", "sft", "likra", "negbase"], "likra"),
        (["positive", "d"], [DPO_D], ["base", "positive", "d"], "positive"),
        (["rq"], [RQ], ["base", "rq", "base-w*rq"], "base-w*rq"),
        (["positive", "sft"], [], ["base", "positive"], "positive"),  # a head named like a mode is not reachable
    ],
)
def test_suggested_modes_name_the_heads(heads, specs, expected, lmeval):
    """Without evaluations, the card's commands use modes of the heads it exports, each one scorable."""
    from likra.reports.hub import base_weights, lmeval_mode, model_card, suggested_modes
    from likra.scoring.modes import check_heads

    manifest = {"model": {"name": "random-tiny"}, "heads": heads, "head_specs": specs, "data": {"spec": "arc-train"}}
    assert suggested_modes(manifest) == expected and lmeval_mode(expected) == lmeval
    check_heads(expected, heads)
    card = model_card("x", manifest, [], "x", base_weights("random-tiny"))
    bash = [shlex.split(line) for line in card.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()]
    assert bash[0][bash[0].index("--modes") + 1] == ",".join(expected)
    assert bash[1][bash[1].index("--model_args") + 1] == f"run=x,mode={lmeval}"
