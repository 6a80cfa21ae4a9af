//! The audit log: read newest first, and written only inside the
//! transaction of the change it records, so that a change that cannot be
//! audited rolls back ([`crate::StoreError::AuditUnavailable`]).

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PostgresStore;
use crate::error::audit_error;
use crate::rows::{AuditRow, audit_columns};
use crate::{Actor, ApiKeyRecord, AuditAction, AuditEvent, AuditStore, Result};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE org_id = $1 AND ($2::BIGINT IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(org_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

/// Writes one event to the organization's log.
pub(super) async fn record(
    conn: &mut PgConnection,
    org_id: Uuid,
    action: AuditAction,
    target_id: &str,
    actor: &Actor,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events \
         (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(org_id)
    .bind(crate::now())
    .bind(action.as_str())
    .bind(actor.user_id)
    .bind(actor.key_id)
    .bind(action.target_type())
    .bind(target_id)
    .bind(actor.ip.map(|ip| ip.to_string()))
    .execute(&mut *conn)
    .await
    .map_err(audit_error)?;
    Ok(())
}

/// Writes the event of a change to a key: to the key's organization, or, for
/// an unscoped key, to every organization its owner belongs to (read in this
/// transaction, so call it before anything removes those memberships).
pub(super) async fn record_for_key(
    conn: &mut PgConnection,
    key: &ApiKeyRecord,
    action: AuditAction,
    actor: &Actor,
) -> Result<()> {
    let target_id = key.id.to_string();
    if let Some(org_id) = key.org_id {
        return record(conn, org_id, action, &target_id, actor).await;
    }
    sqlx::query(
        "INSERT INTO audit_events \
         (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
         SELECT org_id, $2, $3, $4, $5, $6, $7, $8 FROM memberships WHERE user_id = $1 ORDER BY org_id",
    )
    .bind(key.user_id)
    .bind(crate::now())
    .bind(action.as_str())
    .bind(actor.user_id)
    .bind(actor.key_id)
    .bind(action.target_type())
    .bind(&target_id)
    .bind(actor.ip.map(|ip| ip.to_string()))
    .execute(&mut *conn)
    .await
    .map_err(audit_error)?;
    Ok(())
}
