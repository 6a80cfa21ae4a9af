//! The audit log, read newest first: an organization's, and the instance's
//! (what outlives its organization). Events are written by
//! [`crate::event`], in the transaction of the change each records.

use async_trait::async_trait;
use uuid::Uuid;

use crate::backend::Backend;
use crate::rows::AUDIT_COLUMNS;
use crate::sql::sql;
use crate::{AuditEvent, AuditStore, InstanceEvent, Result};

#[async_trait]
impl<B: Backend> AuditStore for B {
    async fn audit_events(&self, org_id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let text = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events \
             WHERE org_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        Ok(sql(&text).bind(org_id).bind(before).bind(limit).fetch_all(&mut self.reads()).await?)
    }

    async fn instance_events(&self, before: Option<i64>, limit: i64) -> Result<Vec<InstanceEvent>> {
        let text = format!(
            "SELECT {AUDIT_COLUMNS}, detail FROM instance_events \
             WHERE (CAST($1 AS BIGINT) IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        );
        Ok(sql(&text).bind(before).bind(limit).fetch_all(&mut self.reads()).await?)
    }
}
