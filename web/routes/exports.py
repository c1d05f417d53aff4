"""Exports of trials (``nas export`` run by the server) and the download of their files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from nas.records import unique_file_name
from web.models import ExportIn, ExportOut
from web.policy import hydra_string
from web.routes.studies import Id, best_number
from web.service import Reader, Served, Service, Writer

router = APIRouter(prefix="/api/studies", tags=["exports"])

DOWNLOADS = ("model.onnx", "arch.yaml", "export.json")
EXPORT_TIMEOUT_S = 600


def export_folder(s: Service, name: str, number: int) -> Path:
    """The folder of one study's trial export, distinct for every study name: a name that is not
    already file-safe gets a digest of the exact name, so two names never share a folder."""
    return s.export_root / f"{unique_file_name(name)}-trial{number}"


@router.post("/{name:name}/exports", response_model=ExportOut, status_code=201)
def export(name: str, body: ExportIn, s: Served, who: Writer) -> ExportOut:
    """Export a trial (or the best within a latency budget) as ``nas export`` does."""
    s.study_id(name)
    if (body.trial is None) == (body.latency_budget_ms is None):
        raise HTTPException(422, "give exactly one of trial or latency_budget_ms")
    number = body.trial if body.trial is not None else best_number(s, name, body.latency_budget_ms)
    folder = export_folder(s, name, number)
    # Typed values and exact, escaped names only: nothing of the request is parsed as an override.
    args = [f"study_name={hydra_string(name)}", f"trial={number}", f"out_dir={hydra_string(str(folder))}"]
    args += ["overwrite=true"]
    command = [sys.executable, "-m", "nas", "export", *s.jobs.command_args(args)]
    try:
        done = subprocess.run(
            command, cwd=s.workdir, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise HTTPException(504, f"nas export took longer than {EXPORT_TIMEOUT_S} s") from None
    if done.returncode == 2:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise HTTPException(422, lines[-1].removeprefix("nas export: error: ") if lines else "bad input")
    if done.returncode != 0:
        raise HTTPException(500, f"nas export failed (exit {done.returncode})")
    files = sorted(p.name for p in folder.iterdir() if p.name in DOWNLOADS)
    return ExportOut(trial=number, folder=folder.name, files=files, message=done.stdout.strip()[-500:])


@router.get("/{name:name}/trials/{number}/export/{filename}")
def download(name: str, number: Id, filename: str, s: Served, who: Reader) -> FileResponse:
    """A file of this study's (exactly this name's) trial export; nothing else is ever served."""
    if filename not in DOWNLOADS:
        raise HTTPException(404, "no such file")
    s.study_id(name)
    root = s.export_root.resolve()
    path = (export_folder(s, name, number) / filename).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such file; export the trial first")
    return FileResponse(path, filename=filename)
