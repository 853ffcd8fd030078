"""Make names and text safe to put into C and C++ source: identifiers, string literals, file names."""

from __future__ import annotations

import re

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
