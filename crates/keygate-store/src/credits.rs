//! Credit leases, alike on every backend: a replica takes a block of a
//! key's balance in one short transaction ([`Balance::lease`] decides how
//! much, refilling first when a period began), spends it in memory, and
//! hands back what it did not use. The database only ever holds what no
//! replica has leased, so however many replicas spend at once, together
//! they never spend more than the balance. Leases are not changes an
//! administrator made: they are neither audited nor announced.

use chrono::{DateTime, Utc};
use keygate_core::limits::Balance;
use sqlx::{Database, Executor, FromRow, IntoArguments};

use crate::params::Param;
use crate::rows::CreditRow;
use crate::{CreditLease, Result};

/// Takes a lease of at least `need` credits of key `id` on `conn`, inside
/// the caller's transaction; `read` selects the key's [`CreditRow`] by
/// `$1`, locking it where the backend needs to. `None` when the key is gone
/// or its credits are unlimited.
pub(crate) async fn lease<DB>(
    conn: &mut DB::Connection,
    read: &str,
    id: i64,
    need: u64,
    now: DateTime<Utc>,
) -> Result<Option<CreditLease>>
where
    DB: Database,
    CreditRow: for<'r> FromRow<'r, DB::Row>,
    for<'q> i64: Param<'q, DB>,
    for<'q> Option<i64>: Param<'q, DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let row: Option<CreditRow> = sqlx::query_as(read).bind(id).fetch_optional(&mut *conn).await?;
    let Some(credits) = row.map(|row| row.credits(id)).transpose()?.flatten() else {
        return Ok(None);
    };
    let (balance, granted) = credits.balance.lease(credits.refill.as_ref(), now, need);
    if balance != credits.balance {
        sqlx::query("UPDATE api_keys SET credits_remaining = $2, credits_period = $3 WHERE id = $1")
            .bind(id)
            .bind(balance.remaining)
            .bind(balance.period_ms)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(CreditLease { granted, balance }))
}

/// Hands back `amount` unused credits of a lease taken from `lease`'s
/// balance, unless that balance was set anew or refilled since.
pub(crate) async fn give_back<DB>(
    conn: &mut DB::Connection,
    id: i64,
    amount: u64,
    lease: Balance,
) -> Result<()>
where
    DB: Database,
    for<'q> i64: Param<'q, DB>,
    for<'q> Option<i64>: Param<'q, DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query(
        "UPDATE api_keys SET credits_remaining = credits_remaining + $2 \
         WHERE id = $1 AND credits_generation = $3 AND credits_period IS NOT DISTINCT FROM $4 \
         AND credits_remaining IS NOT NULL",
    )
    .bind(id)
    .bind(i64::try_from(amount).unwrap_or(i64::MAX))
    .bind(lease.generation)
    .bind(lease.period_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
