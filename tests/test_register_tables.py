"""Reading register tables as townships write them (gis.register.tables) and the domain checks
(gis.register.checks): title rows, merged headers, 合计 rows, encodings, synonyms, wrong files."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import openpyxl
import pytest

from gis.errors import InputError
from gis.register.checks import (
    age_on,
    check_birth,
    id_check_char,
    normalize_phone,
    parse_date,
    parse_id_number,
)
from gis.register.tables import ColumnSpec, read_table, sheet_names
from tests.register_files import csv_bytes, make_id, write, wrong_check_digit, xlsx_bytes

SPEC = (
    ColumnSpec("household_no", "户号", ("户编号", "户口编号"), required=True),
    ColumnSpec("head_name", "户主姓名", ("户主",), required=True),
    ColumnSpec("id_number", "身份证号", ("公民身份号码", "身份证号码")),
    ColumnSpec("phone", "联系电话", ("手机号", "电话")),
    ColumnSpec("address", "门牌号", ("地址", "住址")),
    ColumnSpec("birth_date", "出生日期", ()),
)

ROWS = [
    ["H001", "张三", make_id(dt.date(1950, 3, 1), 1), "13812345678", "李邦相村一组12号", dt.datetime(1950, 3, 1)],
    ["H002", "李四", make_id(dt.date(1988, 7, 9), 2, male=False), "0377-63123456", "尹营村三组5号", None],
    ["H003", "王𠮷", make_id(dt.date(2001, 12, 31), 3), None, "岁坡村二组8号", dt.date(2001, 12, 31)],
]


def _flat(rows):
    return [[None if v is None else (v.date().isoformat() if isinstance(v, dt.datetime) else
             v.isoformat() if isinstance(v, dt.date) else str(v)) for v in r] for r in rows]


def _values(table):
    return [(n, [r[c.key] for c in SPEC]) for n, r in table.rows]


def test_xlsx_with_title_rows_merged_header_and_total_row(tmp_path):
    headers = ["户号", ("户主信息", "户主姓名"), ("户主信息", "公民身份号码"), ("户主信息", "手机号"),
               "地址", "出生日期"]
    path = write(tmp_path / "户籍.xlsx", xlsx_bytes(
        {"户籍": (headers, ROWS)}, title_rows=["杨营镇户籍信息表", "填报单位：李邦相村"], total_row=True))
    table = read_table(path, SPEC)
    # Two title rows, a parent row merged across three columns, the sub-header row: the header is row 4.
    assert table.header_row == 4
    assert table.sheet == "户籍"
    assert table.encoding is None
    assert table.columns == {"household_no": "户号", "head_name": "户主姓名", "id_number": "公民身份号码",
                             "phone": "手机号", "address": "地址", "birth_date": "出生日期"}
    got = _values(table)
    # Row numbers as Excel shows them; the 合计 row below the data is left out.
    assert [n for n, _ in got] == [5, 6, 7]
    assert [v for _, v in got] == _flat(ROWS)
    # The rows stream anew at each access.
    assert _values(table) == got
    assert table.loc(6, "phone") == ("file", "户籍", 6, "手机号")
    assert table.loc(6, "id_number") == ("file", "户籍", 6, "公民身份号码")


def test_merged_parent_header_can_be_named_in_an_explicit_mapping(tmp_path):
    headers = ["户号", ("户主信息", "姓名"), ("户主信息", "电话"), "住址"]
    rows = [[r[0], r[1], r[3], r[4]] for r in ROWS]
    path = write(tmp_path / "a.xlsx", xlsx_bytes({"表1": (headers, rows)}, title_rows=["标题"]))
    table = read_table(path, SPEC, mapping={"head_name": "户主信息/姓名"})
    assert table.columns["head_name"] == "户主信息/姓名"
    assert table.columns["phone"] == "电话"
    assert [r["head_name"] for _, r in table.rows] == ["张三", "李四", "王𠮷"]
    assert [n for n, _ in table.rows] == [4, 5, 6]


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8", "utf-8-sig"])
def test_csv_encodings_are_detected(tmp_path, encoding):
    rows = ROWS if encoding != "gbk" else [r if r[0] != "H003" else [*r[:1], "王吉", *r[2:]] for r in ROWS]
    headers = ["户口编号", "户主", "身份证号码", "联系电话", "门牌号", "出生日期"]
    path = write(tmp_path / "households.csv", csv_bytes(headers, _flat(rows), encoding=encoding))
    table = read_table(path, SPEC)
    assert table.encoding == encoding
    assert table.header_row == 1
    assert table.sheet == "households.csv"
    assert _values(table) == [(i + 2, r) for i, r in enumerate(_flat(rows))]


def test_gb18030_only_characters_are_not_misread_as_gbk(tmp_path):
    path = write(tmp_path / "x.csv", csv_bytes(["户号", "户主姓名"], [["H1", "王𠮷"]], encoding="gb18030"))
    table = read_table(path, SPEC)
    assert table.encoding == "gb18030"
    assert [r["head_name"] for _, r in table.rows] == ["王𠮷"]


def test_bytes_source_and_explicit_mapping_override_synonyms():
    data = csv_bytes(["甲", "乙", "户主姓名", "户主"], [["H9", "13900001111", "赵六", "错"]], encoding="utf-8")
    table = read_table(data, SPEC, filename="上传.csv",
                       mapping={"household_no": "甲", "phone": "乙", "head_name": "户主"})
    assert table.columns == {"household_no": "甲", "phone": "乙", "head_name": "户主"}
    assert list(table.rows) == [(2, {"household_no": "H9", "phone": "13900001111", "head_name": "错"})]


def test_mapping_naming_an_absent_column_or_unknown_key_is_a_problem():
    data = csv_bytes(["户号", "户主姓名"], [["H1", "张三"]], encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_table(data, SPEC, filename="a.csv", mapping={"phone": "手机"})
    assert [(p.loc, p.type) for p in err.value.problems] == [(("mapping", "phone"), "not_found")]
    with pytest.raises(InputError) as err:
        read_table(data, SPEC, filename="a.csv", mapping={"mobile": "手机"})
    assert err.value.problems[0].loc == ("mapping", "mobile")


def test_missing_required_column_names_the_header_row(tmp_path):
    path = write(tmp_path / "r.xlsx", xlsx_bytes({"名单": (["户主姓名", "电话"], [["张三", "13812345678"]])},
                                                 title_rows=["名单"]))
    with pytest.raises(InputError) as err:
        read_table(path, SPEC)
    [problem] = err.value.problems
    assert problem.loc == ("file", "名单", 2, "户号")
    assert problem.type == "missing_column"
    assert "户编号" in problem.msg


def test_empty_sheet_and_header_without_rows(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "户籍"
    wb.create_sheet("成员").append(["户号", "户主姓名"])
    path = tmp_path / "empty.xlsx"
    wb.save(path)
    assert sheet_names(path, path.name) == ["户籍", "成员"]
    with pytest.raises(InputError) as err:
        read_table(path, SPEC)
    assert [(p.loc, p.type) for p in err.value.problems] == [(("file", "户籍", 1, ""), "empty")]
    with pytest.raises(InputError) as err:
        read_table(path, SPEC, sheet="成员")
    assert [(p.loc, p.type) for p in err.value.problems] == [(("file", "成员", 2, ""), "empty")]
    with pytest.raises(InputError) as err:
        read_table(path, SPEC, sheet="人口")
    assert err.value.problems[0].loc == ("sheet",)
    assert "户籍" in err.value.problems[0].msg


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("户籍.csv", xlsx_bytes({"s": (["户号", "户主姓名"], [["H1", "张三"]])}), "zip"),
        ("户籍.xlsx", csv_bytes(["户号", "户主姓名"], [["H1", "张三"]]), "text"),
        ("户籍.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, ".xls"),
        ("户籍.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, ".xlsx"),
        ("户籍.csv", bytes(range(256)) * 4, "not text"),
        ("户籍.xlsx", b"PK\x03\x04garbage", "damaged"),
        ("户籍.pdf", b"%PDF-1.4", "unsupported"),
        ("户籍.csv", b"", "empty"),
    ],
)
def test_file_not_what_its_extension_says(tmp_path, name, content, words):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError) as err:
        read_table(path, SPEC)
    [problem] = err.value.problems
    assert problem.loc == ("file", name)
    assert words in problem.msg
    assert problem.type in ("file_type", "empty")


def test_zip_that_is_not_a_workbook(tmp_path):
    import zipfile

    path = tmp_path / "x.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InputError) as err:
        read_table(path, SPEC)
    assert "not an Excel workbook" in err.value.problems[0].msg


def test_undecodable_csv_is_a_problem(tmp_path):
    # Bytes valid in none of UTF-8, GBK and GB18030 (0x80 alone, 0xFF lead bytes).
    path = write(tmp_path / "bad.csv", "户号,户主姓名\n".encode() + b"H1,\xff\xff\x80\n")
    with pytest.raises(InputError) as err:
        read_table(path, SPEC)
    assert err.value.problems[0].type == "encoding"


def test_rows_stream_in_constant_memory(tmp_path):
    n = 150_000
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="gbk", newline="") as fh:
        fh.write("户号,户主姓名,联系电话,地址\n")
        for i in range(n):
            fh.write(f"H{i:07d},张{i % 97},1380000{i % 10000:04d},李邦相村一组{i}号\n")
    table = read_table(path, SPEC)
    tracemalloc.start()
    count = 0
    last = None
    for number, row in table.rows:
        count += 1
        last = (number, row["household_no"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    assert last == (n + 1, f"H{n - 1:07d}")
    assert peak < 4 * 1024 * 1024, peak  # the file is ~6 MB; reading it must not hold it


# --- checks ------------------------------------------------------------------------------


def test_id_number_check_digit_birth_date_and_gender():
    # The standard's published example: born 1949-12-31, 17th digit 2 (female), check character X.
    info = parse_id_number("11010519491231002x")
    assert (info.number, info.birth_date, info.gender, info.region) == (
        "11010519491231002X", dt.date(1949, 12, 31), "女", "110105")
    assert id_check_char("11010519491231002") == "X"
    for seq in range(50):
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=seq * 613)
        number = make_id(birth, seq, male=seq % 2 == 0)
        info = parse_id_number(number)
        assert info.birth_date == birth
        assert info.gender == ("男" if seq % 2 == 0 else "女")
        with pytest.raises(ValueError, match="wrong check digit"):
            parse_id_number(wrong_check_digit(number))
    # Full-width digits as some office software writes them.
    assert parse_id_number("１１０１０５１９４９１２３１００２Ｘ").number == "11010519491231002X"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("110105491231002", "15-digit"),
        ("1101051949123100", "18 characters"),
        ("11010519491231002Y", "17 digits"),
        ("110105" + "19490231" + "002" + "X", "not a date"),
        ("110105" + "21990101" + "002" + "X", "impossible"),
    ],
)
def test_bad_id_numbers(value, words):
    with pytest.raises(ValueError, match=words):
        parse_id_number(value)


def test_birth_date_and_age_against_the_id_number():
    as_of = dt.date(2026, 6, 1)
    birth = dt.date(1950, 7, 1)
    assert age_on(birth, as_of) == 75
    assert check_birth(birth, birth, 75, as_of) is None
    assert check_birth(birth, None, 76, as_of) is None  # 虚岁
    assert "disagrees" in (check_birth(birth, None, 70, as_of) or "")
    assert "differs" in (check_birth(birth, dt.date(1951, 7, 1), None, as_of) or "")
    assert parse_date("1950年7月1日") == birth
    assert parse_date("1950/07/01") == parse_date("19500701") == parse_date("1950-07-01 00:00:00") == birth
    with pytest.raises(ValueError):
        parse_date("1950-13-01")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("0377-63123456", "0377-63123456"),
        ("037763123456", "0377-63123456"),
        ("(010)12345678", "010-12345678"),
        ("13812345678，13987654321", "13812345678"),
    ],
)
def test_phone_numbers(value, expected):
    assert normalize_phone(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [("63123456", "area code"), ("1381234567", "11 digits"), ("12812345678", "11 digits"),
     ("电话未知", "not a phone"), ("13812345678、12345", "11 digits.*12345")],
)
def test_bad_phone_numbers(value, words):
    with pytest.raises(ValueError, match=words):
        normalize_phone(value)
