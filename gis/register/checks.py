"""Checks that know the register's domain: resident ID numbers (GB 11643), birth dates and ages, phones.

Each check returns the clean value or raises `ValueError` whose message says what is wrong and what was
expected; the importers turn it into a Problem naming the row and column.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import unicodedata
from dataclasses import dataclass

from gis import clock

# GB 11643-1999: weights of the first 17 digits, and the check character for (sum mod 11).
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_EARLIEST_BIRTH = dt.date(1890, 1, 1)

_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_PHONE_SPLIT = re.compile(r"\s*[,，;；/、]+\s*")


@dataclass(frozen=True)
class IdNumber:
    """A checked 18-digit resident ID number and what it says about its holder."""

    number: str
    region: str  # the 6-digit administrative division code of first registration
    birth_date: dt.date
    gender: str  # 男 / 女 (the 17th digit odd / even)


def id_check_char(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    if len(first17) != 17:
        raise ValueError("the check character is computed from 17 digits")
    return _CHECK_CHARS[sum(map(operator.mul, map(int, first17), _WEIGHTS)) % 11]


def parse_id_number(value: str, *, today: dt.date | None = None) -> IdNumber:
    """Check an ID number: 18 characters, the birth date inside it, the check digit."""
    text = value if value.isascii() else unicodedata.normalize("NFKC", value)  # full-width digits, as typed
    text = text.strip().replace(" ", "").upper()
    if len(text) == 15 and text.isdigit():
        raise ValueError("a 15-digit old-style ID number: the 18-digit number is expected")
    if len(text) != 18:
        raise ValueError(f"an ID number has 18 characters, this one has {len(text)}")
    if not _ID_SHAPE.match(text):
        raise ValueError("an ID number is 17 digits followed by a digit or X")
    try:
        birth = dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        raise ValueError(f"the birth date in the ID number ({text[6:14]}) is not a date") from None
    if birth < _EARLIEST_BIRTH or birth > (today or clock.today()):
        raise ValueError(f"the birth date in the ID number ({birth.isoformat()}) is impossible")
    expected = id_check_char(text[:17])
    if text[17] != expected:
        raise ValueError(f"wrong check digit: the last character should be {expected} for the first 17 digits")
    return IdNumber(text, text[:6], birth, "男" if int(text[16]) % 2 else "女")


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Completed years of age on `on`."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def parse_date(value: str) -> dt.date:
    """YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, YYYYMMDD or YYYY年MM月DD日."""
    text = (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip()
    text = text.split(" ")[0]
    if len(text) == 10 and text[4] == text[7] == "-" and text.isascii():  # the common YYYY-MM-DD
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a date: {value!r}") from None
    m = re.match(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$", text) or re.match(r"^(\d{4})(\d{2})(\d{2})$", text)
    if not m:
        raise ValueError(f"not a date: {value!r} (expected YYYY-MM-DD)")
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ValueError(f"not a date: {value!r}") from None


def check_birth(
    id_birth: dt.date | None, stated_birth: dt.date | None, stated_age: int | None, as_of: dt.date
) -> str | None:
    """Why the stated birth date or age disagrees with the ID number (or with each other), or None.

    An age one year above the completed years is accepted: villages often count 虚岁."""
    if id_birth is not None and stated_birth is not None and id_birth != stated_birth:
        return f"the birth date {stated_birth.isoformat()} differs from the ID number's {id_birth.isoformat()}"
    birth = id_birth or stated_birth
    if birth is not None and stated_age is not None:
        actual = age_on(birth, as_of)
        if stated_age not in (actual, actual + 1):
            return f"the age {stated_age} disagrees with the birth date {birth.isoformat()} ({actual} on {as_of})"
    return None


def parse_age(value: str) -> int:
    text = unicodedata.normalize("NFKC", value).strip().removesuffix("岁")
    if not text.isdigit() or int(text) > 130:
        raise ValueError(f"not an age in years: {value!r}")
    return int(text)


def normalize_phone(value: str) -> str:
    """A mobile (11 digits, 1[3-9]…) or a landline with its area code (0377-63123456), as stored.

    Several numbers in one cell: each is checked, the first is kept."""
    text = unicodedata.normalize("NFKC", value).strip()
    parts = [p for p in _PHONE_SPLIT.split(text) if p]
    if not parts:
        raise ValueError("no phone number")
    normalized = [_one_phone(p) for p in parts]
    return normalized[0]


def _one_phone(text: str) -> str:
    digits = re.sub(r"[\s\-()（）]", "", text)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {text!r}")
    if digits.startswith("1"):
        if _MOBILE.match(digits):
            return digits
        raise ValueError(f"a mobile number has 11 digits starting 13-19, not {text!r}")
    if digits.startswith("0"):
        for split in (3, 4):
            area, local = digits[:split], digits[split:]
            if local.isdigit() and len(local) in (7, 8) and _area_code_ok(area, local):
                return f"{area}-{local}"
    if len(digits) in (7, 8):
        raise ValueError(f"a landline needs its area code (e.g. 0377-{digits})")
    raise ValueError(f"not a mobile (11 digits) or a landline with area code: {text!r}")


def _area_code_ok(area: str, local: str) -> bool:
    """Three-digit area codes (010, 02x) go with 8-digit numbers; four-digit ones with 7 or 8."""
    if len(area) == 3:
        return area[1] in "12" and len(local) == 8
    return area[1] not in "12"
