"""The README's layout section is the tree: every module is listed where it lies, and nothing listed is missing.
Also the one-way flow it states: no module imports one of a higher layer, library code never imports a command."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "likra"


def layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout\n```\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def listed_modules() -> set[str]:
    """Paths (relative to src/likra) of the files the layout block lists, from its indentation."""
    lines = layout_block()
    assert lines[0].strip() == "src/likra/"
    folders: dict[int, str] = {0: ""}
    found = set()
    for line in lines[1:]:
        match = re.match(r"^( *)([\w.]+)(/?)", line)
        assert match and len(match.group(1)) % 2 == 0 and match.group(1), f"layout line {line!r}"
        depth = len(match.group(1)) // 2
        parent = folders[depth - 1]
        if match.group(3):
            folders[depth] = f"{parent}{match.group(2)}/"
        else:
            found.add(f"{parent}{match.group(2)}")
    return found


def test_readme_layout_matches_the_tree():
    tree = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") or p.parent.name == "cli"
    }
    listed = listed_modules()
    assert sorted(tree - listed) == [], "modules missing from the README's layout"
    assert sorted(listed - tree) == [], "README's layout lists modules that do not exist"


# Layers, lowest first: a module may import its own layer and lower ones only.
LAYERS = [
    {
        "errors",
        "registry",
        "io",
        "limits",
        "locations",
        "config",
        "distributed",
        "packing",
        "progress",
        "assets",
        "extras",
    },
    {"data"},
    {"model", "runs", "tracking"},
    {"objectives"},
    {"training", "scoring"},
    {"generation", "experiments", "reports", "lmeval", "plugins"},
    {"cli", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    return next(k for k, names in enumerate(LAYERS) if top in names)


def test_imports_flow_one_way():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if module.endswith("__init__") and module.count(".") == 0:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("likra."):
                targets = [node.module[len("likra.") :]]
            elif isinstance(node, ast.Import):
                targets = [a.name[len("likra.") :] for a in node.names if a.name.startswith("likra.")]
            for target in targets:
                if layer_of(target) > layer_of(module):
                    upward.append(f"{module} imports {target}")
    assert upward == []
    assert layer_of("cli.train") > layer_of("experiments.curve") > layer_of("objectives.mle") > layer_of("data.records")
