"""XML annotation files read with the line number of every element, so problems can name it.

The standard library's ElementTree forgets where an element was; expat (which it wraps) knows.
Building the tree from expat's callbacks keeps one line number per element without lxml.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat


class XmlError(ValueError):
    """A file that does not parse, or an element that lacks a field or holds a bad value."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class XmlDoc:
    """A parsed XML file: its root element and typed, line-aware field access."""

    def __init__(self, path: Path, root: ET.Element, lines: dict[int, int]) -> None:
        self.path = path
        self.root = root
        self._lines = lines

    def line(self, element: ET.Element | None) -> int | None:
        return None if element is None else self._lines.get(id(element))

    def text(self, parent: ET.Element, path: str, default: str | None = None) -> str:
        """Stripped text of the child at `path`; XmlError when it is missing or empty and no
        default is given."""
        child = parent.find(path)
        value = (child.text or "").strip() if child is not None else ""
        if value:
            return value
        if default is not None:
            return default
        where = child if child is not None else parent
        raise XmlError(f"<{parent.tag}> lacks a value for <{path}>", self.line(where))

    def number(self, parent: ET.Element, path: str) -> float:
        value = self.text(parent, path)
        try:
            return float(value)
        except ValueError:
            raise XmlError(f"<{path}> is not a number: {value!r}", self.line(parent.find(path))) from None

    def size(self, width_path: str, height_path: str) -> tuple[int, int] | None:
        """(width, height) from the root's size fields, or None when the file does not give them."""
        try:
            width, height = int(self.number(self.root, width_path)), int(self.number(self.root, height_path))
        except XmlError:
            return None
        return (width, height) if width > 0 and height > 0 else None


def parse_xml(path: str | Path) -> XmlDoc:
    """Parse `path`; XmlError (with the line) when it is not well-formed, OSError when unreadable."""
    path = Path(path)
    data = path.read_bytes()
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    lines: dict[int, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        root = builder.close()
    except expat.ExpatError as err:
        raise XmlError(f"not well-formed XML: {expat.ErrorString(err.code)}", err.lineno) from None
    return XmlDoc(path, root, lines)
