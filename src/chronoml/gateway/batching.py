"""Micro-batching: concurrent requests for one variant share one ``predict``.

Each served model version has a :class:`Batcher` with a thread of its own.
Requests queue their rows; the batcher takes what is queued (up to
``max_batch_rows``, waiting at most ``max_wait_s`` for more), runs the
model once on the stacked rows, splits the outputs back in order, and hands
all the batch's decision rows to the log in one piece. It does not wait for
that commit before starting the next batch, so predicting and committing
overlap; each request is answered once its own rows are committed.

A model that fails or hangs only affects its own batcher: its requests get
an error or time out, and a full queue is refused at once, while other
endpoints keep their own threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import orjson
import pandas as pd

from chronoml.domain import codec, privacy
from chronoml.errors import StoreError
from chronoml.gateway.log import DecisionLog
from chronoml.ids import new_block_ids, new_ids
from chronoml.registry.models import LoadedModel, labels_of
from chronoml.registry.scores import split_scores
from chronoml.store import decisions as D
from chronoml.store import ingest

log = logging.getLogger("chronoml.batching")


# a batch's share of rows: its jobs, input layout, packed and text inputs, outputs,
# their numbers, and the packed class scores (None when the model gives none)
_Part = tuple[
    Sequence["Job"], str, list[bytes], list[str | None], list[Any], list[float | None],
    list[bytes] | None, "privacy.StoragePlan | None",
]  # fmt: skip
# the endpoint's privacy policy (with the seq of the event that set it) and the secret
PolicyOf = Callable[[], "tuple[int, privacy.Policy, bytes] | None"]


class ModelFailed(RuntimeError):
    """The model raised, or returned something that is not one output per row."""


class Overloaded(RuntimeError):
    """The variant's queue is full: refused without queueing."""


@dataclass
class Job:
    """One request's rows waiting for a batch."""

    n: int
    mat: np.ndarray[Any, Any] | None  # float64 rows in schema order (the fast path)
    frame: pd.DataFrame | None  # or a conformed frame
    unit: str | None
    ts: int  # when it was routed, microseconds
    t0: float  # perf_counter at arrival, for latency
    event_seq: int
    shadow: bool
    fut: asyncio.Future[Result] = field(repr=False)
    # ?explain=true: given the job's decision ids, explanation rows to commit with them
    explain: Callable[[list[str]], Sequence[tuple[Any, ...]]] | None = None
    # the request's "context" (not a model input): one JSON object text per row
    context: Sequence[str | None] | None = None


@dataclass(frozen=True)
class Result:
    ids: list[str]
    outputs: list[Any]
    batch_rows: int


@dataclass(frozen=True)
class BatchSettings:
    max_batch_rows: int = 256
    max_wait_s: float = 0.0
    max_queue_rows: int = 20_000
    # a request of at least this many rows is logged as one ingest block (None: never)
    block_rows: int | None = None


class Batcher:
    """Coalesces one variant's concurrent requests into single ``predict`` calls."""

    def __init__(
        self,
        endpoint: str,
        variant: str,
        model: LoadedModel,
        log_: DecisionLog,
        ensure_layout: Callable[[str, codec.Schema], None],
        settings: BatchSettings,
        on_batch: Callable[[str, str, int, int], None] | None = None,
        ensure_classes: Callable[[str, str, Sequence[Any]], None] | None = None,
        policy_of: PolicyOf | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.variant = variant
        self.model = model
        self.log = log_
        self.ensure_layout = ensure_layout
        self.settings = settings
        self.on_batch = on_batch
        self.ensure_classes = ensure_classes
        self._classes = np.asarray(model.raw.classes_) if model.classes is not None else np.empty(0)
        self._classes_known = False
        self.names = [c for c, _ in model.schema] if model.schema is not None else None
        # built once: a frame's column index of plain objects (not Arrow strings),
        # which the model's feature-name check reads cheaply
        self.columns = pd.Index(self.names, dtype=object) if self.names is not None else None
        self.layout = codec.layout_id(model.schema) if model.schema is not None else None
        self._layouts: set[str] = set()
        self.policy_of = policy_of
        self._plans: dict[tuple[int, str], privacy.StoragePlan] = {}
        self._queue: collections.deque[Job] = collections.deque()
        # rows queued and rows taken, each counted by one thread only
        self._put_rows = 0
        self._taken_rows = 0
        # the model thread sleeps on this when the queue is empty; a request
        # wakes it only then, so a busy thread takes no signal per request
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._idle = False
        self._wake_soon = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- the request side (the event loop's thread) ---------------------------

    def submit(self, job: Job) -> asyncio.Future[Result]:
        queued = self._put_rows - self._taken_rows
        if queued + job.n > self.settings.max_queue_rows and self._queue:
            raise Overloaded(
                f"{self.endpoint}/{self.variant} has {queued} rows waiting "
                f"(at most {self.settings.max_queue_rows})"
            )
        self._queue.append(job)
        self._put_rows += job.n
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._run, name=f"chronoml-model-{self.endpoint}", daemon=True
            )
            self._thread.start()
        elif self._idle and not self._wake_soon:
            # Woken after the requests already readable in this turn of the event
            # loop have queued too, not at the first one: the batch takes them all,
            # and the model's per-call overhead is paid once for them.
            self._wake_soon = True
            self._loop.call_soon(self._wake_up)  # type: ignore[union-attr]
        return job.fut

    def _wake_up(self) -> None:
        self._wake_soon = False
        if self._idle:
            self._idle = False
            self._wake.put(True)

    @property
    def queued_rows(self) -> int:
        return self._put_rows - self._taken_rows

    # --- the batch side (the model's thread) -------------------------------------

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            if not self._queue:
                self._idle = True
                # checked again after saying so: a job queued in between is not missed
                # (its request may also have sent a wake-up, which a later wait eats)
                if not self._queue and not self._wake.get():
                    return  # close()
                self._idle = False
                continue
            if self.settings.max_wait_s > 0 and self.queued_rows < self.settings.max_batch_rows:
                time.sleep(self.settings.max_wait_s)
            jobs = self._take()
            if not jobs:
                continue
            try:
                self._compute(jobs, loop)
            except Exception as exc:  # a bug of ours: fail the batch, keep serving
                log.exception("batch on %s/%s failed", self.endpoint, self.variant)
                _call_soon(loop, _fail, jobs, exc)

    def _take(self) -> list[Job]:
        jobs: list[Job] = []
        rows = 0
        while self._queue and (not jobs or rows + self._queue[0].n <= self.settings.max_batch_rows):
            j = self._queue.popleft()
            self._taken_rows += j.n
            if j.fut.done():  # its caller gave up while it waited
                continue
            jobs.append(j)
            rows += j.n
        return jobs

    def _compute(self, jobs: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        """Predict, encode, and queue the decisions for the log; the jobs are settled on
        ``loop`` once their rows are committed."""
        parts: list[Any]
        try:
            parts = [self._predict(jobs)]
        except ModelFailed as exc:
            if len(jobs) == 1:
                parts = [exc]
            else:
                # one request's rows may be what the model chokes on: retry each
                # alone so the others still get their answers
                parts = []
                for j in jobs:
                    try:
                        parts.append(self._predict([j]))
                    except ModelFailed as one:
                        parts.append(one)
        rows: list[D.DecisionTuple] = []
        blocks: list[ingest.Block] = []
        explanations: list[tuple[Any, ...]] = []
        results: list[Result | BaseException] = []
        batch_rows = sum(j.n for j in jobs)
        done = time.perf_counter()
        for part in parts:
            if isinstance(part, BaseException):
                results.append(part)
                continue
            part_jobs, layout, packed, texts, outputs, nums, scores, plan = part
            shown = _output_texts(outputs)
            m = self.model.ref
            as_block = self._as_blocks(part_jobs, packed, scores)
            fresh = new_ids(
                sum(1 if b else j.n + 1 for j, b in zip(part_jobs, as_block, strict=True))
            )
            off = 0  # into the part's rows
            at = 0  # into its fresh ids: each request's id, then its decisions'
            for j, in_block in zip(part_jobs, as_block, strict=True):
                request_id = fresh[at]
                end = off + j.n
                if in_block:
                    at += 1
                    block_id, ids = new_block_ids(j.n)
                    if j.explain is not None:
                        explanations.extend(j.explain(ids))
                    blocks.append(
                        ingest.Block(
                            block_id, ids, j.ts, self.endpoint, self.variant, m.name, m.version,
                            j.event_seq, j.shadow, j.unit if plan is None else plan.unit(j.unit),
                            request_id, layout, (done - j.t0) * 1000, packed[off:end],
                            texts[off:end], shown[off:end], nums[off:end],
                            scores[off:end] if scores is not None else None,
                            None if j.context is None
                            else list(j.context if plan is None else plan.context(j.context)),
                        )
                    )  # fmt: skip
                    results.append(Result(ids, outputs[off:end], batch_rows))
                    off = end
                    continue
                ids = fresh[at + 1 : at + 1 + j.n]
                at += 1 + j.n
                if j.explain is not None:
                    explanations.extend(j.explain(ids))
                # the tuples in D.COLUMNS order, built by zip rather than one by one
                rows.extend(
                    zip(
                        ids,
                        repeat(j.ts),
                        repeat(self.endpoint),
                        repeat(self.variant),
                        repeat(m.name),
                        repeat(m.version),
                        repeat(j.event_seq),
                        repeat(j.shadow),
                        repeat(j.unit if plan is None else plan.unit(j.unit)),
                        repeat(request_id),
                        repeat(layout),
                        packed[off:end],
                        texts[off:end],
                        shown[off:end],
                        nums[off:end],
                        repeat((done - j.t0) * 1000),
                        scores[off:end] if scores is not None else repeat(None, j.n),
                        repeat(None, j.n)
                        if j.context is None
                        else (j.context if plan is None else plan.context(j.context)),
                    )
                )
                results.append(Result(ids, outputs[off:end], batch_rows))
                off = end
        if self.on_batch is not None:
            self.on_batch(self.endpoint, self.variant, len(jobs), batch_rows)
        if not rows and not blocks:
            _call_soon(loop, _settle, jobs, results, None)
            return

        def committed(err: BaseException | None) -> None:
            if err is not None:
                err = StoreError(str(err).splitlines()[0] if str(err) else repr(err))
            _call_soon(loop, _settle, jobs, results, err)

        self.log.submit(rows, explanations, committed, blocks)

    def _as_blocks(
        self, jobs: Sequence[Job], packed: list[bytes], scores: list[bytes] | None
    ) -> list[bool]:
        """Which requests are logged as one ingest block each (enough rows, one width)."""
        least = self.settings.block_rows
        out: list[bool] = []
        off = 0
        for j in jobs:
            end = off + j.n
            out.append(
                least is not None
                and j.n >= least
                and ingest.fits(packed[off:end], scores[off:end] if scores is not None else None)
            )
            off = end
        return out

    def _predict(self, jobs: Sequence[Job]) -> _Part:
        schema = self.model.schema
        n = sum(j.n for j in jobs)
        predict: Callable[[Any], Any] = self.model.predict
        proba = self.model.predict_proba
        if schema is not None and all(j.mat is not None for j in jobs):
            mats = [j.mat for j in jobs if j.mat is not None]
            mat = mats[0] if len(mats) == 1 else np.concatenate(mats)
            if self.model.predict_matrix is not None:
                x: Any = mat
                predict = self.model.predict_matrix
                proba = self.model.proba_matrix
            else:
                x = pd.DataFrame(mat, columns=self.columns, copy=False)
            plan = self._plan(schema)
            if plan is None:
                packed = codec.pack_rows(mat)
                texts: list[str | None] = [None] * n
            else:
                packed, texts = plan.encode_matrix(mat)
        else:
            frames = [j.frame if j.frame is not None else self._frame(j) for j in jobs]
            x = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            schema = schema or codec.schema_from_frame(x)
            plan = self._plan(schema)
            packed, texts = codec.encode(x, schema) if plan is None else plan.encode_frame(x)
        if plan is None:
            layout = self.layout or codec.layout_id(schema)
            stored = schema
        else:  # what the policy keeps has its own layout
            layout, stored = plan.layout, plan.stored_schema
        if layout not in self._layouts:
            try:
                self.ensure_layout(layout, stored)
            except Exception as exc:
                raise StoreError(str(exc).splitlines()[0]) from exc
            self._layouts.add(layout)
        scores: list[bytes] | None = None
        # on the matrix path the loader paired predict and predict_proba of one estimator;
        # a model given another predict (a wrapper, a test double) keeps both calls
        one_call = (
            self.model.labels_from_scores
            and proba is not None
            and proba is self.model.proba_matrix
            and predict is self.model.predict_matrix
        )
        try:
            if one_call:
                assert proba is not None
                p = np.asarray(proba(x), dtype=np.float64)
                pred = labels_of(p, self._classes, lambda rows: predict(_rows(x, rows)))
                scores = self._pack(p, n)
            else:
                pred = predict(x)
                if proba is None:  # a plain pyfunc may answer with its class scores
                    pred, scores = self._output_scores(pred, n)
            outputs, nums = codec.encode_outputs(pred, n)
        except Exception as exc:
            raise ModelFailed(str(exc) or type(exc).__name__) from exc
        if proba is not None and not one_call:
            scores = self._scores(proba, x, n)
        return jobs, layout, packed, texts, outputs, nums, scores, plan

    def _plan(self, schema: codec.Schema) -> privacy.StoragePlan | None:
        """The endpoint's privacy policy compiled for ``schema``; None when there is none.

        One call per batch: the policy lookup is a dict read, the plan is built once.
        """
        got = self.policy_of() if self.policy_of is not None else None
        if got is None:
            return None
        seq, policy, secret = got
        key = (seq, codec.layout_id(schema) if schema is not self.model.schema else "")
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = privacy.StoragePlan(policy, schema, secret)
        return plan

    def _output_scores(self, pred: Any, n: int) -> tuple[Any, list[bytes] | None]:
        """The answer and the packed scores of a pyfunc that returns class probabilities."""
        got = split_scores(pred, n)
        if got is None:
            return pred, None
        if self.model.classes is None:
            self.model.classes = got.classes  # this version's class order, from now on
        elif got.classes != self.model.classes:
            return got.answer, None  # a class order unlike the first batch's: no scores
        return got.answer, self._pack(got.scores, n)

    def _scores(self, proba: Callable[[Any], Any], x: Any, n: int) -> list[bytes] | None:
        """Every row's class scores packed as float64, from one ``predict_proba`` call.

        A model whose scores fail still answers: its decisions are logged without them.
        """
        try:
            p = np.asarray(proba(x), dtype=np.float64)
        except Exception as exc:
            log.warning("scores of %s/%s failed: %s", self.endpoint, self.variant, exc)
            return None
        return self._pack(p, n)

    def _pack(self, p: np.ndarray[Any, Any], n: int) -> list[bytes] | None:
        """The scores packed per row, once the version's class order is stored."""
        classes = self.model.classes
        assert classes is not None
        if p.shape != (n, len(classes)):
            return None
        if not self._classes_known and self.ensure_classes is not None:
            m = self.model.ref
            try:
                self.ensure_classes(m.name, m.version, classes)
            except Exception as exc:
                raise StoreError(str(exc).splitlines()[0]) from exc
        self._classes_known = True
        return codec.pack_rows(p)

    def _frame(self, j: Job) -> pd.DataFrame:
        return pd.DataFrame(j.mat, columns=self.names)

    def close(self) -> None:
        """Stop the model's thread once it is idle (queued jobs are not answered)."""
        self._queue.clear()
        self._wake.put(False)


def _rows(x: Any, rows: Any) -> Any:
    """Some rows of a batch's input, a matrix or a frame."""
    return x.iloc[rows] if isinstance(x, pd.DataFrame) else x[rows]


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(fn, *args)


def _fail(jobs: list[Job], exc: BaseException) -> None:
    for j in jobs:
        if not j.fut.done():
            j.fut.set_exception(exc)


_SCALARS = (int, float, bool)


def _output_texts(outputs: list[Any]) -> list[str]:
    """Each output as its JSON text, for the log's ``output`` column."""
    if all(type(v) in _SCALARS for v in outputs):
        # numbers hold no comma: one dump of the list, cut at the commas
        return orjson.dumps(outputs).decode()[1:-1].split(",")
    return [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode() for v in outputs]


def _settle(
    jobs: list[Job], results: list[Result | BaseException], err: BaseException | None
) -> None:
    for j, res in zip(jobs, results, strict=True):
        if j.fut.done():  # the caller gave up (timeout, disconnect)
            continue
        if err is not None and isinstance(res, Result):
            j.fut.set_exception(err)
        elif isinstance(res, BaseException):
            j.fut.set_exception(res)
        else:
            j.fut.set_result(res)
