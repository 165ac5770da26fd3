"""CLI command ``dataset build``: a point-in-time training set, stored as a snapshot."""

from __future__ import annotations

import click

from chronoml.cli.common import _chronoml, _json, cli, json_option


@cli.group()
def dataset() -> None:
    """Build training sets joined as of each label's time (no feature value from after it)."""


@dataset.command("build")
@click.option("--labels", required=True, help="Labels: a snapshot reference or a CSV/Parquet path.")
@click.option("--entity", required=True, help="The entity column (in labels and features).")
@click.option("--time", "time_col", required=True, help="The labels' time column.")
@click.option(
    "--features",
    "features",
    multiple=True,
    required=True,
    metavar="NAME=REF_OR_PATH[:ttl=30d][:created_at=COL]",
    help="A feature table (repeat for each); :entity=COL and :time=COL name its own keys.",
)
@click.option("--name", required=True, help="Name of the snapshot the training set is stored as.")
@click.option("--prefix", is_flag=True, help="Name every feature column TABLE__COLUMN.")
@json_option
@click.pass_context
def build(
    ctx: click.Context,
    labels: str,
    entity: str,
    time_col: str,
    features: tuple[str, ...],
    name: str,
    prefix: bool,
    as_json: bool,
) -> None:
    """Join each label row to the latest row of each feature table at or before its time
    (and within the table's TTL); store the result as a snapshot with its lineage.

    Every label row is kept; rows with no feature row in a table get nulls there and
    are counted. Prints the new snapshot id.
    """
    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    from chronoml import training_sets

    with _chronoml(ctx) as cm:
        parsed = [training_sets.parse_feature(f) for f in features]
        built = training_sets.build(
            cm,
            labels,
            entity=entity,
            time=time_col,
            features=parsed,
            name=name,
            prefix=prefix,
        )
    if as_json:
        _json(built.to_dict())
        return
    click.echo(built.snapshot.id)
    missing = ", ".join(f"{k} {v}" for k, v in built.missing.items())
    click.echo(
        f"  {built.snapshot.rows} rows, {len(built.snapshot.columns)} columns; "
        f"label rows with no feature row: {missing}",
        err=True,
    )
