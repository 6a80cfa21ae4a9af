//! The audit log: read newest first, written as [`AuditLog`] says, each
//! event in one statement whatever its organizations.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres};
use uuid::Uuid;

use super::PostgresStore;
use crate::error::audit_error;
use crate::event::{AuditLog, Event};
use crate::rows::AUDIT_COLUMNS;
use crate::{ApiKeyRecord, AuditEvent, AuditStore, AuthChange, InstanceEvent, Result};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE org_id = $1 AND ($2::BIGINT IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let page = sqlx::query_as::<_, AuditEvent>(&sql).bind(org_id).bind(before).bind(limit);
        Ok(page.fetch_all(&self.pool).await?)
    }

    async fn instance_events(&self, before: Option<i64>, limit: i64) -> Result<Vec<InstanceEvent>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}, detail FROM instance_events WHERE ($1::BIGINT IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2"
        );
        Ok(sqlx::query_as(&sql).bind(before).bind(limit).fetch_all(&self.pool).await?)
    }
}

#[async_trait]
impl AuditLog for Postgres {
    async fn announce(conn: &mut PgConnection, changes: &[AuthChange]) -> Result<()> {
        for change in changes {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::AUTH_CHANNEL)
                .bind(change.to_payload())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    async fn log(conn: &mut PgConnection, org_id: Uuid, event: Event) -> Result<()> {
        write(conn, Some(org_id), None, event).await
    }

    async fn log_key(conn: &mut PgConnection, key: &ApiKeyRecord, event: Event) -> Result<()> {
        write(conn, key.org_id, Some(key.user_id), event).await
    }
}

/// Writes the event to the log of `org_id`, or, without one, of every
/// organization `owner` belongs to, in the order of their ids.
async fn write(
    conn: &mut PgConnection,
    org_id: Option<Uuid>,
    owner: Option<Uuid>,
    event: Event,
) -> Result<()> {
    let insert = sqlx::query(
        "INSERT INTO audit_events \
             (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
         SELECT log.org_id, $3, $4, $5, $6, $7, $8, $9 FROM ( \
             SELECT $1::UUID WHERE $1 IS NOT NULL \
             UNION ALL SELECT org_id FROM memberships WHERE $1 IS NULL AND user_id = $2 \
         ) AS log (org_id) ORDER BY log.org_id",
    );
    event.bind(insert.bind(org_id).bind(owner)).execute(conn).await.map_err(audit_error)?;
    Ok(())
}
