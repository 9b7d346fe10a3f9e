"""A file imported part by part gives exactly what the whole file gives; failures leave nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gis.errors import InputError
from gis.incidents import batch
from tests.test_incident_import_bulk import town_rows


@pytest.fixture()
def scratch(scratch_db_url):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def messy_file(engine, tmp_path) -> tuple[pd.DataFrame, object]:
    frame = town_rows(engine, 40, seed=21).astype({"lon": object, "lat": object})
    frame.loc[3, "category"] = "magic"                         # a bad row
    frame.loc[11, "lon"] = "abc"                               # another
    frame.loc[17, "lon"] = float(frame.loc[17, "lon"]) + 1.0   # far outside the town
    frame.loc[25, "external_id"] = frame.loc[2, "external_id"]  # repeats an earlier part's row
    frame.loc[30, "external_id"] = frame.loc[29, "external_id"]  # repeats a row of its own part
    frame.loc[33, "external_id"] = ""                          # gets a derived id
    path = tmp_path / "messy.csv"
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    return frame, path


def stored(engine, prefix: str) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(
            "SELECT i.external_id, i.category, i.group_code, i.village_code, ST_X(i.geom), ST_Y(i.geom), "
            "(SELECT count(*) FROM incident_event e WHERE e.incident_id = i.id), "
            "(SELECT count(*) FROM incident_assignee a WHERE a.incident_id = i.id) "
            "FROM incident i WHERE i.external_id LIKE :p OR i.external_id LIKE 'import:%' ORDER BY 1"),
            {"p": prefix + "%"})]


@pytest.mark.parametrize("chunk_rows", [7, 1_000])
def test_parts_give_the_same_report_and_rows_as_the_whole_file(scratch, tmp_path, chunk_rows):
    frame, path = messy_file(scratch, tmp_path)
    with Session(scratch) as session:
        report = batch.import_incidents(
            session, batch.open_incident_file(path, max_rows=1_000, chunk_rows=chunk_rows), source="stream")
        session.commit()
    assert [(f["row"], f["column"]) for f in report.failed] == [
        (5, "category"), (13, "lon"), (19, "lon")]
    assert "outside the town" in report.failed[2]["reason"]
    assert report.rows == 40 and report.created == 35 and report.already_present == 2
    rows = stored(scratch, "bulk-21-")
    assert len(rows) == 35
    assert all(events == 1 and assignees >= 1 for *_, events, assignees in rows)
    # Coordinates exactly as in the file; the repeated ids kept their first row.
    first = frame.drop_duplicates("external_id").set_index("external_id")
    for ext, _cat, _g, _v, x, y, _e, _a in rows:
        if not ext.startswith("import:"):
            assert (x, y) == (float(first.loc[ext, "lon"]), float(first.loc[ext, "lat"]))
    # Again: nothing new.
    with Session(scratch) as session:
        again = batch.import_incidents(
            session, batch.open_incident_file(path, max_rows=1_000, chunk_rows=chunk_rows), source="stream")
        session.commit()
    assert again.created == 0 and again.already_present == 37
    assert stored(scratch, "bulk-21-") == rows


def test_a_file_found_too_long_while_streaming_writes_nothing(scratch, tmp_path):
    _, path = messy_file(scratch, tmp_path)
    before = stored(scratch, "bulk-21-")
    with Session(scratch) as session, pytest.raises(InputError) as err:
        batch.import_incidents(session, batch.open_incident_file(path, max_rows=20, chunk_rows=7), source="x")
    assert err.value.problems[0].type == "too_many_rows"
    assert stored(scratch, "bulk-21-") == before


def test_a_broken_line_deep_in_the_file_is_a_file_error_and_writes_nothing(scratch, tmp_path):
    _, path = messy_file(scratch, tmp_path)
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    lines[30] += ',"unclosed'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    with Session(scratch) as session, pytest.raises(InputError) as err:
        batch.import_incidents(session, batch.open_incident_file(path, max_rows=1_000, chunk_rows=7), source="x")
    assert err.value.problems[0].type == "unreadable_file"
    assert stored(scratch, "bulk-21-") == []


def test_a_header_alone_is_checked_and_imports_nothing(scratch, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("category,description,occurred_at,lon,lat\n", encoding="utf-8")
    with Session(scratch) as session:
        report = batch.import_incidents(session, batch.open_incident_file(path, max_rows=10), source="x")
    assert report.rows == 0 and report.created == 0 and not report.failed
    path.write_text("category,description,lon\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        list(batch.open_incident_file(path, max_rows=10))
    assert "occurred_at" in err.value.problems[0].msg


def test_a_failing_copy_on_the_database_thread_is_raised_and_leaves_nothing(scratch, monkeypatch):
    frame = town_rows(scratch, 300, seed=22)

    def broken_copy(*args, **kwargs):
        raise RuntimeError("the server went away")

    monkeypatch.setattr(batch, "copy_payload", broken_copy)
    with Session(scratch) as session, pytest.raises(RuntimeError, match="went away"):
        batch.import_incidents(session, frame, source="x", chunk_rows=50)
    assert stored(scratch, "bulk-22-") == []
