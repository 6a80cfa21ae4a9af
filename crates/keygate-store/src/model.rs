//! What the store keeps, as typed values.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, Utc};
use keygate_core::limits::{Balance, Credits, RateLimit, Refill};
use keygate_core::{AppId, Email, KeyDigest, KeyName, Mode, OrgName, Role};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub require_apikey_expiration: bool,
    pub max_apikey_expiration_days: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Rate limits shared by every key scoped to the organization.
    #[sqlx(try_from = "String")]
    pub ratelimits: RateLimitList,
}

/// Rate limits as stored: a JSON array of [`RateLimit`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitList(pub Vec<RateLimit>);

impl TryFrom<String> for RateLimitList {
    type Error = serde_json::Error;

    fn try_from(json: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&json).map(Self)
    }
}

impl Organization {
    pub fn expiry_policy(&self) -> keygate_core::rules::ExpiryPolicy {
        expiry_policy(self.require_apikey_expiration, self.max_apikey_expiration_days)
    }
}

/// The policy of an organization's two columns, as stored.
pub(crate) fn expiry_policy(
    require_expiration: bool,
    max_days: Option<i32>,
) -> keygate_core::rules::ExpiryPolicy {
    keygate_core::rules::ExpiryPolicy { require_expiration, max_days }
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
    /// A disabled key is refused (`api_key_disabled`), not deleted.
    pub enabled: bool,
    pub ratelimits: Vec<RateLimit>,
    /// `None`: unlimited.
    pub credits: Option<KeyCredits>,
}

/// A key's credits as stored: the balance no replica holds in lease, and
/// its refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCredits {
    pub balance: Balance,
    pub refill: Option<Refill>,
}

/// What a credit lease took ([`crate::KeyStore::lease_credits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditLease {
    /// At least what was needed, or 0 when the balance could not cover it.
    pub granted: u64,
    /// The balance left in the database after the lease.
    pub balance: Balance,
}

impl ApiKeyRecord {
    /// The key as the authorization rules see it: whose it is, its mode,
    /// scope and expiry.
    pub fn principal(&self) -> keygate_core::authz::Principal {
        keygate_core::authz::Principal {
            key_id: self.id,
            user_id: self.user_id,
            mode: self.mode,
            scope: keygate_core::Scope { org: self.org_id, apps: self.limited_to_apps.clone() },
            expires_at: self.expires_at,
            limited: is_limited(&self.ratelimits, self.credits.is_some()),
            retiring: false,
        }
    }
}

/// Whether a key with these rate limits, and credits or not, is limited
/// ([`keygate_core::authz::Principal::limited`]).
pub(crate) fn is_limited(ratelimits: &[keygate_core::limits::RateLimit], credits: bool) -> bool {
    !ratelimits.is_empty() || credits
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
    pub limits: KeyLimits,
}

/// What a new key may spend; by default enabled, unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimits {
    pub enabled: bool,
    pub ratelimits: Vec<RateLimit>,
    pub credits: Option<Credits>,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self { enabled: true, ratelimits: Vec::new(), credits: None }
    }
}

/// A partial update of a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<KeyName>,
    pub mode: Option<Mode>,
    pub limited_to_apps: Option<Vec<AppId>>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub enabled: Option<bool>,
    pub ratelimits: Option<Vec<RateLimit>>,
    /// Sets the balance anew (and its refill); `Some(None)`: unlimited.
    pub credits: Option<Option<Credits>>,
}

impl KeyChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.mode.is_none()
            && self.limited_to_apps.is_none()
            && self.expires_at.is_none()
            && self.enabled.is_none()
            && self.ratelimits.is_none()
            && self.credits.is_none()
    }

    /// What the change asks for, as [`keygate_core::key_writes::may_write_key`] judges it.
    pub fn edit(&self) -> keygate_core::key_writes::KeyEdit {
        keygate_core::key_writes::KeyEdit {
            mode: self.mode,
            apps: self.limited_to_apps.clone(),
            expires_at: self.expires_at,
            limits: self.enabled.is_some() || self.ratelimits.is_some() || self.credits.is_some(),
        }
    }
}

/// A partial update of an organization; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrgChanges {
    pub name: Option<OrgName>,
    pub require_apikey_expiration: Option<bool>,
    /// `Some(None)` lifts the limit.
    pub max_apikey_expiration_days: Option<Option<i32>>,
    /// Replaces the rate limits shared by the organization's keys.
    pub ratelimits: Option<Vec<RateLimit>>,
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
    /// The operator confirms an existing account with this email is the
    /// person's (`--existing-account`); otherwise only a new account, or a
    /// member of the organization already, is enrolled.
    pub existing_account: bool,
}

impl Enrollee {
    /// The unscoped `all` key the enrollee gets, as `user_id`'s.
    pub(crate) fn cli_key(&self, user_id: Uuid) -> NewApiKey {
        NewApiKey {
            material: self.key.clone(),
            mode: keygate_core::rules::FIRST_KEY_MODE,
            name: self.key_name.clone(),
            user_id,
            org_id: None,
            limited_to_apps: Vec::new(),
            expires_at: None,
            created_by_key_id: None,
            limits: KeyLimits::default(),
        }
    }
}

/// A key that can act in an organization, as its admins see it: scoped to
/// it, or an unscoped key of a member, and whether it is blocked there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInOrg {
    pub key: ApiKeyRecord,
    pub blocked: bool,
}

/// An invitation to an organization, as its admins see it (never its code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: i64,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_by: Option<Uuid>,
    /// The key it was issued with: an invitation is a credential that key
    /// made, and stands only while that key could make one.
    pub created_by_key_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new invitation: the SHA-256 of its code, never the code.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub org_id: Uuid,
    pub email: Email,
    pub role: Role,
    pub digest: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// Who redeems an invitation: the key presented with the code, if any, and
/// what a new account's first key would be made of.
#[derive(Debug, Clone)]
pub struct Redeemer {
    /// The key presented with the code: whose it is, its id and its mode.
    pub presented: Option<PresentedKey>,
    /// The first key of a new account, used only if the invitation makes one.
    pub first_key: KeyMaterial,
    /// Where the redemption came from, for the audit log.
    pub ip: Option<IpAddr>,
}

/// A live key presented with a redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey {
    pub user_id: Uuid,
    pub key_id: i64,
    pub mode: Mode,
    /// Unrestrained and presented by its current secret
    /// ([`keygate_core::rules::Presented::free`]), as authentication found
    /// it; the store judges it again as the key stands in its transaction.
    pub free: bool,
    /// The key's current digest when the request was authenticated.
    pub digest: KeyDigest,
}

/// What redeeming an invitation made: the member, and the first key of a
/// new account (`None` when an existing account joined).
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub invite_id: i64,
    pub user_id: Uuid,
    pub org_id: Uuid,
    /// The invitation's role.
    pub role: Role,
    pub key: Option<ApiKeyRecord>,
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
    /// The most bytes the bundles of the app's organization may take,
    /// this one included; checked under the write lock
    /// ([`Refusal::StorageQuota`](keygate_core::rules::Refusal::StorageQuota)).
    pub max_org_storage: Option<u64>,
}

/// `Ok` when an organization whose bundles take `used` bytes, this one
/// included, stays within `quota`.
pub(crate) fn check_quota(used: i64, quota: Option<u64>) -> crate::Result<()> {
    let used = u64::try_from(used).unwrap_or(0);
    keygate_core::rules::within_storage_quota(used, quota).map_err(crate::StoreError::Refused)
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
    /// Credits the admitted requests spent.
    pub credits: i64,
    /// Requests refused by a rate limit, for want of credits, or because
    /// the key was disabled.
    pub rate_limited: i64,
    pub usage_exceeded: i64,
    pub disabled: i64,
}

impl DailyUse {
    /// Nothing counted yet on `date`.
    pub fn zero(date: NaiveDate) -> Self {
        Self { date, requests: 0, denied: 0, credits: 0, rate_limited: 0, usage_exceeded: 0, disabled: 0 }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &DailyUse) {
        self.requests += other.requests;
        self.denied += other.denied;
        self.credits += other.credits;
        self.rate_limited += other.rate_limited;
        self.usage_exceeded += other.usage_exceeded;
        self.disabled += other.disabled;
    }
}

/// Who makes a change, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actor {
    /// The acting member; a change of memberships is checked against their
    /// role. `None` for the operator at the command line or an anonymous
    /// leak report, which no membership rule binds.
    pub user_id: Option<Uuid>,
    pub key_id: Option<i64>,
    pub ip: Option<IpAddr>,
    /// The calling key's current digest when the request was authenticated
    /// (`None`: the operator, or a store test acting for a key): a key
    /// rotated since acts, in the write's transaction, as a secret on its
    /// way out, which manages and administers nothing.
    pub presented: Option<KeyDigest>,
}

impl Actor {
    /// The operator running `keygate bootstrap` or `keygate user add`.
    pub const OPERATOR: Actor = Actor { user_id: None, key_id: None, ip: None, presented: None };
}

/// Every kind of change the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    ApiKeyCreate,
    ApiKeyUpdate,
    ApiKeyDelete,
    ApiKeyRotate,
    /// Deleted through `POST /apikey/revoke` by whoever held it.
    ApiKeyRevoke,
    OrganizationCreate,
    OrganizationUpdate,
    MemberSet,
    MemberRemove,
    AppCreate,
    AppUpdate,
    AppDelete,
    BundleUpload,
    BundleDelete,
    InviteCreate,
    InviteRevoke,
    InviteRedeem,
    /// A member's unscoped key stopped from acting in the organization.
    ApiKeyBlock,
    ApiKeyUnblock,
    /// In the instance's log: a new account.
    UserCreate,
    /// In the instance's log: an organization and everything it held.
    OrganizationDelete,
}

impl AuditAction {
    /// The action as the log shows it, such as `apikey.create`.
    pub const fn as_str(self) -> &'static str {
        use AuditAction::*;
        match self {
            ApiKeyCreate => "apikey.create",
            ApiKeyUpdate => "apikey.update",
            ApiKeyDelete => "apikey.delete",
            ApiKeyRotate => "apikey.rotate",
            ApiKeyRevoke => "apikey.revoke",
            OrganizationCreate => "organization.create",
            OrganizationUpdate => "organization.update",
            MemberSet => "member.set",
            MemberRemove => "member.remove",
            AppCreate => "app.create",
            AppUpdate => "app.update",
            AppDelete => "app.delete",
            BundleUpload => "bundle.upload",
            BundleDelete => "bundle.delete",
            InviteCreate => "invite.create",
            InviteRevoke => "invite.revoke",
            InviteRedeem => "invite.redeem",
            ApiKeyBlock => "apikey.block",
            ApiKeyUnblock => "apikey.unblock",
            UserCreate => "user.create",
            OrganizationDelete => "organization.delete",
        }
    }

    /// What kind of thing the event's `target_id` names.
    pub const fn target_type(self) -> &'static str {
        use AuditAction::*;
        match self {
            ApiKeyCreate | ApiKeyUpdate | ApiKeyDelete | ApiKeyRotate | ApiKeyRevoke | ApiKeyBlock
            | ApiKeyUnblock => "apikey",
            OrganizationCreate | OrganizationUpdate | OrganizationDelete => "organization",
            UserCreate => "user",
            MemberSet | MemberRemove => "member",
            AppCreate | AppUpdate | AppDelete => "app",
            BundleUpload | BundleDelete => "bundle",
            InviteCreate | InviteRevoke | InviteRedeem => "invite",
        }
    }
}

/// A change that may alter what authenticating a key returns. Every write
/// that makes one announces it after its commit to the caches attached
/// with [`crate::Store::attach_cache`]; this list is the one place that names
/// them, so that a cache of authentication can be kept honest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// The key was updated, rotated, deleted or revoked, or blocked or
    /// unblocked in an organization.
    Key { id: i64 },
    /// The user's role in the organization was set, changed or removed
    /// (removal also deletes their keys scoped to it).
    Member { org_id: Uuid, user_id: Uuid },
    /// The organization was deleted with its memberships and scoped keys,
    /// or the rate limits its keys share changed.
    Organization { org_id: Uuid },
    /// The app was deleted: keys limited to it reach nothing there now.
    App { app_id: AppId },
}

impl AuthChange {
    /// The change as other processes receive it (PostgreSQL `NOTIFY`).
    pub fn to_payload(&self) -> String {
        match self {
            AuthChange::Key { id } => format!("key:{id}"),
            AuthChange::Member { org_id, user_id } => format!("member:{org_id}:{user_id}"),
            AuthChange::Organization { org_id } => format!("org:{org_id}"),
            AuthChange::App { app_id } => format!("app:{}", app_id.as_str()),
        }
    }

    /// Reads what [`AuthChange::to_payload`] wrote; `None` for anything else.
    pub fn from_payload(payload: &str) -> Option<Self> {
        let (kind, rest) = payload.split_once(':')?;
        match kind {
            "key" => Some(AuthChange::Key { id: rest.parse().ok()? }),
            "member" => {
                let (org_id, user_id) = rest.split_once(':')?;
                Some(AuthChange::Member { org_id: org_id.parse().ok()?, user_id: user_id.parse().ok()? })
            }
            "org" => Some(AuthChange::Organization { org_id: rest.parse().ok()? }),
            "app" => Some(AuthChange::App { app_id: AppId::parse(rest).ok()? }),
            _ => None,
        }
    }
}

/// What authenticating a digest finds: the key, its owner's current role in
/// the key's organization, and, when the digest is the key's previous
/// secret (inside a rotation's grace period), when that secret stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestMatch {
    pub key: ApiKeyRecord,
    /// The owner's role in the key's organization; for an unscoped key,
    /// their role in any organization where the key is not blocked.
    /// `None` when there is none.
    pub owner_role: Option<Role>,
    /// The rate limits the key's organization shares among its keys.
    pub org_ratelimits: Vec<RateLimit>,
    /// The end of the grace period when the digest matched the previous
    /// secret; `None` when it matched the current one.
    pub valid_until: Option<DateTime<Utc>>,
}

/// An event of the instance's own log ([`crate::AuditStore::instance_events`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceEvent {
    #[sqlx(flatten)]
    pub event: AuditEvent,
    /// What the event leaves on record, as JSON: for a deleted
    /// organization, its name and how many members, keys, apps and bundles
    /// it held.
    pub detail: Option<String>,
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
