//! Rows as both backends read them, and their conversion into the model.
//!
//! The SQL differs per backend; the columns a query returns do not, so each
//! entity has one row type here. The one column whose type differs, a key's
//! apps, is [`AppList`]: a JSON array in SQLite's `TEXT`, a native `TEXT[]`
//! in PostgreSQL.

use chrono::{DateTime, Utc};
use keygate_core::{AppId, KeyDigest, Mode, Role};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

use crate::{ApiKeyRecord, App, AuditEvent, Bundle, Member, Membership, Organization, StoreError};

// The columns each row type reads, as macros so that queries can be built
// with `concat!` at compile time: `concat!("SELECT ", key_columns!(), " FROM api_keys …")`.
macro_rules! key_columns {
    () => {
        "id, digest, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, last_used_at, \
         created_by_key_id, created_at, updated_at"
    };
}
macro_rules! org_columns {
    () => {
        "id, name, require_apikey_expiration, max_apikey_expiration_days, created_at, updated_at"
    };
}
macro_rules! app_columns {
    () => {
        "app_id, org_id, name, created_at, updated_at"
    };
}
macro_rules! bundle_columns {
    () => {
        "id, app_id, version, checksum, size, blob_key, created_at"
    };
}
macro_rules! audit_columns {
    () => {
        "id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip"
    };
}
#[allow(unused_imports)]
pub(crate) use {app_columns, audit_columns, bundle_columns, key_columns, org_columns};

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
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what} of key {}", row.id));
        let mode = Mode::parse(&row.mode).ok_or_else(|| corrupt("mode"))?;
        let digest = KeyDigest::from_slice(&row.digest).ok_or_else(|| corrupt("digest"))?;
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
        })
    }
}

/// A key with its owner's role in the key's organization.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRoleRow {
    #[sqlx(flatten)]
    key: KeyRow,
    owner_role: Option<String>,
}

impl TryFrom<KeyRoleRow> for (ApiKeyRecord, Option<Role>) {
    type Error = StoreError;

    fn try_from(row: KeyRoleRow) -> Result<Self, StoreError> {
        Ok((row.key.try_into()?, row.owner_role.as_deref().map(role).transpose()?))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: Uuid,
    name: String,
    require_apikey_expiration: bool,
    max_apikey_expiration_days: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OrgRow> for Organization {
    fn from(row: OrgRow) -> Self {
        Organization {
            id: row.id,
            name: row.name,
            require_apikey_expiration: row.require_apikey_expiration,
            max_apikey_expiration_days: row.max_apikey_expiration_days,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    #[sqlx(flatten)]
    org: OrgRow,
    role: String,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> Result<Self, StoreError> {
        Ok(Membership { role: role(&row.role)?, organization: row.org.into() })
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
        let app_id = AppId::parse(&row.app_id)
            .map_err(|_| StoreError::Corrupt(format!("apps.app_id `{}`", row.app_id)))?;
        Ok(App {
            app_id,
            org_id: row.org_id,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
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
        let app_id = AppId::parse(&row.app_id)
            .map_err(|_| StoreError::Corrupt(format!("bundles.app_id of bundle {}", row.id)))?;
        Ok(Bundle {
            id: row.id,
            app_id,
            version: row.version,
            checksum: row.checksum,
            size: row.size,
            blob_key: row.blob_key,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    action: String,
    actor_user_id: Option<Uuid>,
    actor_key_id: Option<i64>,
    target_type: String,
    target_id: String,
    ip: Option<String>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        AuditEvent {
            id: row.id,
            at: row.at,
            action: row.action,
            actor_user_id: row.actor_user_id,
            actor_key_id: row.actor_key_id,
            target_type: row.target_type,
            target_id: row.target_id,
            ip: row.ip,
        }
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

pub(crate) fn role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("memberships.role `{name}`")))
}
