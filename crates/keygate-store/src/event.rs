//! An audit event as every backend writes it: the values of one row of
//! `audit_events`, all but the organization whose log it goes to; and the
//! log itself, which each backend writes with its own SQL.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::sql::{Db, Statement, sql};
use crate::{Actor, ApiKeyRecord, AuditAction, Bundle, Result};

/// What the log records of one change: when, what, on what, by whom.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    at: DateTime<Utc>,
    action: &'static str,
    actor_user_id: Option<Uuid>,
    actor_key_id: Option<i64>,
    target_type: &'static str,
    target_id: String,
    ip: Option<String>,
}

impl Event {
    /// `action` on `target` by `actor`, now.
    pub(crate) fn new(action: AuditAction, target: impl ToString, actor: &Actor) -> Self {
        Event {
            at: crate::now(),
            action: action.as_str(),
            actor_user_id: actor.user_id,
            actor_key_id: actor.key_id,
            target_type: action.target_type(),
            target_id: target.to_string(),
            ip: actor.ip.map(|ip| ip.to_string()),
        }
    }

    /// `action` on a bundle, which the log names `app_id@version`.
    pub(crate) fn of_bundle(action: AuditAction, bundle: &Bundle, actor: &Actor) -> Self {
        Self::new(action, format!("{}@{}", bundle.app_id.as_str(), bundle.version), actor)
    }
}

/// Writes `event` to the instance's log, with its `detail` (JSON): the
/// record of what outlives its organization.
pub(crate) async fn log_instance(db: &mut Db<'_>, event: Event, detail: Option<String>) -> Result<()> {
    let insert = sql("INSERT INTO instance_events \
         (at, action, actor_user_id, actor_key_id, target_type, target_id, ip, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    event.bound(insert).bind(detail).execute(db).await.map_err(crate::error::audit_error)?;
    Ok(())
}

impl Event {
    /// Binds the event after what `statement` binds already, in the order
    /// of the columns `at, action, actor_user_id, actor_key_id,
    /// target_type, target_id, ip`.
    fn bound(self, statement: Statement<'_>) -> Statement<'_> {
        statement
            .bind(self.at)
            .bind(self.action)
            .bind(self.actor_user_id)
            .bind(self.actor_key_id)
            .bind(self.target_type)
            .bind(self.target_id)
            .bind(self.ip)
    }
}

/// Writes the event to the organization's log, in the transaction of the
/// change it records: the two commit together or not at all. An event that
/// cannot be written is
/// [`StoreError::AuditUnavailable`](crate::StoreError::AuditUnavailable).
pub(crate) async fn log(db: &mut Db<'_>, org_id: Uuid, event: Event) -> Result<()> {
    let insert = sql("INSERT INTO audit_events \
         (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
    event.bound(insert.bind(org_id)).execute(db).await.map_err(crate::error::audit_error)?;
    Ok(())
}

/// Writes the event of a change to a key, as [`log`] does: to the key's
/// organization, or, for an unscoped key, to every organization its owner
/// belongs to (read in this transaction, so call it before anything removes
/// those memberships).
pub(crate) async fn log_key(db: &mut Db<'_>, key: &ApiKeyRecord, event: Event) -> Result<()> {
    if let Some(org_id) = key.org_id {
        return log(db, org_id, event).await;
    }
    let insert = sql("INSERT INTO audit_events \
         (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
         SELECT org_id, $2, $3, $4, $5, $6, $7, $8 FROM memberships WHERE user_id = $1 ORDER BY org_id");
    event.bound(insert.bind(key.user_id)).execute(db).await.map_err(crate::error::audit_error)?;
    Ok(())
}
