"""Masking of residents' personal fields (PIPL): names, phones, ID numbers, birth dates, ages."""

from __future__ import annotations

from typing import Any

# The personal fields of each kind of record; everything that shows them must pass through here.
PERSONAL_FIELDS = {
    "household": ("head_name", "phone", "address"),
    "resident": ("name", "id_number", "birth_date", "age"),
}


def mask_phone(phone: str | None) -> str | None:
    """138****1234: the operator prefix and last four digits stay, enough to tell numbers apart."""
    if not phone:
        return phone
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_id_number(id_number: str | None) -> str | None:
    """First 6 (the region) + last 4; the birth date in the middle is hidden."""
    if not id_number:
        return id_number
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_name(name: str | None) -> str | None:
    """张*: the surname stays (two characters for the common compound surnames); one star, so the
    length of the given name is not given away either."""
    if not name:
        return name
    keep = 2 if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else 1
    return name[:keep] + "*"


def mask_address(address: str | None) -> str | None:
    """Keep the village and group, hide the house number."""
    if not address:
        return address
    cut = len(address)
    for i, ch in enumerate(address):
        if ch.isdigit():
            cut = i
            break
    return address[:cut] + ("**号" if cut < len(address) else "")


def mask_age(age: int | str | None) -> str | None:
    """70-79: the decade only (an exact age beside the birth year that a masked birth date keeps
    would narrow the birth date down to a few months)."""
    if age is None or isinstance(age, str):
        return age
    low = max(0, int(age)) // 10 * 10
    return f"{low}-{low + 9}"


COMPOUND_SURNAMES = frozenset(
    {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文", "司徒", "夏侯"}
)

MASKERS = {
    "head_name": mask_name,
    "name": mask_name,
    "phone": mask_phone,
    "id_number": mask_id_number,
    "address": mask_address,
    "birth_date": lambda v: (str(v)[:4] + "-**-**") if v else v,
    "age": mask_age,
}


def mask_record(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """A copy of `record` with every personal field of `kind` masked."""
    out = dict(record)
    for f in PERSONAL_FIELDS[kind]:
        if f in out:
            out[f] = MASKERS[f](out[f])
    return out
