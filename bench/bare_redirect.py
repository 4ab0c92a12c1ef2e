"""Baseline (b): the least an aiohttp+uvloop redirector can do: a dict lookup and a 302.

`python -m bench.bare_redirect PORT CODES_FILE DESTINATION [--reuse-port]`

With `--reuse-port`, several of these processes can share the port (the bare ceiling for N
processes on this machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop
from aiohttp import web


def main() -> None:
    port, codes_file, destination = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    reuse_port = "--reuse-port" in sys.argv[4:]
    table = {code: destination for code in codes_file.read_text().split()}

    async def redirect(request: web.Request) -> web.Response:
        target = table.get(request.match_info["code"])
        if target is None:
            raise web.HTTPNotFound()
        return web.Response(status=302, headers={"Location": target})

    app = web.Application()
    app.router.add_get("/{code}", redirect)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
