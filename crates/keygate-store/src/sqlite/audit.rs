//! The audit log: read newest first, written as [`AuditLog`] says.

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::error::audit_error;
use crate::event::{AuditLog, Event};
use crate::rows::AUDIT_COLUMNS;
use crate::{ApiKeyRecord, AuditEvent, AuditStore, InstanceEvent, Result};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE org_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(sqlx::query_as(&sql).bind(org_id).bind(before).bind(limit).fetch_all(&self.reader).await?)
    }

    async fn instance_events(&self, before: Option<i64>, limit: i64) -> Result<Vec<InstanceEvent>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}, detail FROM instance_events WHERE ($1 IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2"
        );
        Ok(sqlx::query_as(&sql).bind(before).bind(limit).fetch_all(&self.reader).await?)
    }
}

#[async_trait]
impl AuditLog for Sqlite {
    async fn log(conn: &mut SqliteConnection, org_id: Uuid, event: Event) -> Result<()> {
        let insert = sqlx::query(
            "INSERT INTO audit_events \
             (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        event.bind(insert.bind(org_id)).execute(conn).await.map_err(audit_error)?;
        Ok(())
    }

    async fn log_key(conn: &mut SqliteConnection, key: &ApiKeyRecord, event: Event) -> Result<()> {
        if let Some(org_id) = key.org_id {
            return Self::log(conn, org_id, event).await;
        }
        let insert = sqlx::query(
            "INSERT INTO audit_events \
             (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
             SELECT org_id, $2, $3, $4, $5, $6, $7, $8 FROM memberships WHERE user_id = $1 ORDER BY org_id",
        );
        event.bind(insert.bind(key.user_id)).execute(conn).await.map_err(audit_error)?;
        Ok(())
    }
}
