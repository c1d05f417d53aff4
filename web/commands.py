"""``nas serve`` and ``nas token``: the service's commands, registered with the ``nas`` command
as entry points (group ``nas.commands`` in pyproject.toml), so the floors below never import the
service."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import uvicorn

from infra.errors import UserError
from infra.storage import check_storage_url, create_engine, existing_database
from nas.command import Command
from web.app import create_app
from web.auth import TokenStore


def _serve(cfg, config_dirs, console) -> int:
    url = existing_database(cfg.storage)
    try:
        with socket.create_server((cfg.host, cfg.port)):
            pass
    except OSError as e:
        raise UserError(f"port: cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}") from None
    for folder in cfg.data_dirs:
        if not Path(folder).is_dir():
            raise UserError(f"data_dirs: {folder!r} is not a folder")
    app = create_app(
        url,
        public_reads=cfg.public_reads,
        export_dir=cfg.export_dir,
        data_dirs=list(cfg.data_dirs),
        clusters=list(cfg.clusters),
        config_dirs=config_dirs,
        dashboard_url=cfg.dashboard_url,
    )
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server keeps no state: kill ends it
    reads = "public" if cfg.public_reads else "with a read token"
    console.print(
        f"nas service on http://{cfg.host}:{cfg.port}/ (API /api, docs /docs; reads {reads}); Ctrl-C stops"
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


def _token(cfg, config_dirs, console, action: str) -> int:

    check_storage_url(cfg.storage, writing=action == "create")
    engine = create_engine(cfg.storage)
    try:
        store = TokenStore(engine)
        if action == "create":
            try:
                token = store.create(cfg.token_name or "", cfg.scope)
            except ValueError as e:
                raise UserError(str(e)) from None
            console.print(
                f"{cfg.scope} token {cfg.token_name!r} (shown once; the storage keeps only its hash):"
            )
            print(token)
        elif action == "revoke":
            if not cfg.token_name:
                raise UserError("token_name: name the token to revoke")
            count = store.revoke(cfg.token_name)
            if not count:
                raise UserError(f"token_name: no live token called {cfg.token_name!r}")
            console.print(f"revoked {count} token(s) called {cfg.token_name!r}")
        else:
            for row in store.list():
                state = f"revoked {row['revoked']:%Y-%m-%d %H:%M}" if row["revoked"] else "live"
                console.print(
                    f"{row['name']}  {row['scope']}  created {row['created']:%Y-%m-%d %H:%M}  {state}"
                )
    finally:
        engine.dispose()
    return 0


serve = Command(_serve)
token = Command(_token, ("create", "revoke", "list"))
