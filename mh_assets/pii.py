"""Find personal data in text: Chinese mobile numbers, resident ID card numbers, e-mail addresses.

Only kinds and counts leave this module, never the values. Plain module.
"""

from __future__ import annotations

import re
from collections import Counter

_PATTERN = re.compile(
    r"(?P<id_card>(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}"
    r"[0-9Xx](?![0-9Xx]))"
    r"|(?P<mobile>(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}(?![0-9]))"
    r"|(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
_MAYBE = re.compile(r"[0-9@]")  # cheap test before the full pattern
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
KINDS = ("mobile", "id_card", "email")


def valid_id_card(number: str) -> bool:
    """GB 11643 checksum of an 18-character resident ID number."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def find_pii(text: str) -> Counter[str]:
    """Counts of each kind of personal data in ``text``."""
    found: Counter[str] = Counter()
    if not _MAYBE.search(text):
        return found
    for match in _PATTERN.finditer(text):
        kind = match.lastgroup or ""
        if kind == "id_card" and not valid_id_card(match.group()):
            continue
        found[kind] += 1
    return found
