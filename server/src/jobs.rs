//! The durable job queue, in the style of crates.io's background jobs: [`enqueue`] inserts a
//! job in the caller's transaction (the change and the work it causes commit together, or
//! neither), workers run it at least once, a failed run is tried again after the kind's
//! back-off, and every job stays visible with its state, attempts and last error.
//!
//! On PostgreSQL a worker claims a job with `FOR UPDATE SKIP LOCKED` and holds its row lock
//! until the run is recorded: several servers on one database never run a job at the same time,
//! and a server that dies mid-run loses its connection and with it the lock, so another (or the
//! restarted one) takes the job at once. On SQLite the one process marks a job `running` in a
//! short transaction (a long one would block every writer) and, on start, puts the jobs a dead
//! process left running back in the queue.
//!
//! This module knows no job: [`Kind`]s (a name, a concurrency, a back-off and a handler over a
//! context `C`) are given to [`start`] by whoever assembles the server (`crate::workers`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{Notify, Semaphore};

use crate::db::{format_time, now, Backend, Db, Tx};
use crate::error::{Error, Result};

/// What a handler returns when a run did not do its work.
#[derive(Debug)]
pub enum JobError {
    /// Try again after the kind's next pause (a mail server that is down, a receiver that
    /// answers 500); after the last one the job is `failed`.
    Retry(String),
    /// Trying again cannot help (the row it names is gone): the job is `failed` at once.
    Fatal(String),
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        JobError::Retry(e.to_string())
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retry(format!("database: {e}"))
    }
}

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = std::result::Result<(), JobError>> + Send + 'a>>;

/// One kind of job.
pub struct Kind<C: 'static> {
    pub name: &'static str,
    /// How many of this kind one server runs at once.
    pub concurrency: usize,
    /// The pause before each further attempt: attempts = pauses + 1.
    pub backoff: &'static [Duration],
    /// The handler.
    pub run: Run<C>,
}

/// Wakes this process's workers of `kind` when a job of it was committed here (other servers
/// find it when they next look, within [`POLL`]).
static WAKE: LazyLock<Mutex<HashMap<String, Arc<Notify>>>> = LazyLock::new(Default::default);

fn waker(kind: &str) -> Arc<Notify> {
    WAKE.lock().unwrap_or_else(|e| e.into_inner()).entry(kind.to_string()).or_default().clone()
}

/// Tells this process's workers of `kind` to look now; call after the enqueuing transaction
/// committed (a worker that looks before the commit finds nothing and waits for the poll).
pub fn wake(kind: &str) {
    waker(kind).notify_one();
}

/// [`wake`] for callers inside the enqueuing transaction, which commits after they return: the
/// workers look a moment later (and again, should the commit take longer).
///
/// The later look is shared: one task per kind looks 50 ms after the latest call (at a
/// hundred enqueuing commits a second, a look for each would make as many claims that find
/// nothing), so every commit that took longer than 5 ms is still looked for within 50 ms.
pub fn wake_after_commit(kind: &'static str) {
    static LATER: LazyLock<Mutex<HashMap<&'static str, std::time::Instant>>> = LazyLock::new(Default::default);
    const SOON: Duration = Duration::from_millis(5);
    const LATE: Duration = Duration::from_millis(50);
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let now = std::time::Instant::now();
    // No earlier call, or one whose task cannot be alive (it ended with its runtime, a test's).
    let first = LATER.lock().unwrap_or_else(|e| e.into_inner()).insert(kind, now).is_none_or(|before| before + LATE + Duration::from_secs(1) < now);
    tokio::spawn(async move {
        tokio::time::sleep(SOON).await;
        wake(kind);
    });
    if !first {
        return;
    }
    tokio::spawn(async move {
        let mut until = std::time::Instant::now() + LATE;
        loop {
            tokio::time::sleep_until(until.into()).await;
            wake(kind);
            let mut later = LATER.lock().unwrap_or_else(|e| e.into_inner());
            let latest = later.get(kind).copied().unwrap_or(until);
            if latest + LATE <= until {
                later.remove(kind);
                return;
            }
            until = latest + LATE;
        }
    });
}

/// How often an idle worker looks for due jobs.
pub const POLL: Duration = Duration::from_millis(500);

/// Inserts a job of `kind` that runs as soon as a worker is free. Call [`wake`] after commit.
pub async fn enqueue(tx: &mut Tx<'_>, kind: &str, payload: &Value) -> Result<i64> {
    enqueue_at(tx, kind, payload, &now(), None).await.map(|id| id.expect("a job without a key is always inserted"))
}

/// Inserts a job of `kind` for each payload (due now) in one statement per chunk. Call [`wake`]
/// after commit.
pub async fn enqueue_many(tx: &mut Tx<'_>, kind: &str, payloads: &[Value]) -> Result<()> {
    const COLUMNS: [&str; 5] = ["kind", "payload", "run_at", "created_at", "updated_at"];
    let t = now();
    for chunk in payloads.chunks(crate::db::INSERT_BATCH) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(crate::db::multi_row_insert("jobs", &COLUMNS, chunk.len())));
        for payload in chunk {
            q = q.bind(kind.to_string()).bind(payload.to_string()).bind(t.clone()).bind(t.clone()).bind(t.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts a job of `kind` due at `run_at`. With a `dedupe_key`, nothing is inserted (`None`)
/// while a job with that key is queued or running.
pub async fn enqueue_at(tx: &mut Tx<'_>, kind: &str, payload: &Value, run_at: &str, dedupe_key: Option<&str>) -> Result<Option<i64>> {
    let t = now();
    let row = sqlx::query(
        "INSERT INTO jobs (kind, payload, run_at, dedupe_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (dedupe_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id",
    )
    .bind(kind)
    .bind(payload.to_string())
    .bind(run_at)
    .bind(dedupe_key)
    .bind(&t)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
}

/// A job as the jobs page and the API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub run_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn job_of(r: &sqlx::any::AnyRow) -> Result<Job> {
    let payload: String = r.try_get("payload")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        run_at: r.try_get("run_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const JOB_COLUMNS: &str = "id, kind, payload, state, attempts, run_at, last_error, created_at, updated_at";

/// One job.
pub async fn get(db: &Db, id: i64) -> Result<Job> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))).bind(id).fetch_optional(db.pool()).await?;
    job_of(&row.ok_or_else(|| Error::NotFound(format!("there is no job {id}")))?)
}

/// The newest jobs, optionally of one state, newest first.
pub async fn list(db: &Db, state: Option<&str>, limit: i64) -> Result<Vec<Job>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2")))
        .bind(state)
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(job_of).collect()
}

/// How many jobs are in each state (for `/health` and the jobs page).
pub async fn counts(db: &Db) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetch_all(db.pool()).await?;
    rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
}

/// Makes a queued or failed job due now (an operator's "run again"); its attempts start over
/// for a failed one.
pub async fn retry_now(db: &Db, id: i64) -> Result<()> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_at = $1, updated_at = $1, attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END \
         WHERE id = $2 AND state IN ('queued', 'failed')",
    )
    .bind(now())
    .bind(id)
    .execute(db.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict { code: "job_not_waiting", message: format!("job {id} is not waiting or failed (it is running, done or gone)") });
    }
    let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = $1").bind(id).fetch_one(db.pool()).await?;
    wake(&kind);
    Ok(())
}

/// Jobs that finished more than `keep` ago are deleted; returns how many.
pub async fn prune(db: &Db, keep: Duration) -> Result<u64> {
    let before = format_time(chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7)));
    Ok(sqlx::query("DELETE FROM jobs WHERE state = 'done' AND updated_at < $1").bind(before).execute(db.pool()).await?.rows_affected())
}

/// How a kind's handler takes its jobs.
pub enum Run<C: 'static> {
    /// One job a call; the queue records its outcome.
    One(for<'a> fn(&'a C, &'a Value) -> JobFuture<'a>),
    /// Up to `max` due jobs a call, for work whose results are small writes (webhook
    /// deliveries): the handler does every job of the [`Batch`], then writes its results and
    /// every job's outcome in one commit with [`Batch::finish`].
    ///
    /// Woken with the queue empty, the kind's loop waits `gather` before it claims, so the jobs
    /// committed meanwhile go in the same batch: each job waits up to that much longer, and a
    /// steady stream is taken in a fraction of the claims and commits.
    Many { max: usize, gather: Duration, run: for<'a> fn(&'a C, &'a mut Batch) -> BatchFuture<'a> },
}

pub type BatchFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// One claimed job.
#[derive(Debug)]
pub struct Claimed {
    pub id: i64,
    pub payload: Value,
    /// The runs made before this one.
    pub attempts: i64,
}

/// Jobs claimed together, and where their outcomes are written: on PostgreSQL the transaction
/// that holds their row locks, on SQLite a transaction begun by [`Batch::transaction`] after
/// the work (it holds the database's write lock).
pub struct Batch {
    db: Db,
    backoff: &'static [Duration],
    pub jobs: Vec<Claimed>,
    tx: Option<Tx<'static>>,
    finished: bool,
}

impl Batch {
    /// The transaction the results go in, with the jobs' outcomes ([`Batch::finish`]). Begin it
    /// once the slow part (the network) is done.
    pub async fn transaction(&mut self) -> Result<&mut Tx<'static>> {
        if self.tx.is_none() {
            self.tx = Some(self.db.begin().await?);
        }
        Ok(self.tx.as_mut().expect("just set"))
    }

    /// Records each job's outcome (`outcomes` by job id; a job of the batch left out is tried
    /// again) in [`Batch::transaction`] and commits it with whatever the handler wrote there.
    pub async fn finish(&mut self, mut outcomes: HashMap<i64, std::result::Result<(), JobError>>) -> Result<()> {
        let mut tx = match self.tx.take() {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        // Every job that worked in one statement; the others row by row.
        let mut done = Vec::new();
        for job in &self.jobs {
            let Err(error) = outcomes.remove(&job.id).unwrap_or_else(|| Err(JobError::Retry("the handler gave no outcome".into()))) else {
                done.push(job.id);
                continue;
            };
            tracing::info!(job = job.id, attempt = job.attempts + 1, error = ?error, "job run failed");
            let (state, run_at, error) = failed_row(job.attempts, error, self.backoff);
            sqlx::query("UPDATE jobs SET state = $1, attempts = $2, run_at = $3, last_error = $4, updated_at = $5 WHERE id = $6")
                .bind(state)
                .bind(job.attempts + 1)
                .bind(&run_at)
                .bind(truncate(&error, 2000))
                .bind(now())
                .bind(job.id)
                .execute(&mut *tx)
                .await?;
        }
        if !done.is_empty() {
            let sql = format!("UPDATE jobs SET state = 'done', attempts = attempts + 1, last_error = NULL, updated_at = $1 WHERE id IN ({})", crate::db::id_list(done));
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.finished = true;
        Ok(())
    }

    /// After a handler that failed without [`Batch::finish`]: on PostgreSQL the row locks go
    /// with the rolled-back transaction and the jobs are due again; on SQLite they are marked
    /// for another attempt after the back-off.
    async fn abandon(mut self, error: String) {
        if self.finished {
            return;
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.rollback().await;
        }
        if self.db.backend() == Backend::Postgres {
            return;
        }
        let outcomes = self.jobs.iter().map(|j| (j.id, Err(JobError::Retry(error.clone())))).collect();
        if let Err(e) = self.finish(outcomes).await {
            tracing::warn!(error = %e, "recording failed jobs failed; they run again after a restart");
        }
    }
}

/// The state, due time and error a failed run leaves a job in.
fn failed_row(attempts: i64, error: JobError, backoff: &[Duration]) -> (&'static str, String, String) {
    match error {
        JobError::Fatal(e) => ("failed", now(), e),
        JobError::Retry(e) => match backoff.get(attempts as usize) {
            Some(pause) => ("queued", format_time(chrono::Utc::now() + chrono::Duration::from_std(*pause).unwrap_or_default()), e),
            None => ("failed", now(), e),
        },
    }
}

fn claimed_of(r: &sqlx::any::AnyRow) -> Result<Claimed> {
    let payload: String = r.try_get("payload")?;
    Ok(Claimed { id: r.try_get("id")?, payload: serde_json::from_str(&payload).unwrap_or(Value::Null), attempts: r.try_get("attempts")? })
}

/// Claims up to `n` due jobs of `kind`, oldest due first; `None` when none is due.
async fn claim<C>(db: &Db, kind: &Kind<C>, n: usize) -> Result<Option<Batch>> {
    let t = now();
    let limit = n.max(1) as i64;
    let (rows, tx) = match db.backend() {
        Backend::Postgres => {
            let mut tx = db.begin().await?;
            let rows = sqlx::query(
                "SELECT id, payload, attempts FROM jobs WHERE kind = $1 AND state = 'queued' AND run_at <= $2 ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
            )
            .bind(kind.name)
            .bind(&t)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(None);
            }
            (rows, Some(tx))
        }
        Backend::Sqlite => {
            let rows = sqlx::query(
                "UPDATE jobs SET state = 'running', updated_at = $2 WHERE id IN (SELECT id FROM jobs WHERE kind = $1 AND state = 'queued' AND run_at <= $2 \
                 ORDER BY run_at, id LIMIT $3) RETURNING id, payload, attempts",
            )
            .bind(kind.name)
            .bind(&t)
            .bind(limit)
            .fetch_all(db.pool())
            .await?;
            if rows.is_empty() {
                return Ok(None);
            }
            (rows, None)
        }
    };
    let mut jobs = rows.iter().map(claimed_of).collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(Some(Batch { db: db.clone(), backoff: kind.backoff, jobs, tx, finished: false }))
}

/// Runs a claimed batch with the kind's handler and records the outcomes.
async fn run_batch<C: Send + Sync + 'static>(ctx: &C, kind: &'static Kind<C>, mut batch: Batch) {
    let result = match &kind.run {
        Run::One(run) => {
            let job = batch.jobs.first().expect("a claim is never empty");
            let (id, outcome) = (job.id, run(ctx, &job.payload).await);
            batch.finish(HashMap::from([(id, outcome)])).await
        }
        Run::Many { run, .. } => run(ctx, &mut batch).await,
    };
    match result {
        Ok(()) if batch.finished => {}
        Ok(()) => batch.abandon("the handler did not record its jobs".into()).await,
        Err(e) => {
            tracing::warn!(kind = kind.name, jobs = batch.jobs.len(), error = %e, "a run or its record failed; the jobs run again");
            batch.abandon(e.public_message()).await;
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The running workers; dropping it does not stop them, [`Workers::stop`] does.
pub struct Workers {
    stop: Arc<Notify>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Stops claiming; waits for the runs in progress to be recorded.
    pub async fn stop(self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.notify_waiters();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the workers of every kind in `kinds` (each `concurrency` at a time). On SQLite the
/// jobs a dead process left `running` are queued again first.
///
/// At most `max_running` claims (one job, or a batch of one kind) run at once over all kinds: on
/// PostgreSQL each holds a database connection (its row locks) besides the ones its work uses.
pub async fn start<C: Send + Sync + 'static>(db: Db, ctx: Arc<C>, kinds: &'static [Kind<C>], max_running: usize) -> Result<Workers> {
    if db.backend() == Backend::Sqlite {
        let n = sqlx::query("UPDATE jobs SET state = 'queued', updated_at = $1 WHERE state = 'running'").bind(now()).execute(db.pool()).await?.rows_affected();
        if n > 0 {
            tracing::warn!(jobs = n, "jobs a previous run left running are queued again");
        }
    }
    let stop = Arc::new(Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    let all = Arc::new(Semaphore::new(max_running.max(1)));
    for kind in kinds {
        let (db, ctx, stop, stopped, all) = (db.clone(), ctx.clone(), stop.clone(), stopped.clone(), all.clone());
        tasks.push(tokio::spawn(async move { dispatch(db, ctx, kind, all, stop, stopped).await }));
    }
    Ok(Workers { stop, stopped, tasks })
}

/// One kind's loop: claims due jobs while a slot is free (as many as are free, up to the
/// kind's batch size), runs each claim in its own task.
async fn dispatch<C: Send + Sync + 'static>(
    db: Db,
    ctx: Arc<C>,
    kind: &'static Kind<C>,
    all: Arc<Semaphore>,
    stop: Arc<Notify>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) {
    let slots = Arc::new(Semaphore::new(kind.concurrency.max(1)));
    let wake = waker(kind.name);
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        if stopped.load(std::sync::atomic::Ordering::SeqCst) || db.pool().is_closed() {
            break;
        }
        // One claim holds one permit of `all` (its connection) and a slot per job.
        let mut slot = slots.clone().acquire_owned().await.expect("never closed");
        let claim_permit = all.clone().acquire_owned().await.expect("never closed");
        let more = slots.available_permits().min(kind.batch() - 1);
        if more > 0 {
            if let Ok(extra) = slots.clone().try_acquire_many_owned(more as u32) {
                slot.merge(extra);
            }
        }
        match claim(&db, kind, slot.num_permits()).await {
            Ok(Some(batch)) => {
                // Slots for jobs that were not there go back at once.
                let unused = slot.num_permits() - batch.jobs.len();
                if unused > 0 {
                    drop(slot.split(unused));
                }
                let ctx = ctx.clone();
                running.push(tokio::spawn(async move {
                    run_batch(&*ctx, kind, batch).await;
                    drop((slot, claim_permit));
                }));
                running.retain(|t| !t.is_finished());
                // Fewer than asked for: nothing else was due when it looked; what is committed
                // since wakes the loop (or the poll finds it), without a claim that finds nothing.
                if unused > 0 {
                    idle(kind, &wake, &stop).await;
                }
            }
            Ok(None) => {
                drop((slot, claim_permit));
                idle(kind, &wake, &stop).await;
            }
            Err(e) => {
                drop((slot, claim_permit));
                if db.pool().is_closed() {
                    break;
                }
                tracing::warn!(kind = kind.name, error = %e, "claiming a job failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
    for t in running {
        let _ = t.await;
    }
}

/// Waits, with nothing due, for a wake, the stop or the poll; then for the kind's `gather`.
async fn idle<C>(kind: &Kind<C>, wake: &Notify, stop: &Notify) {
    tokio::select! {
        () = wake.notified() => {}
        () = stop.notified() => return,
        () = tokio::time::sleep(POLL) => {}
    }
    if let Run::Many { gather, .. } = kind.run {
        if !gather.is_zero() {
            tokio::select! {
                () = stop.notified() => {}
                () = tokio::time::sleep(gather) => {}
            }
        }
    }
}

impl<C> Kind<C> {
    /// How many jobs one claim takes at most.
    fn batch(&self) -> usize {
        match self.run {
            Run::One(_) => 1,
            Run::Many { max, .. } => max.clamp(1, self.concurrency.max(1)),
        }
    }
}

/// Runs every due job of `kinds` in this task until none is due (tests and `connvault jobs
/// run`); returns how many runs were made.
pub async fn drain<C: Send + Sync + 'static>(db: &Db, ctx: &C, kinds: &'static [Kind<C>]) -> Result<usize> {
    let mut n = 0;
    loop {
        let mut any = false;
        for kind in kinds {
            while let Some(batch) = claim(db, kind, kind.batch()).await? {
                n += batch.jobs.len();
                run_batch(ctx, kind, batch).await;
                any = true;
            }
        }
        if !any {
            return Ok(n);
        }
    }
}
