//! Group commit: how every SQLite write reaches the disk.
//!
//! One task owns the single writer connection, and every write is a job
//! sent to it. The task takes the first job waiting, opens `BEGIN
//! IMMEDIATE` (the database's write lock, held against other processes
//! until the commit), runs that job and then each job already queued behind
//! it, up to [`MAX_BATCH`], one at a time in the order they were sent: that
//! is a batch, and each job sees what the jobs before it wrote. Each job
//! runs inside its own `SAVEPOINT`: one that fails (a conflict, a refusal, a
//! row not found, any error, even a panic) is rolled back to its savepoint
//! alone and answered with its own error, and the others go on. The batch
//! ends with one `COMMIT`, one fsync with `synchronous = FULL`; if any job
//! changed what authentication returns, the batch also moves the
//! `auth_epoch` counter that other processes' key caches watch.
//!
//! A write is acknowledged only once the commit of its batch has returned:
//! then the caches attached to the store are invalidated for every change of
//! the batch, the changes are broadcast, and only then is each job
//! answered. If `BEGIN` or `COMMIT` fails, nothing of the batch was made and
//! every job in it is answered [`StoreError::Unavailable`]. A writer that is
//! closed or gone answers the same way: no caller is left waiting.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::file::DatabaseFile;
use crate::backend::{BoxFuture, Written};
use crate::change::ChangeFeed;
use crate::{AuthChange, Result, StoreError};

/// The most jobs one transaction holds.
pub(super) const MAX_BATCH: usize = 512;

/// How many jobs may wait for the writer before senders wait too.
const QUEUE: usize = 2 * MAX_BATCH;

/// The handle to the writer task; dropping it (with the store) lets the
/// task finish what is queued and close the connection.
pub(super) struct Writer {
    queue: mpsc::Sender<Message>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// How many batches have committed.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    commits: Arc<AtomicU64>,
}

enum Message {
    Job(Box<dyn Job>),
    /// Refuse new jobs, answer those queued, close the connection.
    Close,
}

impl Writer {
    /// Starts the writer task on `conn` (it needs a Tokio runtime); with
    /// `file`, a batch begins only while the path still names that file.
    pub(super) fn start(conn: SqliteConnection, changes: ChangeFeed, file: Option<DatabaseFile>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(conn, jobs, changes, commits.clone(), file));
        Self { queue, task: Mutex::new(Some(task)), commits }
    }

    /// Runs `work` in the next batch and answers once that batch is
    /// durable: its value, or its own error, or `Unavailable` if the batch
    /// could not commit.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static,
    {
        Self::send(&self.queue, work).await
    }

    async fn send<T, F>(queue: &mpsc::Sender<Message>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending { work: Some(work), outcome: None, reply });
        if queue.send(Message::Job(job)).await.is_err() {
            return Err(closed());
        }
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Answers every job sent before, then closes the connection; writes
    /// sent afterwards are refused.
    pub(super) async fn close(&self) {
        let _ = self.queue.send(Message::Close).await;
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the SQLite writer failed");
        }
    }

    /// How many batches have committed.
    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// A write waiting for its batch: run once, answered once.
trait Job: Send {
    /// Runs the write on `conn`: the changes it made, or `None` if it failed
    /// (its error is kept for [`Job::answer`]).
    fn run<'a>(&'a mut self, conn: &'a mut SqliteConnection) -> BoxFuture<'a, Option<Vec<AuthChange>>>;

    /// Tells the caller how it went, now that the batch has committed
    /// (`Ok`) or failed (the reason).
    fn answer(self: Box<Self>, batch: Result<(), &str>);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static,
{
    fn run<'a>(&'a mut self, conn: &'a mut SqliteConnection) -> BoxFuture<'a, Option<Vec<AuthChange>>> {
        Box::pin(async move {
            let work = self.work.take()?;
            match work(conn).await {
                Ok((value, changes)) => {
                    self.outcome = Some(Ok(value));
                    Some(changes)
                }
                Err(error) => {
                    self.outcome = Some(Err(error));
                    None
                }
            }
        })
    }

    fn answer(self: Box<Self>, batch: Result<(), &str>) {
        let answer = match (self.outcome, batch) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(reason)) => Err(unavailable(reason)),
            // It panicked: rolled back alone, its batch committed.
            (None, Ok(())) => Err(unavailable("the write failed before it finished")),
        };
        // A caller that has gone away (a cancelled request) needs no answer.
        let _ = self.reply.send(answer);
    }
}

/// The writer task: one batch after another until closed and drained, or
/// until every handle is gone.
async fn run(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Message>,
    changes: ChangeFeed,
    commits: Arc<AtomicU64>,
    file: Option<DatabaseFile>,
) {
    while let Some(message) = queue.recv().await {
        match message {
            Message::Job(first) => {
                if let Some(Err(error)) = file.as_ref().map(DatabaseFile::check) {
                    let mut jobs = vec![first];
                    jobs.extend(std::iter::from_fn(|| queued(&mut queue)).take(MAX_BATCH - 1));
                    tracing::error!(%error, "writes refused");
                    let reason = error.to_string();
                    for job in jobs {
                        job.answer(Err(&reason));
                    }
                    continue;
                }
                batch(&mut conn, first, &mut queue, &changes, &commits).await
            }
            Message::Close => queue.close(),
        }
    }
    if let Err(error) = conn.close().await {
        tracing::warn!(%error, "closing the SQLite writer connection failed");
    }
}

/// The next queued job, if any, without waiting; a [`Message::Close`] on
/// the way closes the queue (what is already in it is still taken).
fn queued(queue: &mut mpsc::Receiver<Message>) -> Option<Box<dyn Job>> {
    loop {
        match queue.try_recv().ok()? {
            Message::Job(job) => return Some(job),
            Message::Close => queue.close(),
        }
    }
}

/// Runs one batch: `first` and what is queued behind it, in one transaction.
async fn batch(
    conn: &mut SqliteConnection,
    first: Box<dyn Job>,
    queue: &mut mpsc::Receiver<Message>,
    changes: &ChangeFeed,
    commits: &AtomicU64,
) {
    let mut jobs = vec![first];
    // Statements sent together cross to SQLite's thread once: that
    // crossing, not SQLite, is most of what a write costs here.
    if let Err(error) = execute(conn, "BEGIN IMMEDIATE; SAVEPOINT job").await {
        // The lock could not be had (another process held it past the busy
        // timeout): what is waiting now would most likely fare no better.
        jobs.extend(std::iter::from_fn(|| queued(queue)).take(MAX_BATCH - 1));
        return fail(conn, jobs, &error).await;
    }
    let mut announced = Vec::new();
    let mut next = 0;
    while next < jobs.len() {
        if next > 0
            && let Err(error) = execute(conn, "RELEASE job; SAVEPOINT job").await
        {
            return fail(conn, jobs, &error).await;
        }
        match run_one(conn, jobs[next].as_mut()).await {
            Ok(Some(made)) => announced.extend(made),
            Ok(None) => {}
            // The savepoint could not be rolled back to: the transaction
            // itself can no longer be trusted.
            Err(error) => return fail(conn, jobs, &error).await,
        }
        next += 1;
        if next == jobs.len() && jobs.len() < MAX_BATCH {
            jobs.extend(queued(queue));
        }
    }
    // Other processes' caches learn of the batch's changes from the epoch.
    let end = if announced.is_empty() {
        "RELEASE job; COMMIT"
    } else {
        "RELEASE job; UPDATE auth_epoch SET value = value + 1 WHERE id = 1; COMMIT"
    };
    if let Err(error) = execute(conn, end).await {
        return fail(conn, jobs, &error).await;
    }
    commits.fetch_add(1, Ordering::Relaxed);
    metrics::histogram!("keygate_writer_batch_size").record(jobs.len() as f64);
    changes.published(&announced);
    for job in jobs {
        job.answer(Ok(()));
    }
}

/// Runs `job` inside the savepoint the batch opened for it, rolled back to
/// if the job fails.
async fn run_one(
    conn: &mut SqliteConnection,
    job: &mut dyn Job,
) -> Result<Option<Vec<AuthChange>>, sqlx::Error> {
    let made = AssertUnwindSafe(job.run(conn)).catch_unwind().await.unwrap_or_else(|_| {
        tracing::error!("a write panicked; it was rolled back");
        None
    });
    if made.is_none() {
        execute(conn, "ROLLBACK TO job").await?;
    }
    Ok(made)
}

/// Rolls the batch back and answers every job in it that has no error of
/// its own with `error`.
async fn fail(conn: &mut SqliteConnection, jobs: Vec<Box<dyn Job>>, error: &sqlx::Error) {
    tracing::warn!(%error, jobs = jobs.len(), "a batch of writes failed; nothing of it was made");
    // There may be no transaction left to roll back (BEGIN failed, or
    // SQLite rolled it back itself): that error tells nothing new.
    let _ = execute(conn, "ROLLBACK").await;
    let reason = error.to_string();
    for job in jobs {
        job.answer(Err(&reason));
    }
}

/// Runs one or more `;`-separated statements (SQLite's driver steps through
/// each in turn), stopping at the first error.
async fn execute(conn: &mut SqliteConnection, statements: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(statements).execute(&mut *conn).await.map(drop)
}

/// A write whose batch failed: nothing of it was made, retry later.
fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(std::io::Error::other(format!(
        "the write's transaction failed: {reason}"
    ))))
}

/// A write sent after the store was closed, or to a writer that is gone.
fn closed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

    use super::*;
    use crate::error::{Entity, write_error};

    struct Fixture {
        _dir: tempfile::TempDir,
        options: SqliteConnectOptions,
        writer: Writer,
    }

    /// A writer on a new file with one table, `names (name TEXT UNIQUE)`,
    /// the `auth_epoch` counter, and a short busy timeout.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let options = SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(100));
        let mut conn = SqliteConnection::connect_with(&options).await.expect("connect");
        execute(&mut conn, "CREATE TABLE names (name TEXT NOT NULL UNIQUE)").await.expect("table");
        execute(&mut conn, "CREATE TABLE auth_epoch (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
            .await
            .expect("epoch");
        execute(&mut conn, "INSERT INTO auth_epoch VALUES (1, 0)").await.expect("epoch");
        Fixture { _dir: dir, writer: Writer::start(conn, ChangeFeed::default(), None), options }
    }

    impl Fixture {
        async fn names(&self) -> Vec<String> {
            let mut conn = SqliteConnection::connect_with(&self.options).await.expect("connect");
            sqlx::query_scalar("SELECT name FROM names ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .expect("read")
        }

        /// Inserts `name`; a name already there is a conflict.
        fn insert(&self, name: &str) -> impl Future<Output = Result<()>> + Send + 'static {
            let name = name.to_owned();
            let queue = self.writer.queue.clone();
            async move { Writer::send(&queue, move |conn| Box::pin(insert(conn, name))).await }
        }

        /// How many jobs wait for the writer.
        fn waiting(&self) -> usize {
            self.writer.queue.max_capacity() - self.writer.queue.capacity()
        }
    }

    async fn insert(conn: &mut SqliteConnection, name: String) -> Result<Written<()>> {
        sqlx::query("INSERT INTO names (name) VALUES ($1)")
            .bind(&name)
            .execute(&mut *conn)
            .await
            .map_err(|e| write_error(e, Entity::App, Entity::App))?;
        Ok(((), vec![AuthChange::Key { id: name.len() as i64 }]))
    }

    /// Holds the writer inside a job until told to go on; resolves once the
    /// job is running.
    async fn hold(fixture: &Fixture) -> (oneshot::Sender<()>, tokio::task::JoinHandle<Result<()>>) {
        let (running, started) = oneshot::channel();
        let (go, held) = oneshot::channel::<()>();
        let queue = fixture.writer.queue.clone();
        let job = tokio::spawn(async move {
            Writer::send(&queue, move |conn| {
                Box::pin(async move {
                    let _ = running.send(());
                    let _ = held.await;
                    insert(conn, "first".into()).await
                })
            })
            .await
        });
        started.await.expect("the first job runs");
        (go, job)
    }

    /// Waits until `n` jobs are queued behind the one running.
    async fn until_waiting(fixture: &Fixture, n: usize) {
        while fixture.waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn queued_writes_commit_as_one_batch_and_a_failed_one_fails_alone() {
        let fixture = fixture().await;
        let (go, first) = hold(&fixture).await;

        let mut jobs = Vec::new();
        for name in ["a", "b", "first", "c"] {
            jobs.push(tokio::spawn(fixture.insert(name)));
            until_waiting(&fixture, jobs.len()).await;
        }
        // A job that writes, then fails: its own write is undone.
        let queue = fixture.writer.queue.clone();
        jobs.push(tokio::spawn(async move {
            Writer::send(&queue, |conn| {
                Box::pin(async move {
                    insert(conn, "undone".into()).await?;
                    Err::<Written<()>, _>(StoreError::NotFound(Entity::ApiKey))
                })
            })
            .await
        }));
        until_waiting(&fixture, jobs.len()).await;
        // A job that panics after writing: rolled back alone too.
        let queue = fixture.writer.queue.clone();
        jobs.push(tokio::spawn(async move {
            Writer::send(&queue, |conn| {
                Box::pin(async move {
                    insert(conn, "panicked".into()).await?;
                    panic!("a bug in a write");
                })
            })
            .await
        }));
        until_waiting(&fixture, jobs.len()).await;
        jobs.push(tokio::spawn(fixture.insert("d")));
        until_waiting(&fixture, jobs.len()).await;
        assert_eq!(fixture.writer.commits(), 0);
        assert!(fixture.names().await.is_empty(), "nothing is visible before the commit");

        go.send(()).expect("release");
        first.await.expect("task").expect("the first write");
        let mut outcomes = Vec::new();
        for job in jobs {
            outcomes.push(job.await.expect("task"));
        }
        assert!(outcomes[0].is_ok() && outcomes[1].is_ok() && outcomes[3].is_ok() && outcomes[6].is_ok());
        // "first" was written by the first job of the same batch, not yet
        // committed when this one ran: it sees it.
        assert!(matches!(outcomes[2], Err(StoreError::Conflict(Entity::App))), "{:?}", outcomes[2]);
        assert!(matches!(outcomes[4], Err(StoreError::NotFound(Entity::ApiKey))), "{:?}", outcomes[4]);
        assert!(matches!(outcomes[5], Err(StoreError::Unavailable(_))), "{:?}", outcomes[5]);
        assert_eq!(fixture.writer.commits(), 1, "one transaction for the eight writes");
        assert_eq!(fixture.names().await, ["a", "b", "c", "d", "first"]);

        // The writer goes on after all that.
        fixture.insert("e").await.expect("a later write");
        assert_eq!(fixture.writer.commits(), 2);
        fixture.writer.close().await;
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_answers_every_write_with_an_error_then_the_writer_recovers() {
        let fixture = fixture().await;
        // Another process holds the write lock past the busy timeout.
        let mut other = SqliteConnection::connect_with(&fixture.options).await.expect("connect");
        execute(&mut other, "BEGIN IMMEDIATE").await.expect("lock");
        let writes: Vec<_> = ["a", "b", "c"].iter().map(|name| tokio::spawn(fixture.insert(name))).collect();
        for write in writes {
            let outcome = write.await.expect("task");
            assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");
        }
        execute(&mut other, "ROLLBACK").await.expect("unlock");
        fixture.insert("d").await.expect("written once the lock is free");
        assert_eq!(fixture.names().await, ["d"]);
        fixture.writer.close().await;
    }

    /// A cache that keeps the changes it is told of.
    #[derive(Default)]
    struct Announced(Mutex<Vec<AuthChange>>);

    impl crate::AuthCache for Announced {
        fn changed(&self, change: &AuthChange) {
            self.0.lock().expect("lock").push(change.clone());
        }
        fn flush(&self) {}
        fn confirmed(&self, _: std::time::Instant) {}
        fn distrust(&self) {}
    }

    impl Announced {
        fn take(&self) -> Vec<AuthChange> {
            std::mem::take(&mut *self.0.lock().expect("lock"))
        }
    }

    #[tokio::test]
    async fn changes_are_announced_after_the_commit_and_before_the_answer() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let options = SqliteConnectOptions::from_str(&url).expect("url").create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.expect("connect");
        execute(&mut conn, "CREATE TABLE names (name TEXT NOT NULL UNIQUE)").await.expect("table");
        execute(&mut conn, "CREATE TABLE auth_epoch (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
            .await
            .expect("epoch");
        execute(&mut conn, "INSERT INTO auth_epoch VALUES (1, 0)").await.expect("epoch");
        let feed = ChangeFeed::default();
        let announced = Arc::new(Announced::default());
        feed.attach(announced.clone());
        let writer = Writer::start(conn, feed, None);
        writer.write(|conn| Box::pin(insert(conn, "abc".into()))).await.expect("write");
        assert_eq!(announced.take(), [AuthChange::Key { id: 3 }]);
        let failed = writer.write(|conn| Box::pin(insert(conn, "abc".into()))).await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        assert_eq!(announced.take(), [], "a failed write announces nothing");
        writer.close().await;
    }

    #[tokio::test]
    async fn close_answers_what_was_queued_and_refuses_what_comes_after() {
        let fixture = fixture().await;
        let (go, first) = hold(&fixture).await;
        let queued = tokio::spawn(fixture.insert("queued"));
        until_waiting(&fixture, 1).await;
        // Sent as `close` sends it, while the writer is busy.
        fixture.writer.queue.send(Message::Close).await.expect("close sent");
        go.send(()).expect("release");
        fixture.writer.close().await;
        first.await.expect("task").expect("the running write");
        queued.await.expect("task").expect("the queued write");
        let late = fixture.insert("late").await;
        assert!(matches!(late, Err(StoreError::Unavailable(_))), "{late:?}");
        assert_eq!(fixture.names().await, ["first", "queued"]);
    }

    #[tokio::test]
    async fn a_writer_that_is_gone_answers_with_an_error() {
        let fixture = fixture().await;
        let task = fixture.writer.task.lock().expect("lock").take().expect("task");
        task.abort();
        let _ = task.await;
        let outcome = fixture.insert("a").await;
        assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");
    }
}
