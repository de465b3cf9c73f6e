"""Job output to HTML: ANSI SGR colours become spans, everything else is escaped text.

The subset jobs print (GitLab's runners and most tools): reset, bold, faint, italic,
underline, the 8+8 foreground and background colours and their resets.  Other escape
sequences (cursor moves, 256/true colour, OSC titles) are dropped rather than shown as
garbage.  ``static/dashboard.js`` converts the chunks that arrive while the page is open
with the same rules; this module renders the log the page opens with, so a browser
without JavaScript sees the colours too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

from markupsafe import Markup

# CSI sequences (ESC [ params final) and OSC ones (ESC ] ... BEL or ESC \).
_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b")
_CAP = re.compile(r"^\[farm\] log truncated:.*$", re.MULTILINE)
_FLAGS = {1: "b", 2: "f", 3: "i", 4: "u"}
_FLAG_OFF = {22: ("b", "f"), 23: ("i",), 24: ("u",)}


@dataclass
class SgrState:
    """The attributes in force: colours (0-15 or None) and the style flags."""

    fg: int | None = None
    bg: int | None = None
    flags: set[str] = field(default_factory=set)

    def apply(self, params: str) -> None:
        """Apply one SGR parameter list (``"1;31"``; empty means reset)."""
        codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.fg, self.bg, self.flags = None, None, set()
            elif code in _FLAGS:
                self.flags.add(_FLAGS[code])
            elif code in _FLAG_OFF:
                self.flags.difference_update(_FLAG_OFF[code])
            elif 30 <= code <= 37 or 90 <= code <= 97:
                self.fg = code - 30 if code < 90 else code - 90 + 8
            elif 40 <= code <= 47 or 100 <= code <= 107:
                self.bg = code - 40 if code < 100 else code - 100 + 8
            elif code == 39:
                self.fg = None
            elif code == 49:
                self.bg = None
            elif code in (38, 48):  # 256 or true colour: skip its arguments, keep the text
                i += 2 if i + 1 < len(codes) and codes[i + 1] == 5 else 4
            i += 1

    def classes(self) -> str:
        """CSS classes for the current attributes ('' when plain)."""
        out = [f"a-fg{self.fg}"] if self.fg is not None else []
        if self.bg is not None:
            out.append(f"a-bg{self.bg}")
        out += [f"a-{f}" for f in sorted(self.flags)]
        return " ".join(out)


def to_html(text: str, state: SgrState | None = None) -> Markup:
    """``text`` as safe HTML with colour spans; the log-cap marker is highlighted."""
    state = state or SgrState()
    parts: list[str] = []
    pos = 0

    def emit(chunk: str) -> None:
        if not chunk:
            return
        body = _CAP.sub(lambda m: f'<mark class="log-cap">{m.group(0)}</mark>', escape(chunk))
        css = state.classes()
        parts.append(f'<span class="{css}">{body}</span>' if css else body)

    for m in _ESCAPE.finditer(text):
        emit(text[pos : m.start()])
        if m.group(2) == "m":
            state.apply(m.group(1))
        pos = m.end()
    emit(text[pos:])
    return Markup("".join(parts))
