"""Make names and text safe to put into generated files: C identifiers, string literals and preprocessor
tokens, INI, Kconfig, YAML and shell words."""

from __future__ import annotations

import json
import re
import shlex

# C11 and C++17 keywords plus names the firmware itself defines: a model called "int" or "setup" must not
# become an identifier that collides.
_RESERVED = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t char8_t class
compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype default
delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline int long
mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires restrict return short signed sizeof static static_assert static_cast struct switch
template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert
_Thread_local setup loop main app_main tflite
""".split())


def identifier(name: str, fallback: str = "model", max_len: int = 48) -> str:
    """A valid, non-reserved C/C++ identifier derived from ``name`` (ASCII letters, digits, underscores)."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    text = re.sub(r"__+", "_", text)  # double underscores are reserved for the implementation
    if not text:
        text = fallback
    if text[0].isdigit():
        text = f"m_{text}"
    text = text[:max_len].rstrip("_") or fallback
    return f"{text}_" if text in _RESERVED else text


def string_literal(text: str) -> str:
    """A C/C++ string literal, quotes included, that reproduces ``text``'s UTF-8 bytes exactly.

    Everything outside printable ASCII becomes a three-digit octal escape (octal escapes end after three
    digits, unlike \\x, which would swallow a following hex digit). ``?`` is escaped to defeat trigraphs,
    so nothing in the text can end the literal, start a comment or change the next token.
    """
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch in ('"', "\\", "?"):
            out.append("\\" + ch)
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def comment_text(text: str, max_len: int = 100) -> str:
    """Text safe inside a // comment: one line, no backslash line-continuation, printable ASCII."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text.replace("\\", "/"))
    return text[:max_len]


def sketch_name(name: str) -> str:
    """An Arduino sketch folder/file name: starts with a letter, [A-Za-z0-9_], at most 63 characters."""
    text = identifier(name, "tinyflow_model", 63)
    return text if text[0].isalpha() else f"s{text}"[:63]


# The formats below have no escape for a line break (INI, Kconfig symbols, C preprocessor tokens): a board
# string is refused there rather than altered. Where a format can quote (shell, YAML, Kconfig strings), it is
# quoted. The board schema refuses all of these first; this layer holds for a Board built in code.
class UnsafeText(ValueError):
    """A value that the target format of a generated file cannot hold as one token on one line."""


def _one_ascii_line(text: str) -> bool:
    return all(32 <= ord(c) < 127 for c in text)


def ini_value(value: object, field: str) -> str:
    """A value for PlatformIO's INI: no quoting exists, so a line break (a new key: ``extra_scripts`` runs
    Python), ';' or '#' (comments), '$' (``${...}`` interpolation) or surrounding spaces are refused."""
    text = str(value)
    if not text or text != text.strip() or not _one_ascii_line(text) or any(c in text for c in ";#$"):
        raise UnsafeText(f"{field} {text!r} cannot be written into platformio.ini (line breaks, control or "
                         "non-ASCII characters, ';', '#', '$' and surrounding spaces are refused)")
    return text


def ini_key(value: object, field: str) -> str:
    """An INI key or section name: a fixed character set, so it cannot close a section or add a key."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", text):
        raise UnsafeText(f"{field} {text!r} cannot be an INI key (letters, digits, '_', '.', ':', '-' only)")
    return text


def kconfig_string(value: object, field: str) -> str:
    """A quoted Kconfig string value (sdkconfig.defaults): backslash and quote escaped, one line."""
    text = str(value)
    if not _one_ascii_line(text):
        raise UnsafeText(f"{field} {text!r} cannot be written into sdkconfig.defaults (line breaks, control "
                         "and non-ASCII characters are refused)")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kconfig_symbol(value: object, field: str) -> str:
    """A part of a Kconfig symbol name (``CONFIG_SPIRAM_MODE_<x>``): letters, digits and '_' only."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_]+", text):
        raise UnsafeText(f"{field} {text!r} cannot be part of a Kconfig symbol (letters, digits, '_' only)")
    return text


def shell_word(value: object, field: str) -> str:
    """One shell word (``shlex.quote``) for a command line shown to the user; a line break is refused since
    the line is read, and copied, line by line."""
    text = str(value)
    if not text.isprintable():
        raise UnsafeText(f"{field} {text!r} cannot be written into a command line (line breaks and control "
                         "characters are refused)")
    return shlex.quote(text)


def yaml_string(value: object) -> str:
    """A YAML double-quoted scalar: a JSON string is one, with every non-ASCII and control character escaped."""
    return json.dumps(str(value), ensure_ascii=True)


def header_name(value: object, field: str) -> str:
    """What goes between ``#include <`` and ``>``: no escapes exist there, so only path characters pass
    ('>', quotes, backslashes, '//' and '/*' are undefined behaviour or end the directive)."""
    text = str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*", text):
        raise UnsafeText(f"{field} {text!r} cannot be a header name (letters, digits, '_', '.', '+', '-', '/')")
    return text


def macro(value: object, field: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=value`` (the -D syntax) as (name, value) for a ``#define``; a value is a single
    token of a conservative character set, since a directive ends at a line break and cannot be escaped."""
    text = str(value)
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:=([A-Za-z0-9_.+-]+))?", text)
    if not m:
        raise UnsafeText(f"{field} {text!r} is not NAME or NAME=value (a C identifier; the value letters, digits, "
                         "'_', '.', '+', '-')")
    return m.group(1), m.group(2)


def c_uint32(value: object, field: str) -> int:
    """An integer for a ``uint32_t`` constant: a wider one would be truncated silently by the compiler."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise UnsafeText(f"{field} {value!r} does not fit a uint32 constant (0..4,294,967,295)")
    return value
