"""Text read from a run folder, shown as it is written.

A run folder is untrusted input: its folder name, dataset, layer and category
names, and the file names a warning quotes come from whoever made it. Streamlit
renders Markdown in ``st.markdown``, captions, alerts, progress text and widget
labels (an image link there makes every viewer's browser fetch its URL), and
plotly renders a few HTML tags in titles, legend entries, tick and hover
labels. These functions turn such text into markup that shows it literally.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters that open Markdown, GFM or Streamlit syntax anywhere in a line:
# code, emphasis, links and images, strikethrough, math, :emoji: and
# :colour[...] directives, headings, tables.
_INLINE = re.compile(r"[\\`*_\[\]~$:#|]")
# What opens a block only at the start of a line: a list item ("- ", "1. "),
# a thematic break, a setext underline. Escaped where the text starts.
_LEADING = re.compile(r"^(\s*\d*)([!-%'-/:-;=?-@\[\]-`{-~])")        # ASCII punctuation but \ & < >
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape_markdown(text: object) -> str:
    """``text`` as Markdown that Streamlit shows character for character: no
    image, link, emphasis, heading, list, ``:emoji:``, ``:colour[...]``,
    ``$math$`` or HTML. ``&``, ``<`` and ``>`` become HTML entities; the
    punctuation that opens Markdown syntax is backslash-escaped (CommonMark's
    escapes), the rest left as it is, so ``photo-sage (v2), hidden1.npy``
    still reads as itself in the source; line breaks and other control
    characters become spaces."""
    text = _CONTROL.sub(" ", str(text))
    text = _INLINE.sub(lambda m: "\\" + m.group(), text)
    text = _LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    return re.sub(r"[&<>]", lambda m: _ENTITIES[m.group()], text)


def escape_plotly(text: object) -> str:
    """``text`` for a plotly title, legend entry, category or hover label:
    ``<`` and ``>`` as entities, so no tag (a link, a style) is rendered; for
    a hover template, ``%{`` no longer starts a variable."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;").replace("%{", "%\u200b{")
