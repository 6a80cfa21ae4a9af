//! Failed authentications shared by every replica: each is a row of
//! `auth_failures` and a `NOTIFY` on [`CHANNEL`]. A replica queues its own
//! and one task writes them, many to a statement, over one connection at a
//! time: a flood of bad keys never takes the pool from the requests that
//! carry good ones. When the queue is full, a failure is counted by its
//! replica alone. Each replica listens, tells its throttle of the others' failures as they
//! come, and on every (re)subscription reloads the window's rows, so that a
//! replica that starts late, or lost its connection, misses none. Rows
//! older than the window are deleted as the replicas go.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::outage::Outage;
use crate::{FailureFeed, Result};

/// Where failures are announced: `<replica>|<client>|<unix milliseconds>|<row id>`.
const CHANNEL: &str = "keygate_failures";
/// How long a subscription may stay silent before it is checked by
/// reloading (failures are rare, so silence is normal).
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// How many failures may wait to be shared.
const QUEUE: usize = 4096;
/// The most failures one statement records.
const BATCH: usize = 512;

/// Where a replica's own failures wait for [`share`] to write them.
#[derive(Clone)]
pub(super) struct FailureQueue(mpsc::Sender<(IpAddr, DateTime<Utc>)>);

impl FailureQueue {
    /// Queues a failure without waiting; when the queue is full, it is
    /// dropped (this replica's throttle has already counted it).
    pub(super) fn push(&self, client: IpAddr) {
        if self.0.try_send((client, crate::now())).is_err() {
            tracing::debug!(%client, "failed authentications queue up: this one is not shared");
        }
    }
}

/// A queue of failures and the task that writes them, until the queue's
/// every sender is gone.
pub(super) fn share(pool: PgPool, replica: Uuid) -> (FailureQueue, tokio::task::JoinHandle<()>) {
    let (sender, mut queue) = mpsc::channel(QUEUE);
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            if let Err(error) = record(&pool, replica, &batch).await {
                tracing::debug!(%error, failures = batch.len(), "cannot share failed authentications with other replicas");
            }
            batch.clear();
        }
    });
    (FailureQueue(sender), writer)
}

async fn record(pool: &PgPool, replica: Uuid, failures: &[(IpAddr, DateTime<Utc>)]) -> Result<()> {
    let (clients, times): (Vec<String>, Vec<DateTime<Utc>>) =
        failures.iter().map(|(client, at)| (client.to_string(), *at)).unzip();
    sqlx::query(
        "WITH recorded AS ( \
            INSERT INTO auth_failures (client, at, replica) \
            SELECT client, at, $3 FROM unnest($1::text[], $2::timestamptz[]) AS t(client, at) \
            RETURNING id, client, at) \
         SELECT pg_notify($4, $5 || client || '|' || floor(extract(epoch FROM at) * 1000)::int8 || '|' || id) \
         FROM recorded",
    )
    .bind(clients)
    .bind(times)
    .bind(replica)
    .bind(CHANNEL)
    .bind(format!("{replica}|"))
    .execute(pool)
    .await?;
    Ok(())
}

/// One failure as announced by another replica; `None` for our own or for
/// what cannot be read.
fn parse(payload: &str, own: Uuid) -> Option<(i64, IpAddr, SystemTime)> {
    let mut parts = payload.split('|');
    let replica: Uuid = parts.next()?.parse().ok()?;
    let client: IpAddr = parts.next()?.parse().ok()?;
    let millis: u64 = parts.next()?.parse().ok()?;
    let id: i64 = parts.next()?.parse().ok()?;
    (replica != own).then(|| (id, client, SystemTime::UNIX_EPOCH + Duration::from_millis(millis)))
}

/// Every failure other replicas recorded within `window`, after deleting
/// the rows older than it.
async fn load(pool: &PgPool, replica: Uuid, window: Duration) -> Result<Vec<(i64, IpAddr, SystemTime)>> {
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    sqlx::query("DELETE FROM auth_failures WHERE at < $1").bind(since).execute(pool).await?;
    let rows: Vec<(i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, client, at FROM auth_failures WHERE at >= $1 AND replica <> $2 ORDER BY at",
    )
    .bind(since)
    .bind(replica)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, client, at)| Some((id, client.parse().ok()?, SystemTime::from(at))))
        .collect())
}

pub(super) async fn listen(
    listen_pool: PgPool,
    pool: PgPool,
    feed: Arc<dyn FailureFeed>,
    replica: Uuid,
    window: Duration,
) {
    let mut outage = Outage::new(
        "cannot follow other replicas' failed authentications",
        Duration::from_millis(250),
        Duration::from_secs(30),
    );
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&listen_pool).await?;
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match subscribed.await {
            Ok(listener) => listener,
            Err(error) => {
                tokio::time::sleep(outage.failed(&error)).await;
                continue;
            }
        };
        // Subscribed first, then read: a failure recorded in between is
        // both loaded and announced, and counted once (the reload replaces).
        match load(&pool, replica, window).await {
            Ok(failures) => {
                tracing::debug!(failures = failures.len(), "read other replicas' failed authentications");
                feed.reload(failures);
            }
            Err(error) => {
                tokio::time::sleep(outage.failed(&error)).await;
                continue;
            }
        }
        outage.recovered();
        loop {
            match tokio::time::timeout(RELOAD_EVERY, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    if let Some((id, client, at)) = parse(notification.payload(), replica) {
                        tracing::debug!(%client, "another replica recorded a failed authentication");
                        feed.failed(id, client, at);
                    }
                }
                // Quiet for a while: prune and make sure nothing was missed.
                Err(_) => match load(&pool, replica, window).await {
                    Ok(failures) => feed.reload(failures),
                    Err(_) => break,
                },
                // The connection was lost: subscribe again, then reload.
                Ok(Ok(None) | Err(_)) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_replica_the_client_and_the_time() {
        let (own, other) = (Uuid::new_v4(), Uuid::new_v4());
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            parse(&format!("{other}|2001:db8::1|1700000000123|42"), own),
            Some((42, "2001:db8::1".parse().expect("address"), at))
        );
        assert_eq!(
            parse(&format!("{other}|192.0.2.7|1700000000123|42"), own),
            Some((42, "192.0.2.7".parse().expect("address"), at))
        );
        assert_eq!(parse(&format!("{own}|192.0.2.7|1700000000123|42"), own), None, "our own");
        assert_eq!(parse("garbage", own), None);
    }
}
