"""A DEM uploaded through the API, conditioned in the background as a job the client polls.

The upload is checked before a job exists (a file that is not a GeoTIFF, or not a DEM the flood
model can use, is a 422 at once); the job then does what `wangge flood dem import` does
(gis/flood/dem.py `import_dem`: rivers burned in, depressions filled, D8, HAND, the precomputed
stages) in ONE transaction of its own, and writes its progress in short transactions beside it so
a poll sees it. The uploaded file is deleted when the job ends (it is not kept: the DEM's
conditioned copy lives in the flood store). One job runs at a time per process. While a job is
queued or running its worker writes a heartbeat; a job whose heartbeat stopped (the server was
restarted mid-way) is answered as failed, so a client never polls forever.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis.context import Context
from gis.errors import InputError, NotFound, Problem

log = logging.getLogger("wangge.dem_jobs")

# The first bytes of a classic or BigTIFF file, little- and big-endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_RUNNING = threading.Semaphore(1)
HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0


def check_upload(path: Path, file_name: str, crs: str | None = None) -> None:
    """InputError unless the file is a GeoTIFF the flood model can read (georeferenced, square cells ...)."""
    from gis.flood.dem import read_dem

    with open(path, "rb") as f:
        head = f.read(4)
    if head not in TIFF_MAGIC:
        raise InputError(Problem(("body", "file"), f"{file_name} is not a GeoTIFF (its content is not TIFF)",
                                 "not_a_geotiff"), "Cannot use the DEM")
    try:
        read_dem(path, crs)
    except InputError as exc:
        raise InputError([Problem(("body", *p.loc), p.msg, p.type, p.ctx) for p in exc.problems], exc.title) from None


def keep_upload(source: Path, data_dir: Path) -> Path:
    """A private copy of the upload that outlives the request (the job deletes it)."""
    folder = data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="dem-", suffix=".tif", dir=folder)
    with open(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    return Path(name)


def create_job(session: Session, ctx: Context, *, name: str, file_name: str) -> int:
    """A queued job row (the caller commits it before starting the job)."""
    job_id = int(session.execute(
        text("INSERT INTO dem_job (name, file_name, created_by, step) VALUES (:n, :f, :u, 'queued') RETURNING id"),
        {"n": name, "f": file_name, "u": ctx.principal.user_id if ctx.principal else None},
    ).scalar_one())
    ctx.audit(session, "upload", resource="dem_job", resource_ids=[job_id], detail={"file": file_name, "name": name})
    return job_id


def _progress(make_session: sessionmaker[Session], job_id: int, progress: float, step: str,
              state: str = "running", **extra: Any) -> None:
    sets = ["progress = :p", "step = :s", "state = :st"]
    params: dict[str, Any] = {"id": job_id, "p": progress, "s": step, "st": state}
    if state == "running" and progress == 0:
        sets.append("started_at = now()")
    if state in ("done", "failed"):
        sets.append("finished_at = now()")
    for key in ("result", "problems"):
        if key in extra:
            sets.append(f"{key} = CAST(:{key} AS jsonb)")
            params[key] = json.dumps(extra[key], ensure_ascii=False, default=str)
    with make_session() as s, s.begin():
        s.execute(text(f"UPDATE dem_job SET {', '.join(sets)} WHERE id = :id"), params)


def run_job(make_session: sessionmaker[Session], ctx: Context, job_id: int, path: Path, *, name: str,
            file_name: str, crs: str | None = None, threshold_km2: float | None = None) -> None:
    """Condition the DEM and compute its precomputed stages, reporting progress; never raises."""
    from gis.flood.dem import import_dem
    from gis.flood.stages import precomputed_stages, scenario_extent

    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                with make_session() as s, s.begin():
                    s.execute(text("UPDATE dem_job SET heartbeat_at = now() WHERE id = :id"), {"id": job_id})
            except Exception:  # noqa: BLE001 - a missed beat only makes the job look stale later
                log.warning("DEM job %s: heartbeat not written", job_id)
            stop.wait(HEARTBEAT_S)

    ticker = threading.Thread(target=beat, name=f"dem-job-{job_id}-heartbeat", daemon=True)
    ticker.start()
    try:
        with _RUNNING:
            _progress(make_session, job_id, 0.0, "conditioning")
            with make_session() as session, session.begin():
                out = import_dem(session, path, name=name, crs=crs, accumulation_threshold_km2=threshold_km2,
                                 precompute=False)
                _progress(make_session, job_id, 0.5, "stages")
                wanted = precomputed_stages()
                stages = []
                for i, (stage, mode) in enumerate(wanted):
                    stages.append(scenario_extent(session, stage, mode, dem_name=out["name"]).stage_m)
                    _progress(make_session, job_id, 0.5 + 0.45 * (i + 1) / max(len(wanted), 1), "stages")
                out["stages_m"] = sorted(set(stages))
                ctx.audit(session, "import", resource="flood_dem", resource_ids=[out["id"]],
                          detail={"file": file_name, "job": job_id, "name": out["name"], "shape": out["shape"]})
            _progress(make_session, job_id, 1.0, "done", "done", result=out)
    except InputError as exc:
        _progress(make_session, job_id, 1.0, "failed", "failed", problems=[p.as_dict() for p in exc.problems])
    except Exception as exc:  # noqa: BLE001 - a job must end in a state the client can read
        log.exception("DEM job %s failed", job_id)
        _progress(make_session, job_id, 1.0, "failed", "failed",
                  problems=[{"loc": ["file"], "msg": f"the DEM could not be conditioned ({type(exc).__name__})",
                             "type": "job_failed"}])
    finally:
        stop.set()
        path.unlink(missing_ok=True)


def start_job(make_session: sessionmaker[Session], ctx: Context, job_id: int, path: Path, **kw: Any) -> None:
    threading.Thread(target=run_job, args=(make_session, ctx, job_id, path), kwargs=kw,
                     name=f"dem-job-{job_id}", daemon=True).start()


def job_status(session: Session, job_id: int) -> dict[str, Any]:
    """The job as a poll sees it. Read only: a job whose worker stopped beating is answered as failed."""
    row = session.execute(
        text("SELECT id, state, progress, step, name, file_name, created_at, started_at, finished_at, result, "
             "problems, state IN ('queued', 'running') AND coalesce(heartbeat_at, created_at) "
             "< now() - make_interval(secs => :stale) AS stale FROM dem_job WHERE id = :id"),
        {"id": job_id, "stale": STALE_AFTER_S}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no DEM job has the id {job_id}")
    out = dict(row)
    if out.pop("stale"):
        out.update(state="failed", step="failed", problems=[{
            "loc": ["file"], "type": "job_lost",
            "msg": "the server stopped while conditioning this DEM; upload it again"}])
    for key in ("created_at", "started_at", "finished_at"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    return out
