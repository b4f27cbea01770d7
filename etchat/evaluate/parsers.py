"""Answer parsers of the official E.T. Bench scorer, re-implemented from the spec (etbench_metrics.md §3-4).

Every quirk of the official parsers is kept on purpose (no split on '.', substring keywords, the first
number wins, ...): the numbers must match the official script. Where the official script would crash
(`float('3..')`, a null answer) these functions raise `ParseError` instead, and the scorer counts the
sample as a failed parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Interval = list[float]


class ParseError(ValueError):
    """An answer the official script cannot parse without crashing; scored as a failed parse."""


# ---------------------------------------------------------------------------------------------------
# tvg_format (§3.3): intervals for TVG, EPM, TEM, TAL, EVS and GVQ

_KEYWORDS = ("starts", "ends", "happens in", "start time", "end time", "start", "end", "happen")
_HYPHEN_PAIR = re.compile(r"(\d+\.*\d*)\s*-\s*(\d+\.*\d*)")
_TO_PAIR = re.compile(r"(\d+\.*\d*)\s* to \s*(\d+\.*\d*)")
_FIRST_NUMBER = re.compile(r"\b(\d+\.\d+\b|\b\d+)\b")
_CLOCK = re.compile(r"\b((\d{1,2}:\d{2}:\d{2}))\b")


def _to_float(text: str) -> float:
    # `\d+\.*\d*` admits '3..5'; the official float() then raises and stops the whole run.
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"number {text!r} cannot be read (the official scorer crashes on it)") from None


def parse_intervals(answer: str) -> list[Interval] | None:
    """The official `tvg_format`: every [start, end] pair found in a free-text answer, or None."""
    ans = answer.lower()
    candidates = [s for s in re.split(r"[!?\n]", ans) if any(k in s for k in _KEYWORDS)]

    pairs: list[tuple[float, float]] = [(_to_float(a), _to_float(b)) for a, b in _HYPHEN_PAIR.findall(ans)]
    if not pairs:
        pairs = [(_to_float(a), _to_float(b)) for a, b in _TO_PAIR.findall(ans)]
    if not pairs:
        pairs = _pair_up([float(m.group(1)) for s in candidates if (m := _FIRST_NUMBER.search(s))])
    if not pairs:
        clock = []
        for s in candidates:
            if m := _CLOCK.search(s):
                h, mi, se = (int(x) for x in m.group(1).split(":"))
                clock.append(h * 3600 + mi * 60 + se)
        pairs = _pair_up(clock)
    if not pairs:
        return None
    return [[a, b] if b > a else [b, a] for a, b in pairs]


def _pair_up(values: list) -> list[tuple]:
    values = values[: len(values) // 2 * 2]
    return [(values[i], values[i + 1]) for i in range(0, len(values), 2)]


# ---------------------------------------------------------------------------------------------------
# dvc_format (§3.4): timestamped captions for DVC and SLC

_DVC_HYPHEN_SPAN = re.compile(r"(\d+\.*\d*\s*-\s*\d+\.*\d*)")
_DVC_START = re.compile(r"(?:start(?:ing)? time: (\d+\.*\d*)(?:s| seconds)?)", re.DOTALL | re.IGNORECASE)
_DVC_END = re.compile(r"(?:end(?:ing)? time: (\d+\.*\d*)(?:s| seconds)?)", re.DOTALL | re.IGNORECASE)
_DVC_DESCRIPTION = re.compile(r"description: (.*)")
_DVC_BULLET = re.compile(r"\*\s*(.*)")
_DVC_COMMA_FORM = re.compile(r"start time (\d+\.*\d*), end time (\d+\.*\d*)")
_PART_HYPHEN = re.compile(r"\d+\.*\d*\s*-\s*\d+\.*\d*")
_PART_CLOCK = re.compile(r"\d+\.*\d*:\d+\.*\d*")
_PART_NUMBER = re.compile(r"\d+\.*\d*(?!\.)")
_RADIUS = 20


@dataclass
class DenseCaptions:
    timestamps: list[Interval]
    sentences: list[str]


def parse_dense_captions(answer: str) -> DenseCaptions | None:
    """The official `dvc_format`: (timestamps, captions) paired by position, or None on any failure."""
    try:
        timestamps, sentences = _from_paragraph(answer.lower())
    except (ValueError, AssertionError):  # the official wraps this stage in a catch-all
        return None
    if not timestamps:
        # Also reached when the paragraph stage found timestamps but no caption longer than 5 characters:
        # its pairs are cut to the shorter list first, so the line fallback gets its chance.
        timestamps, sentences = _from_lines(answer)
    if not timestamps:
        return None
    return DenseCaptions([[min(t), max(t)] for t in timestamps], sentences)


def _clean_captions(raw: list[str]) -> list[str]:
    return [c.strip().strip(", ").rstrip() for c in raw if len(c) > 5]


def _paired(timestamps: list[list[float]], captions: list[str]) -> tuple[list[list[float]], list[str]]:
    n = min(len(timestamps), len(captions))
    return timestamps[:n], captions[:n]


def _from_paragraph(text: str) -> tuple[list[list[float]], list[str]]:
    timestamps = [[float(a), float(b)] for a, b in _HYPHEN_PAIR.findall(text)]
    if timestamps:
        captions = text
        for span in _DVC_HYPHEN_SPAN.findall(text):
            captions = captions.replace(span, "\n")  # all occurrences, in match order, as the official
        return _paired(timestamps, _clean_captions(captions.replace("seconds", "").split("\n")))
    starts, ends = _DVC_START.findall(text), _DVC_END.findall(text)
    timestamps = [[float(s), float(e)] for s, e in zip(starts, ends, strict=False)]
    if timestamps:
        captions = _DVC_DESCRIPTION.findall(text) or _DVC_BULLET.findall(text)
        return _paired(timestamps, _clean_captions(captions))
    if _DVC_COMMA_FORM.findall(text):
        # The official asserts this list is empty right after filling it: the form always fails.
        raise AssertionError("'start time X, end time Y' form")
    return [], []


def _from_lines(answer: str) -> tuple[list[list[float]], list[str]]:
    if "\n" in answer:
        lines = [x for x in answer.split("\n") if len(x) > 7]
    else:  # the length test comes before '.' is put back
        lines = [x + "." for x in answer.split(".") if len(x) > 7]
    for line in lines:
        try:
            parts = [p.strip(",") for p in line.split("seconds")]
            start, end = _time_part(parts[0])
            return [[round(start, 2), round(end, 2)]], [parts[-1].strip()]  # at most one segment
        except (ValueError, IndexError):
            continue
    return [], []


def _window(t: float) -> tuple[float, float]:
    """The +-20 s window around a single time, read back from its text form 'lo - hi' as the official does.

    The official formats the window with str() and splits it on '-': a start that Python prints with a
    negative exponent ('5e-05') therefore does not parse, and the line is skipped.
    """
    lo, hi = (t - _RADIUS, t + _RADIUS) if t > _RADIUS else (t, t + 2 * _RADIUS)
    parts = f"{lo} - {hi}".split("-")
    return float(parts[0]), float(parts[1])


def _mmss(text: str) -> int:
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)  # int(): '1.5:30' raises, the line is skipped


def _time_part(text: str) -> tuple[float, float]:
    """The official `extract_time_part`: a hyphen pair, mm:ss clock times or bare numbers."""
    if hyphen := _PART_HYPHEN.findall(text):
        start, end = hyphen[0].split("-")
        return float(start), float(end)
    colons = text.count(":")
    if colons == 1:
        return _window(_mmss(_PART_CLOCK.findall(text)[0]))
    if colons == 2:
        clocks = _PART_CLOCK.findall(text)
        return _mmss(clocks[0]), _mmss(clocks[1])
    numbers = _PART_NUMBER.findall(text)
    if len(numbers) == 1:
        return _window(float(numbers[0]))
    if len(numbers) == 2:
        return float(numbers[0]), float(numbers[1])
    raise ValueError("no time in line")


# ---------------------------------------------------------------------------------------------------
# Multiple choice (§4.1 steps 1-3, §4.2 stage 1) and VHD (§4.7)

_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")
_VHD_NUMBER = re.compile(r"[-+]?\d*\.\d+|[-+]?\d+")
BEST_OPTION = "best option:"


def option_map(n_options: int) -> dict[str, int] | None:
    """Letter -> option index for 4 (a-d) or 5 (a-e) options; None for any other count."""
    if n_options not in (4, 5):
        return None
    return {chr(ord("a") + i): i for i in range(n_options)}


def paren_letter(answer: str) -> str | None:
    """The first '(X)' anywhere in the raw answer, lower-cased."""
    m = _PAREN_LETTER.search(answer)
    return m.group(1).lower() if m else None


def clean_choice_answer(answer: str) -> str:
    """RAR/ECA/RVQ: lower-case, drop 'best option:', then leading blanks and '('."""
    text = answer.lower()
    if text.startswith(BEST_OPTION):
        text = text[len(BEST_OPTION) :]
    return text.lstrip().lstrip("(").lstrip()


def clean_gvq_answer(answer: str) -> str:
    """GVQ: as RAR but the case is kept (only the left end is stripped, as for RAR)."""
    text = answer[len(BEST_OPTION) :] if answer.lower().startswith(BEST_OPTION) else answer
    return text.lstrip().lstrip("(").lstrip()


def leading_letter(cleaned: str) -> str | None:
    """The option letter a cleaned answer starts with ('B', 'B)', 'B. ...'), lower-cased, or None."""
    if cleaned and (len(cleaned) == 1 or cleaned[1] in "., )"):
        return cleaned[0].lower()
    return None


def first_number(answer: str) -> float | None:
    """VHD: the first (signed) number in the raw answer; '1st highlight' gives 1."""
    m = _VHD_NUMBER.search(answer)
    return float(m.group(0)) if m else None


def option_text(option: object) -> str:
    """How an option is shown to the similarity model: strings as they are, [s, e] as 's - e'.

    Any list is rendered from its first two items, as the official (a shorter list crashes it).
    """
    if isinstance(option, list | tuple) and len(option) >= 2:
        return f"{option[0]} - {option[1]}"
    return str(option)


def remove_nonascii(text: str) -> str:
    return "".join(c if ord(c) < 128 else " " for c in text)
