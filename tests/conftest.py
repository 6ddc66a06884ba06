import os
import warnings
from pathlib import Path

import pytest
import torch

from likra.cli import main
from likra.data.records import MCRecord
from likra.model.heads import LoraSettings, attach_heads
from likra.model.loading import build_tiny_model, build_tiny_tokenizer

warnings.filterwarnings("ignore", category=FutureWarning)
# The suite's --dtype auto decides as on a CPU without bf16 instructions (fp32), on every CPU kind and in every
# process it starts: the numbers tests compare do not depend on the machine. The policy's own tests set a kind.
os.environ["LIKRA_CPU_BF16_FLAGS"] = ""


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return build_tiny_model(len(tiny_tokenizer), seed=0)


@pytest.fixture
def tiny_heads(tiny_model):
    """A PeftModel whose positive and negative heads differ from the base and from each other."""
    model = attach_heads(tiny_model, LoraSettings())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def make_records(n: int = 12, n_choices: int = 4) -> list[MCRecord]:
    """Synthetic questions with choices of different lengths (one-token to multi-token answers)."""
    records = []
    for i in range(n):
        k = 2 + (i % (n_choices - 1))
        choices = tuple(("x" if j == 0 else f"answer {i}-{j} " + "long " * j).strip() for j in range(k))
        records.append(MCRecord(f"q{i}", f"Question: what is item {i} like?\nAnswer:", choices, i % k, "synthetic"))
    return records


@pytest.fixture
def records():
    return make_records()


# The tiny curve most curve/study tests run: random-tiny, 16 ARC questions, two optimizer steps of 8, 10 evaluated.
TINY_CURVE_ARGS = ["--model", "random-tiny", "--data", "arc_challenge:train", "--limit", "16", "--batch-size", "8",
                   "--lr", "0.01", "--eval-data", "arc_challenge:validation", "--eval-limit", "10"]  # fmt: skip


def one_line_error(capsys, code: int) -> str:
    """likra's stderr after exit `code`: it must be exit 2 with one `likra: error: ...` line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("likra: error: ") and "\n" not in err and "Traceback" not in err
    # One prefix: no second "likra <command>:" or "command line:" inside it.
    assert "likra: error: likra" not in err and "command line:" not in err, err
    return err


@pytest.fixture(autouse=True)
def _bitsandbytes_importable():
    """A command run in-process keeps bitsandbytes out of the process (`defer_bitsandbytes`); give the next test
    the process as it was."""
    yield
    from likra.model.quantization import allow_bitsandbytes, deferred

    if deferred():
        allow_bitsandbytes()


def save_tiny_model(folder: Path) -> Path:
    """`random-tiny` (its weights and tokenizer) saved as a plain model folder, as the hub or a user keeps one:
    what stock tools (lm-eval's `hf` model, transformers' and peft's auto classes) load."""
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_run(out: Path, limit: int) -> Path:
    """A `likra train` run folder of random-tiny on `limit` ARC-Easy questions (batch 8, lr 0.01), for tests
    that need trained heads."""
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", str(limit)]
    assert main([*args, "--batch-size", "8", "--lr", "0.01", "--out", str(out)]) == 0
    return out
