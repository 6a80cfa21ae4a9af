//! Rows as both backends read them, and their conversion into the model.
//!
//! The SQL differs per backend; the columns a query returns do not, so each
//! entity has one row type here (or none, where the model is read as is:
//! organizations, audit events, daily usage). The one column whose type
//! differs, a key's apps, is [`AppList`]: a JSON array in SQLite's `TEXT`, a
//! native `TEXT[]` in PostgreSQL.

use chrono::{DateTime, Utc};
use keygate_core::{AppId, KeyDigest, Mode, Role};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

use keygate_core::limits::{Balance, RateLimit, Refill};

use crate::{ApiKeyRecord, App, Bundle, KeyCredits, Member, Membership, Organization, StoreError};

// The columns each kind of row is read from, as the statements of either
// backend list them: `format!("SELECT {KEY_COLUMNS} FROM api_keys …")`.
pub(crate) const KEY_COLUMNS: &str = "id, digest, preview, mode, name, user_id, org_id, limited_to_apps, \
    expires_at, last_used_at, created_by_key_id, created_at, updated_at, enabled, ratelimits, \
    credits_remaining, credits_refill, credits_period, credits_generation";
pub(crate) const ORG_COLUMNS: &str =
    "id, name, require_apikey_expiration, max_apikey_expiration_days, created_at, updated_at, ratelimits";
pub(crate) const APP_COLUMNS: &str = "app_id, org_id, name, created_at, updated_at";
pub(crate) const BUNDLE_COLUMNS: &str = "id, app_id, version, checksum, size, blob_key, created_at";
/// The bytes the bundles of an organization take, with the organization's
/// id (or an expression giving it) appended: `format!("{ORG_BUNDLE_BYTES}$1")`.
pub(crate) const ORG_BUNDLE_BYTES: &str = "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) \
    FROM bundles b JOIN apps a ON a.app_id = b.app_id WHERE a.org_id = ";
/// The keys whose current or previous digest is `$1`. Whether a previous
/// secret still answers is [`keygate_core::key_writes::secret_answers`]'s
/// to say, over [`VALID_UNTIL`].
pub(crate) const BY_EITHER_DIGEST: &str = "digest = $1 OR previous_digest = $1";
/// Until when the secret whose digest is `$1` answers for its key: `NULL`
/// for the current one, the end of the grace period for the previous one.
pub(crate) const VALID_UNTIL: &str = "CASE WHEN digest = $1 THEN NULL ELSE previous_expires_at END";
pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip";

/// The apps a key is limited to, as each backend stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AppList(pub Vec<AppId>);

impl AppList {
    fn names(&self) -> Vec<String> {
        self.0.iter().map(|a| a.as_str().to_owned()).collect()
    }

    fn parse(names: Vec<String>) -> Result<Self, BoxDynError> {
        let apps = names.iter().map(|a| AppId::parse(a)).collect::<Result<_, _>>()?;
        Ok(Self(apps))
    }
}

impl From<&[AppId]> for AppList {
    fn from(apps: &[AppId]) -> Self {
        Self(apps.to_vec())
    }
}

impl Type<Sqlite> for AppList {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'r> Decode<'r, Sqlite> for AppList {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Self::parse(serde_json::from_str(text)?)
    }
}

impl<'q> Encode<'q, Sqlite> for AppList {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(serde_json::Value::from(self.names()).to_string(), buf)
    }
}

impl Type<Postgres> for AppList {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for AppList {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Self::parse(<Vec<String> as Decode<Postgres>>::decode(value)?)
    }
}

impl Encode<'_, Postgres> for AppList {
    fn encode_by_ref(&self, buf: &mut sqlx::postgres::PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Vec<String> as Encode<Postgres>>::encode(self.names(), buf)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: i64,
    digest: Vec<u8>,
    preview: String,
    mode: String,
    name: String,
    user_id: Uuid,
    org_id: Option<Uuid>,
    limited_to_apps: AppList,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    created_by_key_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    enabled: bool,
    ratelimits: String,
    #[sqlx(flatten)]
    credits: CreditRow,
}

/// A key's rate limits as stored: a JSON array.
pub(crate) fn ratelimits_json(limits: &[RateLimit]) -> String {
    serde_json::to_string(limits).unwrap_or_else(|_| "[]".to_owned())
}

/// A refill as stored: a JSON object.
pub(crate) fn refill_json(refill: Option<&Refill>) -> Option<String> {
    refill.and_then(|refill| serde_json::to_string(refill).ok())
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what} of key {}", row.id));
        let mode = Mode::parse(&row.mode).ok_or_else(|| corrupt("mode"))?;
        let digest = KeyDigest::from_slice(&row.digest).ok_or_else(|| corrupt("digest"))?;
        let ratelimits = serde_json::from_str(&row.ratelimits).map_err(|_| corrupt("ratelimits"))?;
        let credits = row.credits.credits(row.id)?;
        Ok(ApiKeyRecord {
            id: row.id,
            digest,
            preview: row.preview,
            mode,
            name: row.name,
            user_id: row.user_id,
            org_id: row.org_id,
            limited_to_apps: row.limited_to_apps.0,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            created_by_key_id: row.created_by_key_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            enabled: row.enabled,
            ratelimits,
            credits,
        })
    }
}

/// A key's credits as a lease reads them.
#[derive(sqlx::FromRow)]
pub(crate) struct CreditRow {
    pub credits_remaining: Option<i64>,
    pub credits_refill: Option<String>,
    pub credits_period: Option<i64>,
    pub credits_generation: i64,
}

impl CreditRow {
    /// The balance and its refill; `None` for unlimited credits.
    pub(crate) fn credits(&self, id: i64) -> Result<Option<KeyCredits>, StoreError> {
        let Some(remaining) = self.credits_remaining else { return Ok(None) };
        let refill = match &self.credits_refill {
            Some(json) => Some(
                serde_json::from_str::<Refill>(json)
                    .map_err(|_| StoreError::Corrupt(format!("api_keys.credits_refill of key {id}")))?,
            ),
            None => None,
        };
        let balance =
            Balance { remaining, period_ms: self.credits_period, generation: self.credits_generation };
        Ok(Some(KeyCredits { balance, refill }))
    }
}

/// A key with its owner's role in the key's organization.
#[derive(sqlx::FromRow)]
pub(crate) struct DigestMatchRow {
    #[sqlx(flatten)]
    key: KeyRow,
    owner_role: Option<String>,
    org_ratelimits: Option<String>,
    valid_until: Option<DateTime<Utc>>,
}

impl TryFrom<DigestMatchRow> for crate::DigestMatch {
    type Error = StoreError;

    fn try_from(row: DigestMatchRow) -> Result<Self, StoreError> {
        let org_ratelimits = match &row.org_ratelimits {
            Some(json) => serde_json::from_str(json)
                .map_err(|_| StoreError::Corrupt("organizations.ratelimits".into()))?,
            None => Vec::new(),
        };
        Ok(crate::DigestMatch {
            org_ratelimits,
            key: row.key.try_into()?,
            owner_role: row.owner_role.as_deref().map(role).transpose()?,
            valid_until: row.valid_until,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    #[sqlx(flatten)]
    org: Organization,
    role: String,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> Result<Self, StoreError> {
        Ok(Membership { role: role(&row.role)?, organization: row.org })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    user_id: Uuid,
    email: String,
    role: String,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> Result<Self, StoreError> {
        Ok(Member { user_id: row.user_id, email: row.email, role: role(&row.role)? })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AppRow {
    app_id: String,
    org_id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AppRow> for App {
    type Error = StoreError;

    fn try_from(row: AppRow) -> Result<Self, StoreError> {
        let AppRow { app_id, org_id, name, created_at, updated_at } = row;
        let app_id = stored_app_id(&app_id, || format!("apps.app_id `{app_id}`"))?;
        Ok(App { app_id, org_id, name, created_at, updated_at })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct BundleRow {
    id: i64,
    app_id: String,
    version: String,
    checksum: String,
    size: i64,
    blob_key: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<BundleRow> for Bundle {
    type Error = StoreError;

    fn try_from(row: BundleRow) -> Result<Self, StoreError> {
        let BundleRow { id, app_id, version, checksum, size, blob_key, created_at } = row;
        let app_id = stored_app_id(&app_id, || format!("bundles.app_id of bundle {id}"))?;
        Ok(Bundle { id, app_id, version, checksum, size, blob_key, created_at })
    }
}

/// Converts every row, failing on the first that cannot be read.
pub(crate) fn all<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// Converts a row that may be absent.
pub(crate) fn one<R, T: TryFrom<R, Error = StoreError>>(row: Option<R>) -> Result<Option<T>, StoreError> {
    row.map(T::try_from).transpose()
}

/// An app id as stored, [`StoreError::Corrupt`] (saying where, from
/// `place`) if it no longer parses.
fn stored_app_id(raw: &str, place: impl FnOnce() -> String) -> Result<AppId, StoreError> {
    AppId::parse(raw).map_err(|_| StoreError::Corrupt(place()))
}

pub(crate) fn role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("memberships.role `{name}`")))
}
