//! What the store keeps, as typed values.

use chrono::{DateTime, NaiveDate, Utc};
use keygate_core::{AppId, Email, KeyDigest, KeyName, Mode, OrgName, Role};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub require_apikey_expiration: bool,
    pub max_apikey_expiration_days: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored API key. Holds no secret: only its masked preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: i64,
    /// The SHA-256 of the current secret (not a secret itself).
    pub digest: KeyDigest,
    pub preview: String,
    pub mode: Mode,
    pub name: String,
    pub user_id: Uuid,
    /// `None` for an unscoped key (issued by the CLI only).
    pub org_id: Option<Uuid>,
    pub limited_to_apps: Vec<AppId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_by_key_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The stored half of a freshly generated key.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    pub digest: KeyDigest,
    pub preview: String,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub material: KeyMaterial,
    pub mode: Mode,
    pub name: KeyName,
    pub user_id: Uuid,
    pub org_id: Option<Uuid>,
    pub limited_to_apps: Vec<AppId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by_key_id: Option<i64>,
}

/// A partial update of a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<KeyName>,
    pub mode: Option<Mode>,
    pub limited_to_apps: Option<Vec<AppId>>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.mode.is_none()
            && self.limited_to_apps.is_none()
            && self.expires_at.is_none()
    }
}

/// A partial update of an organization; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrgChanges {
    pub name: Option<OrgName>,
    pub require_apikey_expiration: Option<bool>,
    /// `Some(None)` lifts the limit.
    pub max_apikey_expiration_days: Option<Option<i32>>,
}

/// Which operator command is enrolling someone, and how.
#[derive(Debug, Clone)]
pub enum Enroll {
    /// A new organization with this user as its `super_admin`.
    NewOrganization { name: OrgName },
    /// An existing organization, with this role.
    Member { org_id: Uuid, role: Role },
}

/// The result of `keygate bootstrap` or `keygate user add`.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub key: ApiKeyRecord,
}

/// Input of an enrollment: who, where, and the unscoped `all` key they get.
#[derive(Debug, Clone)]
pub struct Enrollee {
    pub email: Email,
    pub enroll: Enroll,
    pub key: KeyMaterial,
    pub key_name: KeyName,
}

/// An organization as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub organization: Organization,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
}

/// A change of membership, checked against the acting member's role as it
/// stands when the change is made.
#[derive(Debug, Clone)]
pub struct MemberChange {
    pub org_id: Uuid,
    /// Who makes the change: they must administer the organization, and
    /// nobody touches or grants a role above their own.
    pub acting_user: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub app_id: AppId,
    pub org_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub id: i64,
    pub app_id: AppId,
    pub version: String,
    /// Hex SHA-256 of the bytes.
    pub checksum: String,
    pub size: i64,
    /// Where the blob store keeps the bytes.
    pub blob_key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewBundle {
    pub app_id: AppId,
    pub version: String,
    pub checksum: String,
    pub size: i64,
    pub blob_key: String,
}

/// What one key did since the last write of usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: i64,
    /// `None` when only denials were counted since the last write.
    pub last_used_at: Option<DateTime<Utc>>,
    pub days: Vec<DailyUse>,
}

/// Requests made with a key on one UTC day, and how many were denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct DailyUse {
    #[sqlx(rename = "day")]
    pub date: NaiveDate,
    pub requests: i64,
    pub denied: i64,
}

/// Something that happened in an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub org_id: Uuid,
    /// Such as `apikey.create` or `member.remove`.
    pub action: &'static str,
    pub actor_user_id: Option<Uuid>,
    pub actor_key_id: Option<i64>,
    /// Such as `apikey`, `member`, `app`.
    pub target_type: &'static str,
    pub target_id: String,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_key_id: Option<i64>,
    pub target_type: String,
    pub target_id: String,
    pub ip: Option<String>,
}
