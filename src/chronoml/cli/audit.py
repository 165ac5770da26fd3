"""``chronoml audit``: verify the ledger and the evidence log, sign checkpoints, export bundles."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from chronoml.cli.common import Fail, _chronoml, _json, cli, json_option

if TYPE_CHECKING:
    from chronoml.domain.note import Checkpoint, VerifierKey
    from chronoml.evidence.keys import SigningKey
    from chronoml.evidence.timestamps import TimestampReport
    from chronoml.service import Chronoml


@cli.group()
def audit() -> None:
    """Check the ledger and the evidence log; sign and export evidence."""


def _key(cm: Chronoml) -> SigningKey:
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.evidence.checkpoints import signing_key
    from chronoml.evidence.keys import KeyFileError

    try:
        return signing_key(cm.settings, cm.store)[0]
    except KeyFileError as exc:
        raise Fail(exc.message) from None


def verifier_key(key_arg: str) -> VerifierKey:
    """The verifier key given with ``--key`` (the key itself or a file holding it)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.verify import UsageError, read_key

    try:
        return read_key(key_arg)
    except UsageError as exc:
        raise Fail(f"--key: {exc.message}") from None


def read_checkpoint(path: Path, key_arg: str | None) -> Checkpoint:
    """A signed checkpoint file opened with the verifier key given (``--key``)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.domain import note
    from chronoml.verify import ed25519_verify

    if key_arg is None:
        raise Fail("--checkpoint needs --key PUBKEY (the log's verifier key)")
    vk = verifier_key(key_arg)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"--checkpoint: cannot read {path}: {exc}") from None
    try:
        return note.open_checkpoint(text, vk, ed25519_verify)
    except note.NoteError as exc:
        raise Fail(f"--checkpoint: {exc.message}") from None


@audit.command()
@click.option("--decisions", is_flag=True, help="Also recompute every decision's leaf.")
@click.option("--window", help="With --decisions: only batches committed in the last W (7d).")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A signed checkpoint published earlier: prove the store still extends it.",
)
@click.option(
    "--key",
    "key_arg",
    help="The log's verifier key (or a file with it): --checkpoint and every stored "
    "checkpoint must be signed by it (stored ones by the store's own key too).",
)
@click.option(
    "--tsa-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The RFC 3161 authority's certificates (PEM, up to its root): every stored "
    "timestamp and the one beside --checkpoint (FILE.tsr) must be signed by it.",
)
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    decisions: bool,
    window: str | None,
    checkpoint_file: Path | None,
    key_arg: str | None,
    tsa_cert: Path | None,
    as_json: bool,
) -> None:
    """Recompute the hash chain and the evidence log, check the stored checkpoints'
    signatures and timestamps; name the first bad entry (exit 1)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.evidence import audit as EA
    from chronoml.evidence import timestamps as TS
    from chronoml.evidence.signatures import trusted_keys
    from chronoml.window import Window

    cp = read_checkpoint(checkpoint_file, key_arg) if checkpoint_file is not None else None
    given = verifier_key(key_arg) if key_arg is not None else None
    try:
        certs = TS.load_certificates(tsa_cert) if tsa_cert is not None else []
    except TS.TimestampError as exc:
        raise Fail(f"--tsa-cert: {exc.message}") from None
    w = None
    if window is not None:
        try:
            w = Window.parse(window)
        except ValueError as exc:
            raise Fail(f"--window: {exc}") from None
    with _chronoml(ctx, create=False) as cm:
        keys, no_own_key = trusted_keys(cm.settings.signing_key_path, given)
        chain = cm.verify()
        ev = EA.verify(cm.store, decisions=decisions, window=w, checkpoint=cp, keys=keys)
        ts = TS.check_stored(cm.store, certs, checkpoint_file)
    ok = chain.ok and ev.ok and ts.ok
    if as_json:
        _json({**chain.__dict__, "ok": ok, "evidence": ev.to_dict(), "timestamps": ts.to_dict()})
    else:
        if chain.ok:
            click.echo(f"ok: {chain.events} events, head {chain.head}")
        else:
            click.echo(f"FAILED at ledger event #{chain.first_bad_seq}: {chain.reason}", err=True)
        click.echo(EA.summary(ev), err=not ev.ok)
        for p in ev.problems[1:6]:
            click.echo(f"  also: {p.what}: {p.reason}", err=True)
        stored = [c for c in ev.checkpoints if c.source != "given"]
        if stored and not keys:
            click.echo(
                f"  the {len(stored)} stored checkpoints' signatures were not checked "
                f"({no_own_key}): give --key PUBKEY",
                err=True,
            )
        elif stored and all(c.signed for c in stored):
            click.echo(f"  {len(stored)} stored checkpoints carry valid signatures")
        _echo_timestamps(ts)
    if not ok:
        sys.exit(1)


def _echo_timestamps(ts: TimestampReport) -> None:
    for what, reason in ts.problems:
        click.echo(f"FAILED at {what}: {reason}", err=True)
    if ts.checked and ts.ok:
        how = "signed by the authority" if ts.chained else "imprints only: give --tsa-cert"
        newest = max(s.time for _, s in ts.stamps).isoformat()
        click.echo(f"  {ts.checked} timestamps ok ({how}), the latest at {newest}")


@audit.command()
@click.pass_context
def key(ctx: click.Context) -> None:
    """Print the evidence log's public verifier key (created with the signing key if absent)."""
    with _chronoml(ctx) as cm:
        click.echo(_key(cm).vkey())


@audit.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signed checkpoint to this file (default: print it).",
)
@click.option(
    "--tsa-url",
    help="Also timestamp it with this RFC 3161 authority (kept in the store, and in "
    "FILE.tsr beside --out).",
)
@json_option
@click.pass_context
def checkpoint(ctx: click.Context, out: Path | None, tsa_url: str | None, as_json: bool) -> None:
    """Sign a checkpoint of the evidence log now (C2SP signed note) and record it."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.evidence import checkpoints as EC
    from chronoml.evidence.timestamps import Authority

    # a URL typed here is the user's own request, not a configuration the server follows
    tsa = Authority(tsa_url, check_egress=False) if tsa_url else None
    with _chronoml(ctx) as cm:
        issued = EC.issue(cm.store, _key(cm), authority=tsa)
    if tsa is not None and issued.timestamp is None:
        click.echo(f"warning: no timestamp: {issued.timestamp_error}", err=True)
    if out is not None:
        EC.write(issued, out)
    if as_json:
        _json(issued.to_dict())
    elif out is None:
        click.echo(issued.note, nl=False)
    else:
        click.echo(f"checkpoint of {issued.checkpoint.size} entries written to {out}")


@audit.command(name="export")
@click.option("--decision", "decision_id", required=True, help="The decision to export.")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="A new folder."
)
@click.pass_context
def export(ctx: click.Context, decision_id: str, out: Path) -> None:
    """Write an evidence bundle for one decision (check it with python -m chronoml.verify)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.evidence import proofs

    with _chronoml(ctx) as cm:
        written = proofs.export(cm, _key(cm), decision_id, out)
        vkey = _key(cm).vkey()
    click.echo(f"wrote {len(written)} files to {out}")
    click.echo(f"check it offline: python -m chronoml.verify {out} --key {vkey}")


def show_proof(ctx: click.Context, decision_id: str, as_json: bool) -> None:
    """``chronoml decision ID --proof``: the decision's leaf, audit paths and a checkpoint."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.evidence import proofs

    with _chronoml(ctx) as cm:
        p: dict[str, Any] = proofs.decision_proof(cm, _key(cm), decision_id)
    if as_json:
        _json(p)
        return
    b = p["batch"]
    click.echo(f"decision {decision_id}")
    click.echo(f"  leaf        {p['leaf_hash']}")
    click.echo(f"  batch       position {b['index']} of {b['size']} ({len(b['path'])} hashes)")
    click.echo(f"  log entry   {p['log_index']} of {p['log_size']} ({len(p['log_path'])} hashes)")
    click.echo("  checkpoint")
    for line in p["checkpoint"].splitlines():
        click.echo(f"    {line}")


@audit.command(name="reads")
@click.option("--decision", "decision_id", help="Only reads of this decision.")
@click.option("--principal", help="Only reads by this principal (e.g. token:auditor-1).")
@click.option("--since", help="Only reads at or after this time (ISO 8601).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@click.pass_context
def reads(
    ctx: click.Context,
    decision_id: str | None,
    principal: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Who read raw decision inputs, when, and through what (newest first)."""
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml.store import principals as SP
    from chronoml.timeutil import iso, parse_time

    try:
        t = parse_time(since) if since else None
    except ValueError as exc:
        raise Fail(f"--since: {exc}") from None
    with _chronoml(ctx, create=False) as cm:
        rows = SP.reads(
            cm.store, decision_id=decision_id, principal=principal, since=t, limit=limit
        )
    if as_json:
        _json({"reads": rows})
        return
    for r in rows:
        click.echo(f"{iso(r['ts'])}  {r['principal']:<28} {r['decision_id']}  {r['route']}")
    if not rows:
        click.echo("no reads of raw inputs match")
