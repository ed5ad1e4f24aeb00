"""Every fenced ``python`` block in README.md and docs/ runs, and shown output matches.

The blocks of one page run in order as one script (later blocks use what earlier ones
defined), in a fresh interpreter per page, as a reader would paste them.  A block
directly followed by a ``text title="Output"`` block must print exactly that text.
A block preceded by ``<!-- no-run: reason -->`` is only compiled; the reason is
required.  docs/writing-a-runner.md shows fragments of a runner (its complete example
runner is tested by tests/test_plugin.py), so its blocks are compiled, not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_hooks" not in p.parts),
]
COMPILE_ONLY_PAGES = {
    "docs/writing-a-runner.md": "fragments of a runner; "
    "examples/sequential_runner is the runnable one (tests/test_plugin.py)"
}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>[^`]*)$")
NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<reason>.*?)\s*-->")
OUTPUT_INFO = re.compile(r'^text\s+title="Output"$')
SENTINEL = "@@braid-docs-block {}@@"


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    info: str
    code: str
    skip_reason: str | None = None
    expected: str | None = None


def blocks_of(path: Path) -> list[Block]:
    """The python blocks of ``path``, each with its skip reason and expected output."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced: list[tuple[int, str, str, int]] = []  # (start line, info, code, end line)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:])
            j += 1
        assert j < len(lines), f"{rel}:{i + 1}: unclosed code fence"
        fenced.append((i, m["info"].strip(), "\n".join(body) + "\n", j))
        i = j + 1
    found = []
    for k, (start, info, code, end) in enumerate(fenced):
        if info.split(" ")[0] not in ("python", "py"):
            continue
        before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        skip = NO_RUN.search(before)
        if skip:
            assert skip["reason"], f"{rel}:{start + 1}: a no-run marker needs a reason"
        if rel in COMPILE_ONLY_PAGES:
            skip_reason = COMPILE_ONLY_PAGES[rel]
        else:
            skip_reason = skip["reason"] if skip else None
        expected = None
        if k + 1 < len(fenced):
            nstart, ninfo, ncode, _ = fenced[k + 1]
            between = lines[end + 1 : nstart]
            if OUTPUT_INFO.match(ninfo) and not any(ln.strip() for ln in between):
                expected = ncode
        found.append(Block(rel, start + 1, info, code, skip_reason, expected))
    return found


ALL_BLOCKS = {p.relative_to(ROOT).as_posix(): blocks_of(p) for p in PAGES}
RUN_PAGES = [
    page for page, blocks in ALL_BLOCKS.items() if any(b.skip_reason is None for b in blocks)
]


def test_there_are_examples_and_few_skips():
    blocks = [b for bs in ALL_BLOCKS.values() for b in bs]
    skipped = [b for b in blocks if b.skip_reason and b.page not in COMPILE_ONLY_PAGES]
    assert len(blocks) >= 30
    assert len(skipped) <= 8, [f"{b.page}:{b.line}" for b in skipped]


@pytest.mark.parametrize("page", sorted(ALL_BLOCKS))
def test_every_block_compiles(page):
    for block in ALL_BLOCKS[page]:
        compile(block.code, f"{page}:{block.line}", "exec")


def page_script(blocks: list[Block]) -> str:
    parts = []
    for n, block in enumerate(blocks):
        parts.append(f"print({SENTINEL.format(n)!r}, flush=True)\n")
        parts.append(block.code)
    return "".join(parts)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_examples_run_and_print_what_the_page_shows(page, tmp_path):
    blocks = [b for b in ALL_BLOCKS[page] if b.skip_reason is None]
    script = tmp_path / "page_example.py"
    script.write_text(page_script(blocks), encoding="utf-8")
    # exec'd as in an interactive session, so __main__ has no file: spawned workers
    # (processes, Dask's nannies) have no main script to re-run.  The pages show the
    # `if __name__ == "__main__":` guard a script needs where it starts processes.
    run = f"p = {str(script)!r}; exec(compile(open(p).read(), p, 'exec'))"
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        PYTHONUNBUFFERED="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", run],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        stdin=subprocess.DEVNULL,
    )
    outputs = re.split(r"^@@braid-docs-block \d+@@\n", done.stdout, flags=re.M)[1:]
    ran = len(outputs)
    where = f"{page}:{blocks[min(max(ran - 1, 0), len(blocks) - 1)].line}"
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
    assert ran == len(blocks), done.stdout[-3000:]
    for block, out in zip(blocks, outputs, strict=True):
        if block.expected is not None:
            assert out.rstrip() == block.expected.rstrip(), (
                f"{page}:{block.line} printed\n{out}\ninstead of\n{block.expected}"
            )
