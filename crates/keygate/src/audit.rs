//! The audit log: every change inside an organization, with who made it
//! (user and key) and from which address.
//!
//! An event is written right after the change it records, before the
//! response; if that write fails the change stands and the failure is
//! logged. Events of an organization go when the organization does.

use std::net::IpAddr;

use keygate_store::NewAuditEvent;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;

/// Who made a change.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub key_id: Option<i64>,
    pub ip: Option<IpAddr>,
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Self {
        Self { user_id: Some(caller.user_id()), key_id: Some(caller.principal.key_id), ip: caller.address }
    }
}

/// Records `action` on `target_type` `target_id` in `org_id`.
pub async fn record(
    state: &AppState,
    org_id: Uuid,
    actor: impl Into<Actor>,
    action: &'static str,
    target_type: &'static str,
    target_id: impl ToString,
) {
    let actor = actor.into();
    let event = NewAuditEvent {
        org_id,
        action,
        actor_user_id: actor.user_id,
        actor_key_id: actor.key_id,
        target_type,
        target_id: target_id.to_string(),
        ip: actor.ip.map(|ip| ip.to_string()),
    };
    if let Err(error) = state.store.record_audit(event).await {
        tracing::error!(%error, %org_id, action, "audit event lost");
    }
}

/// Records a change to `key`: in its organization, or, for an unscoped
/// key, in every organization its owner belongs to (where it has power).
pub async fn record_key(
    state: &AppState,
    key: &keygate_store::ApiKeyRecord,
    actor: impl Into<Actor>,
    action: &'static str,
) {
    let actor = actor.into();
    let orgs = match key.org_id {
        Some(org_id) => vec![org_id],
        None => match state.store.memberships(key.user_id).await {
            Ok(memberships) => memberships.into_iter().map(|m| m.organization.id).collect(),
            Err(error) => {
                tracing::error!(%error, key_id = key.id, action, "audit event lost");
                return;
            }
        },
    };
    for org_id in orgs {
        record(state, org_id, actor, action, "apikey", key.id).await;
    }
}
