//! The server's background work, on the job queue (`crate::jobs`): the kinds of job it runs
//! (email, webhook deliveries, scheduled connection checks) and the scheduler that enqueues
//! the periodic ones. Every `connvault serve` runs them; on one PostgreSQL each job runs on one
//! server at a time, and the scheduler's work is claimed row by row, so several servers never
//! check one connection twice in a period.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;

use crate::db::{format_time, now, Db};
use crate::error::Result;
use crate::events::DELIVERY_JOB;
use crate::jobs::{self, Batch, BatchFuture, JobError, JobFuture, Kind, Run, Workers};
use crate::mail::{MAIL_BACKOFF, MAIL_JOB};
use crate::services::Services;

/// The job that writes the finished minutes of usage to the audit trail
/// (`broker::audit_usage`); one waits or runs at a time over all servers.
pub const USAGE_JOB: &str = "usage.audit";
/// How often each server adds the usage it counted in memory to the database.
pub const USAGE_EVERY: Duration = Duration::from_secs(1);

/// The job that checks one connection (payload `{"connection_id": N}`).
pub const HEALTH_JOB: &str = "health.check";
/// How often the scheduler looks for due checks and old jobs.
pub const TICK: Duration = Duration::from_secs(15);
/// Finished jobs are kept this long (for the jobs page), then deleted.
pub const KEEP_DONE: Duration = Duration::from_secs(7 * 24 * 3600);

fn id_of(payload: &Value, field: &str) -> std::result::Result<i64, JobError> {
    payload.get(field).and_then(Value::as_i64).ok_or_else(|| JobError::Fatal(format!("the job's payload has no {field}")))
}

fn send_mail<'a>(s: &'a Services, payload: &'a Value) -> JobFuture<'a> {
    Box::pin(async move {
        let id = id_of(payload, "outbox_id")?;
        s.mailer.deliver(&s.db, &s.vault, id).await.map_err(|e| JobError::Retry(e.public_message()))
    })
}

fn deliver_webhooks<'a>(s: &'a Services, batch: &'a mut Batch) -> BatchFuture<'a> {
    Box::pin(async move {
        let handles = crate::webhooks::Handles { db: &s.db, vault: &s.vault, outbound: &s.outbound, mailer: &s.mailer, public_url: &s.config.public_url };
        crate::webhooks::deliver(handles, batch).await
    })
}

fn check_connection<'a>(s: &'a Services, payload: &'a Value) -> JobFuture<'a> {
    Box::pin(async move {
        let id = id_of(payload, "connection_id")?;
        crate::checks::scheduled(s.signing(), id).await.map(|_| ()).map_err(|e| JobError::Fatal(e.public_message()))
    })
}

fn renew_certificate<'a>(s: &'a Services, payload: &'a Value) -> JobFuture<'a> {
    Box::pin(async move {
        let id = id_of(payload, "certificate_id")?;
        match crate::renewal::renew(s.signing(), id).await {
            Ok(_) => Ok(()),
            Err(e) if crate::renewal::transient(&e) => Err(JobError::Retry(e.public_message())),
            Err(e) => Err(JobError::Fatal(e.public_message())),
        }
    })
}

fn audit_usage<'a>(s: &'a Services, _payload: &'a Value) -> JobFuture<'a> {
    Box::pin(async move { crate::broker::audit_usage(&s.db, false).await.map(|_| ()).map_err(|e| JobError::Retry(e.public_message())) })
}

fn scan_expiry<'a>(s: &'a Services, _payload: &'a Value) -> JobFuture<'a> {
    Box::pin(
        async move { crate::expiry::scan(&s.db, &s.vault, &s.mailer, &s.config.public_url).await.map(|_| ()).map_err(|e| JobError::Retry(e.public_message())) },
    )
}

/// How long the delivery loop, woken with nothing queued, gathers the events committed meanwhile
/// before it claims them: 20 ms more before an event is sent, in exchange for a batch (one
/// claim, one commit) per 20 ms of events rather than per enqueuing commit.
const DELIVERY_GATHER: Duration = Duration::from_millis(20);

/// Every kind of job the server runs.
pub static KINDS: [Kind<Services>; 6] = [
    Kind { name: MAIL_JOB, concurrency: 2, backoff: &MAIL_BACKOFF, run: Run::One(send_mail) },
    // Deliveries are sent in batches of up to 64 (every delivery's POST at once), logged in one
    // commit per batch; two batches at a time, so one slow receiver does not hold up the rest.
    Kind { name: DELIVERY_JOB, concurrency: 128, backoff: &crate::webhooks::BACKOFF, run: Run::Many { max: 64, gather: DELIVERY_GATHER, run: deliver_webhooks } },
    // A check that could not run waits for the next period rather than being retried.
    Kind { name: HEALTH_JOB, concurrency: 4, backoff: &[], run: Run::One(check_connection) },
    Kind { name: crate::expiry::SCAN_JOB, concurrency: 1, backoff: &[Duration::from_secs(60)], run: Run::One(scan_expiry) },
    // A renewal held back by the mail limits tries again within the hour, then for a day.
    Kind {
        name: crate::expiry::RENEW_JOB,
        concurrency: 1,
        backoff: &[Duration::from_secs(900), Duration::from_secs(3600), Duration::from_secs(4 * 3600), Duration::from_secs(12 * 3600)],
        run: Run::One(renew_certificate),
    },
    Kind { name: USAGE_JOB, concurrency: 1, backoff: &[Duration::from_secs(30)], run: Run::One(audit_usage) },
];

/// How often each server enqueues the expiry scan (one at a time over all servers).
pub const EXPIRY_EVERY: Duration = Duration::from_secs(600);

/// The running workers and scheduler of one server.
pub struct Running {
    workers: Workers,
    scheduler: tokio::task::JoinHandle<()>,
    usage: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the scheduler, then the workers (runs in progress are recorded first), then
    /// adds the usage counted since the last second to the database.
    pub async fn stop(self, s: &Services) {
        self.scheduler.abort();
        self.usage.abort();
        let _ = self.scheduler.await;
        let _ = self.usage.await;
        self.workers.stop().await;
        if let Err(e) = s.broker.persist_usage(&s.db).await {
            tracing::warn!(error = %e.public_message(), "the usage of the last second could not be written");
        }
    }
}

/// Starts the workers of [`KINDS`] and the scheduler.
pub async fn start(s: &Services) -> Result<Running> {
    let workers = jobs::start(s.db.clone(), Arc::new(s.clone()), &KINDS, s.config.jobs_running_limit()).await?;
    // Usage counted in memory goes to the database every second: a crash loses at most that.
    let counting = s.clone();
    let usage = tokio::spawn(async move {
        let mut tick = tokio::time::interval(USAGE_EVERY);
        loop {
            tick.tick().await;
            if counting.db.pool().is_closed() {
                break;
            }
            let _ = counting.broker.persist_usage(&counting.db).await;
        }
    });
    let services = s.clone();
    let scheduler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut expiry_scanned: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            if services.db.pool().is_closed() {
                break;
            }
            if expiry_scanned.is_none_or(|at| at.elapsed() >= EXPIRY_EVERY) {
                expiry_scanned = Some(std::time::Instant::now());
                if let Err(e) = enqueue_once(&services.db, crate::expiry::SCAN_JOB).await {
                    tracing::warn!(error = %e, "enqueuing the expiry scan failed");
                }
            }
            if let Err(e) = enqueue_usage_audit(&services.db).await {
                tracing::warn!(error = %e, "enqueuing the usage audit failed");
            }
            if let Err(e) = schedule(&services.db).await {
                tracing::warn!(error = %e, "scheduling background work failed; trying again next tick");
            }
        }
    });
    Ok(Running { workers, scheduler, usage })
}

/// Enqueues the usage audit while there are counts to audit (an idle server writes nothing).
async fn enqueue_usage_audit(db: &Db) -> Result<bool> {
    let pending: Option<i64> = sqlx::query_scalar("SELECT minute FROM usage_counts LIMIT 1").fetch_optional(db.pool()).await?;
    if pending.is_none() {
        return Ok(false);
    }
    enqueue_once(db, USAGE_JOB).await
}

/// Enqueues a job of `kind` (no payload, due now) unless one is already waiting or running.
async fn enqueue_once(db: &Db, kind: &'static str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let queued = jobs::enqueue_at(&mut tx, kind, &json!({}), &now(), Some(kind)).await?.is_some();
    tx.commit().await?;
    if queued {
        jobs::wake(kind);
    }
    Ok(queued)
}

/// One scheduler tick: due connection checks enqueued, old finished jobs deleted.
pub async fn schedule(db: &Db) -> Result<usize> {
    let n = schedule_checks(db).await?;
    jobs::prune(db, KEEP_DONE).await?;
    Ok(n)
}

/// Where in its environment's period a connection is checked: spread by id, so that a
/// thousand connections are not all checked in the same minute.
fn first_check(id: i64, period: chrono::Duration) -> String {
    let secs = period.num_seconds().max(1);
    format_time(chrono::Utc::now() + chrono::Duration::seconds((id.wrapping_mul(2_654_435_761) & 0x7fff_ffff) % secs))
}

/// Gives every connection without one a check time in its period, then enqueues the checks
/// that are due (at most 500 a tick). Each due row is taken by one server only: its next time
/// is moved on only where it still holds the time this server read.
pub async fn schedule_checks(db: &Db) -> Result<usize> {
    let new = sqlx::query(
        "SELECT c.id, e.check_every_hours FROM connections c JOIN environments e ON e.id = c.environment_id \
         WHERE e.check_every_hours > 0 AND NOT EXISTS (SELECT 1 FROM health_schedule h WHERE h.connection_id = c.id) LIMIT 1000",
    )
    .fetch_all(db.pool())
    .await?;
    for r in &new {
        let (id, hours): (i64, i64) = (r.try_get("id")?, r.try_get("check_every_hours")?);
        sqlx::query("INSERT INTO health_schedule (connection_id, next_check_at) VALUES ($1, $2) ON CONFLICT (connection_id) DO NOTHING")
            .bind(id)
            .bind(first_check(id, chrono::Duration::hours(hours)))
            .execute(db.pool())
            .await?;
    }
    let t = now();
    let due = sqlx::query(
        "SELECT h.connection_id, h.next_check_at, e.check_every_hours FROM health_schedule h JOIN connections c ON c.id = h.connection_id \
         JOIN environments e ON e.id = c.environment_id WHERE h.next_check_at <= $1 AND e.check_every_hours > 0 ORDER BY h.next_check_at LIMIT 500",
    )
    .bind(&t)
    .fetch_all(db.pool())
    .await?;
    let mut queued = 0;
    for r in &due {
        let (id, at, hours): (i64, String, i64) = (r.try_get("connection_id")?, r.try_get("next_check_at")?, r.try_get("check_every_hours")?);
        let next = format_time(chrono::Utc::now() + chrono::Duration::hours(hours));
        let mut tx = db.begin().await?;
        let taken = sqlx::query("UPDATE health_schedule SET next_check_at = $1 WHERE connection_id = $2 AND next_check_at = $3")
            .bind(&next)
            .bind(id)
            .bind(&at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken == 1 && jobs::enqueue_at(&mut tx, HEALTH_JOB, &json!({ "connection_id": id }), &t, Some(&format!("health:{id}"))).await?.is_some() {
            queued += 1;
        }
        tx.commit().await?;
    }
    if queued > 0 {
        jobs::wake(HEALTH_JOB);
    }
    Ok(queued)
}
