import logging
import zlib
from contextlib import contextmanager

from dateutil.relativedelta import relativedelta
from psycopg2.errors import DeadlockDetected, LockNotAvailable, SerializationFailure

from odoo import api, fields, models
from odoo.fields import Domain
from odoo.tools import SQL, split_every

_logger = logging.getLogger(__name__)

# Records handled per chunk by the batch methods: memory is bounded by one
# chunk, and each chunk costs a number of queries that only the ORM's batching
# (100 rows per query) makes grow.
CHUNK_SIZE = 1000
# Records another transaction holds are tried again this much later.
LOCKED_RETRY_DELAY = relativedelta(minutes=1)
# A batch in conflict with another worker's transaction is done again on a
# fresh snapshot this many times (as Odoo retries a request), then left to a
# run a minute later.
BATCH_CONFLICT_TRIES = 5
CONCURRENCY_ERRORS = (SerializationFailure, DeadlockDetected, LockNotAvailable)


class SaleSubscriptionJob(models.AbstractModel):
    """What the scheduled actions of subscriptions share, once: "today" of a
    company, and the one lock-batch-retry-progress loop every job runs
    (:meth:`_subscription_run_job`), with its locks, its retries a minute
    later, its chunks and its cache release.

    Inherited by ``sale.order`` (closing, resuming, invoicing, unpaid
    subscriptions) and ``account.move`` (the invoice emails)."""

    _name = "sale.subscription.job"
    _description = "Subscription Scheduled Job"

    # ------------------------------------------------------------------
    # Today
    # ------------------------------------------------------------------

    @api.model
    def _get_company_tz(self, company):
        """The time zone of ``company``'s calendar: its own (its partner's),
        else the user's (a scheduled action's user may have none), else
        UTC."""
        return company.partner_id.tz or self.env.user.tz or "UTC"

    @api.model
    def _get_company_today(self, company):
        """Today in the calendar of ``company``: the one "today" of every
        subscription date (start, end, periods, pause, due dates)."""
        return fields.Date.context_today(self.with_context(tz=self._get_company_tz(company)))

    @api.model
    def _subscription_date_domain(self, field_name, operator):
        """The records whose date ``field_name`` compares with ``operator``
        to today, today being taken in each record's company (one term per
        company)."""
        companies = self.env["res.company"].sudo().search([])
        return Domain.OR(
            Domain("company_id", "=", company.id)
            & Domain(field_name, operator, self._get_company_today(company))
            for company in companies
        )

    # ------------------------------------------------------------------
    # The loop of every job
    # ------------------------------------------------------------------

    @api.model
    def _subscription_run_job(self, domain, process, batch_size, cron_xmlid):
        """Run the scheduled action ``cron_xmlid`` on the records of
        ``domain``, by batches: the one loop of every subscription job.

        Each batch locks up to ``batch_size`` records no other transaction
        holds (:meth:`_subscription_lock`), hands them to ``process`` (which
        returns how many it did and the records to leave for the next run:
        not due after all, failed), is flushed, and is committed with the
        cron progress; its records then leave the cache. A batch in conflict
        with another transaction is rolled back and done again
        (:data:`BATCH_CONFLICT_TRIES` times, then a minute later); records
        another transaction holds are looked at a minute later. Returns how
        many records were done."""
        skipped = []
        conflicts = done_total = 0
        while True:
            todo = domain & Domain("id", "not in", skipped)
            try:
                records = self._subscription_lock(todo, batch_size, retry_cron=cron_xmlid)
                if not records:
                    break
                done, skip = process(records)
                # A conflict with another transaction raises here, not at
                # the commit.
                self.env.flush_all()
            except CONCURRENCY_ERRORS as error:
                self.env.cr.rollback()
                self.env.invalidate_all()
                conflicts += 1
                _logger.info("%s: batch in conflict, done again: %s", cron_xmlid, error)
                if conflicts >= BATCH_CONFLICT_TRIES:
                    self._subscription_retry_later(cron_xmlid)
                    break
                continue
            skipped += skip.ids
            done_total += done
            self.env.invalidate_all()
            remaining = self.search_count(todo & Domain("id", "not in", skip.ids))
            time_left = self.env["ir.cron"]._commit_progress(done, remaining=remaining)
            if not remaining or not time_left:
                break
        return done_total

    @api.model
    def _subscription_lock(self, domain, batch_size, retry_cron=None):
        """Lock and return up to ``batch_size`` records matching ``domain``
        that no other transaction holds (FOR NO KEY UPDATE SKIP LOCKED): the
        records another transaction holds are skipped and the next ones taken
        instead.

        Another worker may commit changes to these records between our
        snapshot and our lock: PostgreSQL then refuses the lock
        (serialization failure) and the search is made again on a fresh
        snapshot. Call it with nothing pending in the transaction (at the
        start of a batch).

        :param retry_cron: xml id of the scheduled action to trigger again a
            minute later when records could not be locked (another
            transaction holds them), so that they wait a minute, not until
            the next run.
        """
        for _attempt in range(BATCH_CONFLICT_TRIES):
            try:
                due = self.search(domain, order="id")
                records = due._subscription_try_lock(batch_size)
            except SerializationFailure:
                self.env.cr.rollback()
                continue
            if retry_cron and len(records) < min(len(due), batch_size):
                self._subscription_retry_later(retry_cron)
            return records
        if retry_cron:
            self._subscription_retry_later(retry_cron)
        return self.browse()

    def _subscription_try_lock(self, limit):
        """Lock up to ``limit`` records of ``self`` (in their order) that no
        other transaction holds, as ``try_lock_for_update`` does, and return
        them. A row another worker changed since this transaction's snapshot
        makes PostgreSQL refuse the lock (serialization failure): raised to
        the caller, which starts again on a fresh snapshot, without an error
        in the log, since nothing went wrong."""
        if not self:
            return self
        self.env.flush_all()
        query = self._as_query(ordered=True)
        query.limit = limit
        self.env.cr.execute(
            SQL("%s FOR NO KEY UPDATE SKIP LOCKED", query.select()), log_exceptions=False
        )
        locked = {record_id for (record_id,) in self.env.cr.fetchall()}
        return self.browse(record_id for record_id in self._ids if record_id in locked)

    @api.model
    @contextmanager
    def _subscription_job_mutex(self, job):
        """Run the block in one process at a time on this database: yields
        True when this process holds the job (a session-level advisory lock
        named after ``job``, released at the end, or by PostgreSQL when the
        process dies), False when another process does.

        The work of a job whose batches write the same shared records (e.g.
        invoices posted for the same customers write their rank) is then
        never done by two processes at once, whether it is started by the
        scheduled action, *Run Manually* or a server action."""
        cr = self.env.cr
        key = zlib.crc32(f"subscription_close.{job}".encode()) - 2**31
        cr.execute(SQL("SELECT pg_try_advisory_lock(%s)", key))
        if not cr.fetchone()[0]:
            yield False
            return
        try:
            yield True
        except Exception:
            cr.rollback()
            raise
        finally:
            cr.execute(SQL("SELECT pg_advisory_unlock(%s)", key))

    @api.model
    def _subscription_retry_later(self, cron_xmlid):
        """Trigger the scheduled action ``cron_xmlid`` a minute later, unless
        it is already triggered within that minute."""
        cron = self.env.ref(cron_xmlid).sudo()
        now = fields.Datetime.now()
        at = now + LOCKED_RETRY_DELAY
        Trigger = self.env["ir.cron.trigger"].sudo()
        domain = [("cron_id", "=", cron.id), ("call_at", ">", now), ("call_at", "<=", at)]
        if not Trigger.search_count(domain, limit=1):
            cron._trigger(at)

    # ------------------------------------------------------------------
    # Chunks and memory
    # ------------------------------------------------------------------

    def _subscription_chunks(self):
        """Yield the records of ``self`` by chunks of :data:`CHUNK_SIZE`.
        Between two chunks the cache of the chunk is released, so that memory
        is bounded by one chunk, not the selection."""
        if len(self) <= CHUNK_SIZE:
            yield self
            return
        for chunk in split_every(CHUNK_SIZE, self.ids, self.browse):
            yield chunk
            chunk._subscription_release_cache()

    def _subscription_prefetch(self, field_names):
        """``self``, to read ``field_names`` across the selection. Up to one
        chunk, Odoo's usual prefetch reads them with the record's other
        fields in one query; beyond, only these fields are fetched, so that
        reading them does not bring every field of thousands of records into
        memory."""
        if len(self) <= CHUNK_SIZE:
            return self
        self.fetch(field_names)
        return self.with_context(prefetch_fields=False)

    def _subscription_release_cache(self):
        """Flush and drop the records of ``self`` and what they read (their
        lines, the chatter) from the cache once they are written, so that the
        next batch does not add to memory."""
        self.env.flush_all()
        self.env.invalidate_all()
