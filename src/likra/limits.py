"""What likra reads from files a user hands it, and the limits it reads them within.

Every reader goes through here: JSONL lines (questions, preference pairs, prompts), JSON files (run manifests,
a curve folder's scores and markers, eval results) and YAML configs. A file outside these limits, or one that
does not decode, is one `LikraError` naming file (and line), never a traceback, a RecursionError or gigabytes
of memory:

- nesting: at most `MAX_DEPTH` levels of lists/objects (likra's own formats need fewer than ten);
- size: a JSONL line at most `MAX_LINE_BYTES`, a JSON file at most `MAX_JSON_BYTES`, a YAML config at most
  `MAX_YAML_BYTES`;
- text: every string must be valid Unicode (a lone surrogate escape such as `"\\ud800"` is refused: no
  tokenizer can encode it);
- YAML: duplicate keys are refused (with the line of both), and anchors/aliases may expand to at most
  `MAX_YAML_NODES` nodes (an "alias bomb" fails at once, before anything is built);
- messages: a value echoed in an error is cut to `ECHO_CHARS` characters (`shorten`).

This module imports nothing of likra's above `errors`, so every layer may use it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from likra.errors import LikraError

MAX_DEPTH = 100
MAX_LINE_BYTES = 16 * 2**20
MAX_JSON_BYTES = 256 * 2**20
MAX_YAML_BYTES = 2**20
MAX_YAML_NODES = 10_000
ECHO_CHARS = 120

# A \uD800-\uDFFF escape: the only way a JSON text decoded from UTF-8 can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def shorten(text: Any, limit: int = ECHO_CHARS) -> str:
    """`text` (or its repr when not a string) cut to `limit` characters, saying how long it was."""
    text = text if isinstance(text, str) else repr(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any, where: str, strings: bool = True) -> Any:
    """Walk `value` (without recursion): refuse nesting deeper than `MAX_DEPTH` and, with `strings`, text that
    is not valid Unicode (lone surrogates). Returns `value`."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if strings and not _is_text(item):
                raise LikraError(
                    f"{where}: text with a lone surrogate ({shorten(ascii(item), 40)}) is not valid Unicode"
                )
        elif isinstance(item, (list, tuple, dict)):
            if depth > MAX_DEPTH:
                raise LikraError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(twice)
    return out


def parse_json(text: str, where: str) -> Any:
    """The JSON value of `text`, within the limits above; a LikraError naming `where` otherwise (a key given twice in
    one object too, as in YAML: JSON would keep the last one silently)."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise LikraError(f"{where}: key {shorten(repr(e.args[0]))} given twice in one object") from None
    except RecursionError:
        raise LikraError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise LikraError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise LikraError(f"{where}: invalid JSON ({shorten(str(e))})") from None
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if deep or surrogates:
        check_value(value, where, strings=surrogates)
    return value


def read_json_file(path: str | Path, damaged: str = "unreadable JSON file") -> Any:
    """The JSON value of file `path` (UTF-8, at most `MAX_JSON_BYTES`); a LikraError `<path>: <damaged> (...)`
    when it cannot be read as one."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise LikraError(f"{path}: {damaged} (larger than {mib(MAX_JSON_BYTES)})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LikraError(f"{path}: {damaged} (not UTF-8 text)") from None
    try:
        return parse_json(text, str(path))
    except LikraError as e:
        raise LikraError(f"{path}: {damaged} ({str(e)[len(str(path)) + 2 :]})") from None


# -- YAML -----------------------------------------------------------------------------------------
def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML's safe loader that refuses a key given twice in one mapping, and reads plain scalars by YAML 1.2's
        core schema instead of 1.1's surprises: `010` is ten (not octal eight), `0o10` is eight, `1:30` is text (not
        sexagesimal ninety), and only true/false are booleans (`yes`, `no`, `on`, `off` are text, which a setting
        then takes or refuses by its type)."""

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML's own message follows
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {shorten(repr(key), 60)} (first at line {first})",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, pattern, firsts in _YAML12_CORE:
        Loader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(firsts))
    Loader.add_constructor("tag:yaml.org,2002:int", _construct_core_int)
    return Loader


_YAML11_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), with `_` digit groups refused as 1.2 does.
_YAML12_CORE = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
]


def _construct_core_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _expanded_size(root) -> int:
    """Nodes of the document once every alias is expanded (aliases share node objects), without recursion."""
    import yaml

    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        if children_done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                return sizes[id(node)]
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str, where: str) -> Any:
    """The value of a YAML document (PyYAML's safe schema) within the limits above; a LikraError
    `<where>:<line>: ...` otherwise."""
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise LikraError(f"{where}: a config file of more than {mib(MAX_YAML_BYTES)}")
    try:
        # The composer recurses per level: measure the nesting on the event stream first (the parser does not).
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise LikraError(f"{where}:{event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = _yaml_loader()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node) > MAX_YAML_NODES:
                raise LikraError(
                    f"{where}: its aliases expand to more than {MAX_YAML_NODES:,} values; "
                    "write the settings out instead of nesting aliases"
                )
            value = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise LikraError(f"{where}{line}: invalid YAML ({shorten(e.problem or e.context or 'unreadable')})") from None
    except yaml.YAMLError as e:
        reason = (str(e).splitlines() or ["unreadable"])[0]
        raise LikraError(f"{where}: invalid YAML ({shorten(reason)})") from None
    return check_value(value, where)
