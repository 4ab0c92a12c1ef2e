"""`clicktrack resend`: resend a campaign to its recipients who did not click, from a shell.

A sender's command, not an operator's: it goes through the API with the organisation's API key
(`CLICKTRACK_API_KEY`), so the same checks hold as for `POST /v1/campaigns/{id}/resends` (the DLT
rules, the whitelist, 409 while tracking is off), and writes every message as CSV (recipient,
text, encoding, segments), page after page.
"""

from __future__ import annotations

import csv
import os
from typing import IO, Any

import aiohttp
import click

from services.cli.running import run
from shared.errors import DependencyError, InvalidInputError
from shared.settings import Settings

PAGE = 1000
"""Messages asked for per request."""


@click.command("resend")
@click.argument("campaign_id", type=click.IntRange(min=1))
@click.option("--name", required=True, help="The new resend campaign's name.")
@click.option("--template", required=True, help="The DLT template, with its {#...#} slots.")
@click.option("--value", "values", multiple=True, help="A slot value, in order (repeat).")
@click.option("--link", "link_id", type=click.IntRange(min=1), default=None,
              help="Only the recipients of this link who did not open it.")  # fmt: skip
@click.option("--api", "api_url", default=None, help="The API's base URL (default: API_HOST/PORT).")
@click.option("--out", type=click.File("w"), default="-", help="Where the messages CSV goes.")
@click.pass_obj
def resend_command(
    settings: Settings, campaign_id: int, name: str, template: str, values: tuple[str, ...],
    link_id: int | None, api_url: str | None, out: IO[str],
) -> None:  # fmt: skip
    """Resend campaign CAMPAIGN_ID to its non-clickers (each keeps their code) and write the
    messages as CSV. The API key is read from CLICKTRACK_API_KEY."""
    key = _api_key()
    base = api_url or f"http://{settings.api.host}:{settings.api.port}"
    body: dict[str, Any] = {"name": name, "template": template, "values": list(values)}
    if link_id is not None:
        body["link_id"] = link_id
    made = run(_resend(base, key, campaign_id, body, out))
    click.echo(
        f"resend campaign {made['campaign']['id']} made: {made['resend']['audience']} recipients",
        err=True,
    )


def _api_key() -> str:
    key = os.environ.get("CLICKTRACK_API_KEY", "").strip()
    if not key:
        raise click.UsageError("set CLICKTRACK_API_KEY to an API key of the organisation")
    return key


async def _resend(
    base: str, key: str, campaign_id: int, body: dict[str, Any], out: IO[str]
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    writer = csv.writer(out, lineterminator="\n")
    async with aiohttp.ClientSession(base, headers=headers) as http:
        made = await _call(
            http, "POST", f"/v1/campaigns/{campaign_id}/resends", json={**body, "limit": PAGE}
        )
        writer.writerow(["recipient", "text", "encoding", "segments"])
        _write(writer, made["messages"])
        after = made["next_after"]
        resend_id = made["campaign"]["id"]
        while after is not None:
            page = await _call(
                http, "GET", f"/v1/campaigns/{resend_id}/messages",
                params={"after": after, "limit": str(PAGE)},
            )  # fmt: skip
            _write(writer, page["items"])
            after = page["next_after"]
    out.flush()
    return made


def _write(writer: Any, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        writer.writerow([m["recipient"], m["text"], m["encoding"], m["segments"]])


async def _call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> dict[str, Any]:
    try:
        async with http.request(method, path, **kw) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 400:
                raise InvalidInputError(
                    f"{method} {path}: {response.status} {answer.get('error')}:"
                    f" {answer.get('detail')}",
                    code=str(answer.get("error")),
                )
            return answer
    except aiohttp.ClientError as exc:
        raise DependencyError(f"the API did not answer {method} {path}: {exc}") from exc
