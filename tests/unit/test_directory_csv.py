from collections import Counter

import pytest

from confsvc.directory.model import DirectoryError, Kind, Tree, fold, parse_csv, to_csv
from confsvc.directory.service import demo_csv

GOOD = """code,name,kind,parent
P,Tỉnh A,province,
D1,Huyện Một,district,P
C1,Xã Một,commune,D1
C2,Xã Hai,commune,D1
"""


def test_demo_directory_is_yen_bai():
    sites = parse_csv(demo_csv())
    kinds = Counter(s.kind for s in sites)
    assert len(sites) == 183
    assert kinds == {Kind.PROVINCE: 1, Kind.DISTRICT: 9, Kind.COMMUNE: 173}
    tree = Tree.build(sites)
    names = {d.name for d in tree.districts}
    for n in ("Yên Bái", "Nghĩa Lộ", "Lục Yên", "Văn Yên", "Mù Cang Chải", "Trấn Yên", "Trạm Tấu", "Văn Chấn", "Yên Bình"):
        assert any(n in name for name in names), n
    assert sum(len(tree.communes_of(d.code)) for d in tree.districts) == 173


def test_good_file_round_trips():
    sites = parse_csv(GOOD)
    assert [s.code for s in sites] == ["P", "D1", "C1", "C2"]
    assert parse_csv(to_csv(sites)) == sites


def test_rows_may_come_in_any_order_and_bom_is_ignored():
    text = "\ufeffcode,name,kind,parent\nC1,Xã Một,commune,D1\nD1,Huyện Một,district,P\nP,Tỉnh,province,\n"
    assert {s.code for s in parse_csv(text)} == {"P", "D1", "C1"}


def test_every_error_is_listed_with_its_line():
    text = """code,name,kind,parent
P,Tỉnh A,province,
D1,Huyện Một,district,P
D1,Huyện Trùng,district,P
C1,,commune,D1
C2,Xã Hai,village,D1
C3,Xã Ba,commune,D9
C4,Xã Bốn,commune,P
"""
    with pytest.raises(DirectoryError) as err:
        parse_csv(text)
    got = [(e.line, e.message) for e in err.value.errors]
    assert (4, "duplicate code 'D1' (first on line 3)") in got
    assert any(line == 5 and "missing name" in m for line, m in got)
    assert any(line == 6 and "bad kind 'village'" in m for line, m in got)
    assert any(line == 7 and "unknown parent 'D9'" in m for line, m in got)
    assert any(line == 8 and "parent 'P' is a province" in m for line, m in got)
    assert len(got) == 5


def test_header_and_province_rules():
    with pytest.raises(DirectoryError, match="missing parent"):
        parse_csv("code,name,kind\nP,X,province\n")
    with pytest.raises(DirectoryError, match="no province"):
        parse_csv("code,name,kind,parent\n")
    with pytest.raises(DirectoryError, match="second province"):
        parse_csv("code,name,kind,parent\nP,X,province,\nQ,Y,province,\n")
    with pytest.raises(DirectoryError, match="empty"):
        parse_csv("")


def test_tree_search_ignores_accents_and_case():
    tree = Tree.build(parse_csv(demo_csv()))
    found = tree.search("mu cang chai")
    assert found and all("Mù Cang Chải" in s.name or "MCC" in s.code for s in found)
    assert [s.code for s in tree.search("YB-MCC")][0] == "YB-MCC"
    assert fold("Đồng Tâm") == "dong tam"


def test_tree_walks():
    tree = Tree.build(parse_csv(GOOD))
    assert tree.province.code == "P"
    assert tree.descendants("P") == ["D1", "C1", "C2"]  # in the file's order
    assert tree.district_of("C2").code == "D1"
    assert [s.code for s in tree.ordered()] == ["P", "D1", "C1", "C2"]
