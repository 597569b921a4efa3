"""YAML syntax problems in the router's own words, at the place to fix (part of stage 1,
document.py): the nesting limit found before any library's limit, unprintable characters,
and the common syntax mistakes of routing files. Pure."""

from __future__ import annotations

import re

import yaml

from router.errors import PolicyError

MAX_DEPTH = 200


def too_deep_somewhere(file: str) -> PolicyError:
    """The problem for text that nests too deep for the parser at a place we cannot find."""
    return PolicyError(file, 1, 1, "YAML nesting is too deep", "too-deep")


def nesting_problem(text: str, file: str) -> PolicyError | None:
    """The problem at the first list or mapping nested past MAX_DEPTH, or None when the text
    nests no deeper (up to the point where it stops parsing): the event stream is flat, so
    finding it recurses nowhere."""
    depth = 0
    try:
        # The pure-Python parser: libyaml's scanner reads ahead through a flow collection
        # (to see whether it is a key) and stops at its own limit before we see level 201.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    return PolicyError(file, line, col, f"nesting deeper than {MAX_DEPTH} levels", "too-deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return None


_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def unprintable(text: str) -> tuple[int, int, str]:
    """(line, col, message) of the first character YAML does not allow in a document."""
    m = _UNPRINTABLE.search(text)
    if m is None:  # pragma: no cover - the reader refused something; be total anyway
        return 1, 1, "YAML: a character that YAML does not allow"
    line = text.count("\n", 0, m.start()) + 1
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return line, col, f"the character U+{ord(m.group()):04X} is not allowed in YAML; delete it"


def syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, int, str]:
    """(line, col, message) for a YAML syntax error, with the hint a policy author needs.

    libyaml and PyYAML word some problems differently and libyaml leaves out the character
    at fault, so the common cases are read back from the text at the problem mark."""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    lines = text.splitlines()
    at = lines[line - 1][col - 1 :] if 0 < line <= len(lines) else ""
    context = exc.context_mark if exc.context and exc.problem else None
    if "cannot start any token" in problem and at[:1] == "\t":
        return line, col, "a tab character; YAML indents with spaces, not tabs"
    if "cannot start any token" in problem and at:
        return line, col, f'a value cannot start with "{at[0]}"; put the value in quotes'
    if problem.startswith("found undefined alias") and at.startswith("*"):
        name = re.match(r"\*[^\s,\[\]{}]*", at)
        alias = name.group(0) if name else "*"
        return (
            line,
            col,
            (
                f"{alias} reads as a YAML alias, and there is no anchor &{alias[1:]}; "
                "a value that starts with * must be in quotes"
            ),
        )
    if problem.startswith("mapping values are not allowed"):
        return (
            line,
            col,
            ('a ": " inside a value: put the value in quotes, or start a nested mapping on its own line'),
        )
    if context is not None and "quoted scalar" in str(exc.context):  # the fix is at the opening quote
        return context.line + 1, context.column + 1, "this quoted value has no closing quote"
    if context is not None and "end of stream" in problem:  # an unclosed bracket
        return context.line + 1, context.column + 1, f"{problem} ({exc.context} that starts here)"
    if context is not None:
        # Our words for the structure that is broken, so the message (and the tests) do not
        # change with the YAML library's wording; its words remain the last resort.
        where = f"line {context.line + 1}, column {context.column + 1}"
        structure = str(exc.context)
        for kind, opening, closing in (("flow mapping", "{", "}"), ("flow sequence", "[", "]")):
            if kind in structure:
                missing = f"a ',' or '{closing}' is missing"
                return line, col, f"the {opening} opened at {where} is not closed: {missing}"
        if "block" in structure:
            return line, col, f"this line is not indented like the block that starts at {where}"
        if context.line + 1 != line:
            return line, col, f"{problem} ({structure} that starts at {where})"
    return line, col, problem
