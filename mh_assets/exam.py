"""Multiple-choice exams: the prompt for single- and multiple-answer questions, and answers read as people write
them ("答案：c", "我选 A。", "答案：Ｂ", "答案：A、B 和 D", "选 A、B、D", "答案是ABD").

A reply is read after its last answer marker (答案 / 正确答案 / 选 / 选择 / 选项 / answer), or from its start; letters
may be full-width or lower case and separated by 、，,/和与及 or spaces; a run of letters ("ABD") counts only if every
letter is a choice. A reply with no readable answer is ``None`` (counted as ``unparsed``, scored 0).
Plain module.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

LETTERS = "ABCDEFGHIJ"
SINGLE = "以下是一道单项选择题，只有一个正确答案。请只回答正确选项的字母，格式为“答案：B”。"
MULTIPLE = "以下是一道多项选择题，有两个或两个以上正确答案。请回答全部正确选项的字母，格式为“答案：A,C”。"
# 答案 / 正确答案 / 最终答案 (是|为|:) ... ; 选 / 选择 / 选项 (not after 不/没/别: "不选B" is no answer)
_MARKER = re.compile(
    r"(?:正确答案|最终答案|答案|ANSWER(?:\s+IS)?)\s*(?:应该|应当|应)?\s*(?:是|为)?\s*[:：]?"
    r"|(?<![不没别])(?:选择|选)(?:项)?\s*(?:是|为)?\s*[:：]?"
)
_SEPARATORS = set(" \t,，、/&+和与及")
_OPENERS = set("(（[【「\"'“‘")
_DECORATION = _OPENERS | set("*)）]】」”’.．:：")
_STOP = set("。！？!?\n;；")
# after a letter: the letter names an option ("C项的说法", "A、C均错误"), or the options are being counted
_SUBJECT = re.compile(r"\s*(?:项|选项|均|都)")
_COUNTING = re.compile(r"\s*[一二三四五六七八九十两几\d]+\s*个?(?:选项|项)")


def gold_letters(answer: str, n_choices: int) -> frozenset[str]:
    """An answer key written ``B``, ``B,C``, ``BC`` or ``B、C``; a letter beyond the choices or a repeat raises."""
    text = unicodedata.normalize("NFKC", answer).upper()
    letters = [c for c in text if c not in _SEPARATORS]
    valid = LETTERS[:n_choices]
    if not letters or any(c not in valid for c in letters) or len(set(letters)) != len(letters):
        raise ValueError(f"answer must be letters of the {n_choices} choices like 'B', 'B,C' or 'BC', got {answer!r}")
    return frozenset(letters)


def exam_prompt(row: dict[str, Any]) -> str:
    """The question with its lettered choices, under the instruction for one answer or several."""
    several = len(gold_letters(row["answer"], len(row["choices"]))) > 1
    choices = "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, row["choices"], strict=False))
    return f"{MULTIPLE if several else SINGLE}\n\n{row['question']}\n{choices}"


def _letters_at(text: str, valid: str) -> list[str]:
    """The answer letters at the start of ``text`` (after decoration), up to the first word or sentence end; empty
    when the letters turn out to name or count options, or hedge between them ("A或B")."""
    found: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _STOP or (found and ch in _OPENERS):
            break  # a sentence ends, or an explanation in brackets begins ("答案：B（A、C错误）")
        if ch == "或":
            return []  # a hedge earns nothing
        if "A" <= ch <= "Z":
            end = i
            while end < len(text) and "A" <= text[end] <= "Z":
                end += 1
            run = text[i:end]
            if any(c not in valid for c in run) or len(set(run)) != len(run):
                return []  # an English word ("A GOOD ...") or a letter that is no choice: not an answer
            if _COUNTING.match(text, end):
                return []  # "A、B、C、D四个选项中": the options are being listed, not chosen
            if _SUBJECT.match(text, end):
                break  # "B，C项的说法错误": C is talked about, not chosen
            found += [c for c in run if c not in found]
            i = end
        elif ch in _SEPARATORS or ch in _DECORATION:
            i += 1
        else:
            break
    return found


def parse_answer(reply: str, n_choices: int) -> frozenset[str] | None:
    """The set of letters a reply chooses, or None when it states no readable answer."""
    text = unicodedata.normalize("NFKC", reply).upper()
    valid = LETTERS[:n_choices]
    markers = list(_MARKER.finditer(text))
    for marker in reversed(markers):
        letters = _letters_at(text[marker.end() :], valid)
        if letters:
            return frozenset(letters)
    letters = _letters_at(text.lstrip(), valid)
    return frozenset(letters) if letters else None


def item_score(chosen: frozenset[str] | None, gold: frozenset[str]) -> tuple[float, float]:
    """``(exact, partial)``: exact 1 when the sets are equal; partial 0 when any chosen letter is wrong, else the
    share of the gold letters chosen. An unreadable reply scores (0, 0)."""
    if not chosen:
        return 0.0, 0.0
    exact = 1.0 if chosen == gold else 0.0
    return exact, (0.0 if chosen - gold else len(chosen & gold) / len(gold))
