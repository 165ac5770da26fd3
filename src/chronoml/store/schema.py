"""chronoml's tables (SQLAlchemy Core). Changes go through Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from chronoml.store.id_types import DecisionId

metadata = MetaData()

# The ledger: one linear hash chain. UNIQUE(prev_hash) makes a fork impossible
# even if two writers got past the head lock.
ledger_events = Table(
    "ledger_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    Column("effective_at", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", Text, nullable=True),
    Column("back", BigInteger, nullable=True),
    Column("sets_state", Boolean, nullable=False),
)
# state_at(endpoint, t): one descending seek on this index
Index(
    "ix_ledger_state",
    ledger_events.c.endpoint,
    ledger_events.c.sets_state,
    ledger_events.c.effective_at,
    ledger_events.c.seq,
)
Index("ix_ledger_endpoint_seq", ledger_events.c.endpoint, ledger_events.c.seq)

# One row; writers lock it to append to the chain in order.
ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", String(71), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("columns", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("path", Text, nullable=True),
    # who took it, and for a built training set its inputs and join (JSON); since 0010
    Column("actor", String(200), nullable=True),
    Column("lineage", Text, nullable=True),
    Index("ix_snapshots_name_created", "name", "created_at"),
)

# The column layout of logged inputs. Numeric columns of a decision are
# packed as 8-byte values in `decisions.num` (float64, or int64 bits for
# integer columns) so a window reads back as one matrix; other values go,
# in order, to a JSON array in `decisions.txt`.
input_layouts = Table(
    "input_layouts",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("columns", Text, nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", DecisionId(), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("endpoint", String(200), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("unit", String(200), nullable=True),
    Column("request_id", DecisionId(), nullable=False),
    Column("layout", String(16), nullable=False),
    Column("num", LargeBinary, nullable=False),
    Column("txt", Text, nullable=True),
    Column("output", Text, nullable=False),
    Column("output_num", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("scores", LargeBinary, nullable=True),  # float64 per class, model_classes order
    Column("context", Text, nullable=True),  # what the caller said that is not an input
)
Index("ix_decisions_endpoint_ts", decisions.c.endpoint, decisions.c.ts)
Index("ix_decisions_unit", decisions.c.unit)

# The reference profile of a deployed artifact: built once from its training
# snapshot (features and the model's predictions on it), read by every report.
profiles = Table(
    "profiles",
    metadata,
    Column("artifact_digest", String(71), primary_key=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("snapshot_id", String(71), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Late-arriving labels. Append-only: a second label for a decision is a new
# row (an explicit update), so the earlier value stays in history.
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", DecisionId(), nullable=False),
    Column("label", Text, nullable=False),
    Column("label_num", Float, nullable=True),
    Column("observed_at", BigInteger, nullable=True),
    Column("recorded_at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
)
Index("ix_feedback_decision", feedback.c.decision_id, feedback.c.id)

# SHAP explanations stored with their decision.
explanations = Table(
    "explanations",
    metadata,
    Column("decision_id", DecisionId(), primary_key=True),
    Column("explainer", String(64), nullable=False),
    Column("output_scale", String(32), nullable=False),
    Column("base_value", Float, nullable=False),
    Column("contributions", Text, nullable=False),
    Column("background", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Every monitored number of every window, per endpoint, variant and version.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(200), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("metric", String(200), nullable=False),
    Column("value", Float, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)
Index(
    "ix_monitor_results_endpoint",
    monitor_results.c.endpoint,
    monitor_results.c.metric,
    monitor_results.c.window_end,
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Whether a rule is firing for a subject (endpoint/variant), for cooldowns
# and for recording both firing and resolving.
alert_state = Table(
    "alert_state",
    metadata,
    Column("rule", String(200), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("firing", Boolean, nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("last_fired_at", BigInteger, nullable=True),
    Column("last_value", Float, nullable=True),
    PrimaryKeyConstraint("rule", "subject"),
)

# Deliveries (webhooks) written in the same transaction as what caused them
# and retried with backoff until delivered: a restart loses nothing.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("target", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_outbox_pending", outbox.c.delivered_at, outbox.c.next_attempt_at)

# Retraining: what to run per endpoint, and when next on a schedule.
retrain_configs = Table(
    "retrain_configs",
    metadata,
    Column("endpoint", String(200), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("next_run_at", BigInteger, nullable=True),
)

# Durable retraining jobs. `active` holds the endpoint while the job is
# unfinished and NULL after, so UNIQUE allows one unfinished job per endpoint.
# A worker holds `lease_owner` until `lease_until` while it advances a job.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(200), nullable=False),
    Column("active", String(200), nullable=True, unique=True),
    Column("status", String(32), nullable=False),
    Column("step", String(32), nullable=False),
    Column("step_state", String(16), nullable=False),
    Column("trigger", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("snapshot_id", String(71), nullable=True),
    Column("model_name", String(200), nullable=True),
    Column("model_version", String(32), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("champion", String(200), nullable=True),
    Column("challenger", String(200), nullable=True),
    Column("deploy_seq", BigInteger, nullable=True),
    Column("verdict_seq", BigInteger, nullable=True),
    Column("final_seq", BigInteger, nullable=True),
    Column("evaluation", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("log", Text, nullable=True),
)
Index("ix_jobs_endpoint", jobs.c.endpoint, jobs.c.id)

job_steps = Table(
    "job_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("step", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("ledger_seq", BigInteger, nullable=True),
)
Index("ix_job_steps_job", job_steps.c.job_id, job_steps.c.id)

# The decision log's history compacted into columnar blocks: every decision of
# an endpoint with ts < its watermark is in exactly one block, so a window of
# a million decisions reads as a few dozen rows instead of a million.
decision_blocks = Table(
    "decision_blocks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(200), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("layout", String(16), nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("ts_min", BigInteger, nullable=False),
    Column("ts_max", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("ts", LargeBinary, nullable=False),
    Column("num", LargeBinary, nullable=False),
    Column("txt", Text, nullable=True),
    Column("codes", LargeBinary, nullable=True),
    Column("outputs", LargeBinary, nullable=False),
    # one byte per row, 1 where the row's inputs were erased (migration 0014)
    Column("erased", LargeBinary, nullable=True),
)
Index("ix_decision_blocks_endpoint", decision_blocks.c.endpoint, decision_blocks.c.ts_max)

# What fairness reads of each decision block, dictionary-coded per column (the JSON
# list of a column's distinct texts, and an int32 code per row into it, -1 for none):
# the rows' ids (fixed width), model names, outputs, context as logged, and the latest
# label of each decision among the feedback rows with id <= labels_to (a later label is
# read from the feedback table, and compaction folds it in), and the class scores.
outcome_blocks = Table(
    "outcome_blocks",
    metadata,
    Column("block_id", Integer, primary_key=True, autoincrement=False),
    Column("ids", LargeBinary, nullable=False),
    Column("id_min", String(64), nullable=False),
    Column("id_max", String(64), nullable=False),
    Column("names", Text, nullable=False),
    Column("name_codes", LargeBinary, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("output_codes", LargeBinary, nullable=False),
    Column("contexts", Text, nullable=False),
    Column("context_codes", LargeBinary, nullable=False),
    Column("labels", Text, nullable=False),
    Column("label_codes", LargeBinary, nullable=False),
    Column("labels_to", BigInteger, nullable=False),
    # the rows' packed class scores end to end, and each row's byte length (int32, -1:
    # none); NULL in a block built before 0016 (readers take its rows then)
    Column("scores", LargeBinary, nullable=True),
    Column("score_lengths", LargeBinary, nullable=True),
)

block_watermarks = Table(
    "block_watermarks",
    metadata,
    Column("endpoint", String(200), primary_key=True),
    Column("compacted_to", BigInteger, nullable=False),
)

# API tokens: only the SHA-256 of each secret is kept; a name is never reused.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("endpoints", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_by", String(200), nullable=True),
)

# Every read of a decision's raw inputs: who, when, which decision, through what.
input_reads = Table(
    "input_reads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", BigInteger, nullable=False),
    Column("principal", String(200), nullable=False),
    Column("decision_id", String(64), nullable=False),
    Column("route", String(200), nullable=False),
    Index("ix_input_reads_decision", "decision_id"),
    Index("ix_input_reads_ts", "ts"),
)

# --- evidence (migration 0008) --------------------------------------------------
# One Merkle log (RFC 9162) over ledger events (one entry each) and group commits
# of decisions, feedback and explanations (one entry per batch). Append-only:
# triggers refuse UPDATE and DELETE; `chronoml audit verify` recomputes it all.
evidence_log = Table(
    "evidence_log",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # ledger_event | decision | feedback | explanation
    Column("ref", BigInteger, nullable=True),  # the ledger event's seq
    Column("size", Integer, nullable=False),  # items in the batch (1 for an event)
    Column("root", LargeBinary, nullable=True),  # the batch's Merkle root
    Column("committed_at", BigInteger, nullable=False),
    Column("leaf", LargeBinary, nullable=False),  # the entry's leaf hash in the log
)
Index("ix_evidence_log_kind", evidence_log.c.kind, evidence_log.c.ref)

# The log's complete subtrees, (level, index) -> hash: proofs read O(log n) rows.
evidence_nodes = Table(
    "evidence_nodes",
    metadata,
    Column("level", Integer, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("level", "idx"),
)

# One row: the log's origin, size and right edge (its peaks, 32 bytes each).
# Writers lock it to append in order; a trigger refuses to shrink it.
evidence_head = Table(
    "evidence_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("origin", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("peaks", LargeBinary, nullable=False),
)

# Each batched item: where it sits (log entry, position), its leaf hash, and for a
# decision the salted commitment to its inputs with the salt (erased with them).
evidence_items = Table(
    "evidence_items",
    metadata,
    Column("kind", String(16), nullable=False),
    Column("ref", String(64), nullable=False),
    Column("log_index", BigInteger, nullable=False),
    Column("position", Integer, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("salt", LargeBinary, nullable=True),
    Column("commitment", LargeBinary, nullable=True),
    PrimaryKeyConstraint("kind", "ref"),
)
Index("ix_evidence_items_log", evidence_items.c.log_index, evidence_items.c.position)

# Signed checkpoints the store wrote (C2SP signed notes), as published.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # 1, 2, 3...: no gaps
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("note", Text, nullable=False),
)
# RFC 3161 timestamps of checkpoints: the authority's DER TimeStampResp over the note.
checkpoint_timestamps = Table(
    "checkpoint_timestamps",
    metadata,
    Column("checkpoint_id", Integer, primary_key=True, autoincrement=False),
    Column("authority", Text, nullable=False),  # its URL as configured (references kept)
    Column("response", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
# The class order of a classifier's logged scores, once per model version.
model_classes = Table(
    "model_classes",
    metadata,
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("classes", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("model_name", "model_version"),
)

# Context sent after the decision (with feedback). Append-only: a later row's keys
# win over earlier ones and over the context sent with the prediction.
decision_context = Table(
    "decision_context",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", DecisionId(), nullable=False),
    Column("context", Text, nullable=False),
    Column("recorded_at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
)
Index("ix_decision_context_decision", decision_context.c.decision_id, decision_context.c.id)

# The input policy of each endpoint (migration 0014): which features and context
# attributes are kept, hashed or dropped, and whether the unit key is hashed. Each
# change is also a ledger event (``event_seq``), so who set it is on the record.
privacy_policies = Table(
    "privacy_policies",
    metadata,
    Column("endpoint", String(200), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
)

# the archive's tables are defined beside the archive, on this metadata
from chronoml.store.archive_schema import archive_cleared as archive_cleared  # noqa: E402
from chronoml.store.archive_schema import archive_files as archive_files  # noqa: E402
from chronoml.store.archive_schema import archive_marks as archive_marks  # noqa: E402
from chronoml.store.archive_schema import archive_replacements as archive_replacements  # noqa: E402
from chronoml.store.archive_schema import archive_state as archive_state  # noqa: E402
from chronoml.store.archive_schema import archive_units as archive_units  # noqa: E402
from chronoml.store.ingest_schema import ingest_blocks as ingest_blocks  # noqa: E402
