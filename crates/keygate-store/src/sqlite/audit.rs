//! The audit log: read newest first, and written only inside the
//! transaction of the change it records, so that a change and its event
//! commit together or not at all. An event that cannot be written is
//! [`StoreError::AuditUnavailable`](crate::StoreError::AuditUnavailable).

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::error::audit_error;
use crate::rows::{AuditRow, audit_columns};
use crate::{Actor, ApiKeyRecord, AuditAction, AuditEvent, AuditStore, Result};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(org_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

/// Records `action` on `target_id` by `actor` in the organization's log.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    org_id: Uuid,
    action: AuditAction,
    actor: &Actor,
    target_id: &str,
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

/// Records `action` on a key: in its organization's log, or, for an
/// unscoped key, in the log of every organization its owner belongs to.
pub(super) async fn record_key(
    conn: &mut SqliteConnection,
    key: &ApiKeyRecord,
    action: AuditAction,
    actor: &Actor,
) -> Result<()> {
    let target_id = key.id.to_string();
    if let Some(org_id) = key.org_id {
        return record(conn, org_id, action, actor, &target_id).await;
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
