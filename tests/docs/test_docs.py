"""Every ```python block of README.md and docs/**/*.md runs, page by page.

The blocks of one page run in order in ONE fresh module, so later blocks build on earlier
ones, exactly as a reader would paste them into a file. The module is registered in
``sys.modules`` while its page runs: dataclasses, pydantic and ``typing.get_type_hints`` (which
ecopy uses to bind handler parameters) resolve annotations through it, also under
``from __future__ import annotations``. A ``from __future__`` import in a block carries over to
the page's later blocks, as it would in a file.

Fences: ```python runs; ```python skip-check is allowed only for text that is not valid Python
at all (shell-ish content); everything else (```bash, ```text, ...) is not run.
"""

from __future__ import annotations
import __future__

import ast
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
#: Pages that only map the others: they need no runnable snippet.
INDEX_PAGES = {DOCS / "index.md"}

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FUTURE_FLAGS = __future__.annotations.compiler_flag


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # line of the first line of code, 1-based
    info: str
    code: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def options(self) -> list[str]:
        return self.info.split()[1:]

    @property
    def where(self) -> str:
        return f"{shown(self.page)}:{self.line}"


def shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks_of(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, in order."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence, info = opening["fence"], opening["info"].strip()
        indent = len(opening["indent"])  # a fence indented in a list: its lines are too
        start, body = index, []
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            line = lines[index]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            index += 1
        else:
            pytest.fail(f"{shown(page)}:{start}: code block is never closed")
        index += 1
        blocks.append(Block(page, start + 1, info, "\n".join(body) + "\n"))
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    found = []
    for block in blocks:
        if block.language not in ("python", "py"):
            continue
        if block.options == ["skip-check"]:
            continue
        assert not block.options, f"{block.where}: unknown fence options {block.options}"
        found.append(block)
    return found


def run_page(page: Path, module_name: str) -> None:
    """Run the page's blocks in order in one fresh module named ``module_name``."""
    module = types.ModuleType(module_name)
    module.__file__ = str(page)
    sys.modules[module_name] = module
    flags = 0
    try:
        for block in runnable(blocks_of(page)):
            # The padding keeps markdown line numbers in tracebacks.
            source = "\n" * (block.line - 1) + block.code
            code = compile(source, str(page), "exec", flags=flags, dont_inherit=True)
            flags |= code.co_flags & _FUTURE_FLAGS
            exec(code, module.__dict__)
    finally:
        del sys.modules[module_name]


def _page_id(page: Path) -> str:
    return shown(page)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_snippets_run(page: Path) -> None:
    run_page(page, "ecopy_docs_" + re.sub(r"\W", "_", shown(page).removesuffix(".md")))


@pytest.mark.parametrize("page", [p for p in PAGES if p not in INDEX_PAGES], ids=_page_id)
def test_page_has_a_runnable_snippet(page: Path) -> None:
    assert runnable(blocks_of(page)), f"{_page_id(page)} has no ```python block that runs"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_skip_check_is_only_for_text_that_is_not_python(page: Path) -> None:
    for block in blocks_of(page):
        if block.language == "python" and "skip-check" in block.options:
            try:
                ast.parse(block.code)
            except SyntaxError:
                continue
            pytest.fail(f"{block.where}: this block is valid Python; run it (```python)")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_point_to_existing_files(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{_page_id(page)} links to missing {target}"


def test_the_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        if page not in INDEX_PAGES:
            link = str(page.relative_to(DOCS))
            assert f"({link})" in index, f"docs/index.md does not link {link}"


_SELF_TEST_PAGE = """\
```python
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel

from ecopy import Header, bootstrap, command_handler


class Basket(BaseModel):
    items: list[Item]  # a forward reference, resolved through the page's module


@dataclass
class Item:
    sku: str
```

```bash
not python at all
```

```python
class Cart:
    @command_handler("cart.add")
    def add(self, basket: Basket, who: Annotated[str, Header("user")]) -> list[Item]:
        return basket.items


app = bootstrap(classes=[Cart])
added = app.command_bus.send_with_routing(
    "cart.add", {"items": [{"sku": "a"}]}, headers={"user": "u"}
)
assert added == [Item("a")]
assert isinstance(Cart.add.__annotations__["basket"], str)  # the future import carried over
```
"""


def test_the_runner_resolves_type_hints_across_blocks(tmp_path: Path) -> None:
    """Classes defined in one block work as annotations in the next, for dataclasses, pydantic
    and ecopy's parameter binding, also under ``from __future__ import annotations``."""
    page = tmp_path / "page.md"
    page.write_text(_SELF_TEST_PAGE, encoding="utf-8")
    blocks = blocks_of(page)
    assert [b.language for b in blocks] == ["python", "bash", "python"]
    assert blocks[2].line == 26
    run_page(page, "ecopy_docs_selftest")
    assert "ecopy_docs_selftest" not in sys.modules


def test_a_failing_snippet_points_at_its_markdown_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Intro.\n\n```python\nx = 1\nassert x == 2, 'wrong'\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="wrong") as failure:
        run_page(page, "ecopy_docs_failing")
    assert failure.traceback[-1].lineno + 1 == 5  # pytest's lineno is 0-based


def test_a_fence_indented_in_a_list_runs_dedented(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "- an item:\n\n   ```python\n   if True:\n       x = 2\n   assert x == 2\n   ```\n",
        encoding="utf-8",
    )
    [block] = blocks_of(page)
    assert block.code == "if True:\n    x = 2\nassert x == 2\n"
    run_page(page, "ecopy_docs_indented")
