#!/usr/bin/env python3
"""Merge the rloss proto fragment into a caffe.proto, idempotently.

Each top-level message or enum of the fragment is merged member by member into
the caffe.proto block of the same name: a member already there with the same
definition is skipped, a missing one is inserted, and a clash (same name with
another definition, or a field number already taken) stops the merge with a
message naming both sides. Blocks caffe.proto lacks are appended whole. So a
second merge changes nothing, and a DeepLab-derived caffe.proto that already
defines some of our messages is accepted as long as it agrees with us.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

FIELD_RE = re.compile(
    r"^(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(\[.*\])?$", re.S)
BLOCK_RE = re.compile(r"\b(message|enum|oneof)\s+(\w+)\s*\{")


class MergeError(Exception):
    """A definition in the fragment contradicts the target caffe.proto."""


@dataclass
class Member:
    kind: str          # 'field', 'message', 'enum', 'oneof' or 'other'
    name: str
    number: int | None
    canonical: str     # comment-free, whitespace-normalised definition
    text: str          # original text, leading comments included


@dataclass
class Block:
    kind: str
    name: str
    start: int         # offset of the text that introduces the block (comments too)
    close: int         # offset of its closing brace
    end: int           # offset just past the closing brace
    members: list[Member]


def blank_comments(text: str) -> str:
    """Replace // and /* */ comments by spaces, keeping every offset."""
    out = list(text)
    i, n, quote = 0, len(text), None
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
            continue
        i += 1
    return "".join(out)


def canonical(code: str) -> str:
    code = " ".join(code.split())
    return re.sub(r"\s*([=\[\]{};,])\s*", r"\1", code)


def _match_brace(code: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise MergeError("unbalanced braces in proto text")


def _statements(text: str, code: str, begin: int, end: int):
    """Yield (span_start, code_start, code_end, kind, name) for each statement
    at depth 0 of code[begin:end]; span_start includes preceding comments."""
    i = span = begin
    while i < end:
        if code[i].isspace() or code[i] == ";":
            i += 1
            if code[i - 1] == ";":
                span = i
            continue
        m = BLOCK_RE.match(code, i)
        if m:
            close = _match_brace(code, m.end() - 1)
            yield span, i, close + 1, m.group(1), m.group(2)
            i = span = close + 1
            continue
        semi = code.find(";", i, end)
        if semi < 0:
            raise MergeError(f"statement without ';' near: {code[i:i + 40]!r}")
        yield span, i, semi, "stmt", ""
        i = span = semi + 1


def _member(text: str, code: str, span: int, cstart: int, cend: int,
            kind: str, name: str) -> Member:
    body = canonical(code[cstart:cend])
    lead = text[span:cstart]
    lead = lead[lead.find("\n") + 1:] if "\n" in lead else ""  # drop tail of previous line
    original = lead + text[cstart:cend] + (";" if kind == "stmt" else "")
    if kind == "stmt":
        m = FIELD_RE.match(body)
        if m:
            return Member("field", m.group(3), int(m.group(4)), body, original)
        return Member("other", body, None, body, original)
    return Member(kind, name, None, body, original)


def parse(text: str) -> list[Block]:
    """Top-level messages and enums of a .proto text, with their members."""
    code = blank_comments(text)
    blocks = []
    for span, cstart, cend, kind, name in _statements(text, code, 0, len(code)):
        if kind not in ("message", "enum"):
            continue  # syntax, package, option, import
        open_pos = code.index("{", cstart)
        close = cend - 1
        members = [_member(text, code, *s)
                   for s in _statements(text, code, open_pos + 1, close)]
        blocks.append(Block(kind, name, span, close, cend, members))
    return blocks


def merge(target: str, fragment: str) -> tuple[str, list[str]]:
    """Return the merged text and a list of what was added."""
    existing = {b.name: b for b in parse(target)}
    inserts: list[tuple[int, str]] = []
    appended: list[str] = []
    added: list[str] = []
    for block in parse(fragment):
        have = existing.get(block.name)
        if have is None:
            appended.append(fragment[block.start:block.end].strip("\n"))
            added.append(f"{block.kind} {block.name}")
            continue
        if have.kind != block.kind:
            raise MergeError(f"{block.name} is a {have.kind} in caffe.proto but a "
                             f"{block.kind} in the rloss fragment")
        new_text = []
        for m in block.members:
            same_name = [h for h in have.members if h.kind == m.kind and h.name == m.name]
            if same_name:
                if same_name[0].canonical != m.canonical:
                    raise MergeError(
                        f"{block.name}.{m.name} already exists in caffe.proto as "
                        f"'{same_name[0].canonical}', rloss needs '{m.canonical}'; "
                        "remove one of them")
                continue
            if m.number is not None:
                taken = [h for h in have.members if h.number == m.number]
                if taken:
                    raise MergeError(
                        f"field number {m.number} of {block.name} is taken by "
                        f"'{taken[0].canonical}' in caffe.proto; rloss needs it for "
                        f"'{m.canonical}'")
            new_text.append(m.text.strip("\n"))
            added.append(f"{block.name}.{m.name}")
        if new_text:
            inserts.append((have.close, "  // Added by rloss (caffe_layers/rloss.proto).\n"
                            + "\n".join(new_text) + "\n"))
    merged = target
    for pos, snippet in sorted(inserts, reverse=True):
        line_start = merged.rfind("\n", 0, pos) + 1
        merged = merged[:line_start] + snippet + merged[line_start:]
    if appended:
        merged = merged.rstrip("\n") + "\n\n" + "\n\n".join(appended) + "\n"
    return merged, added


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", type=Path, help="caffe.proto to update in place")
    ap.add_argument("--fragment", type=Path,
                    default=Path(__file__).with_name("rloss.proto"))
    ap.add_argument("--base", type=Path,
                    help="merge into this pristine caffe.proto instead of target's own text")
    args = ap.parse_args(argv)
    for p in (args.base or args.target, args.fragment):
        if not p.is_file():
            print(f"merge_proto: no such file: {p}", file=sys.stderr)
            return 2
    base = (args.base or args.target).read_text()
    try:
        merged, added = merge(base, args.fragment.read_text())
    except MergeError as e:
        print(f"merge_proto: {args.target}: {e}", file=sys.stderr)
        return 1
    old = args.target.read_text() if args.target.exists() else None
    if merged != old:
        args.target.write_text(merged)
        print(f"merge_proto: {args.target}: added {', '.join(added) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
