//! The SQL both backends share.
//!
//! Every statement here is valid on SQLite and PostgreSQL alike (`$n`
//! placeholders, `RETURNING`, `ON CONFLICT`), and every column maps to the
//! same Rust type on both. sqlx's generic bounds over `Database` are
//! unwieldy, so [`impl_store!`] stamps the one implementation out for each
//! backend instead; a backend only supplies its pools and migrations.

use chrono::{DateTime, Utc};
use keygate_core::{AppId, Mode, Role};
use uuid::Uuid;

use crate::{ApiKeyRecord, Organization, StoreError};

macro_rules! key_columns {
    () => {
        "id, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, last_used_at, \
         created_by_key_id, created_at, updated_at"
    };
}
pub(crate) use key_columns;

macro_rules! org_columns {
    () => {
        "id, name, require_apikey_expiration, max_apikey_expiration_days, created_at, updated_at"
    };
}
pub(crate) use org_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: i64,
    preview: String,
    mode: String,
    name: String,
    user_id: Uuid,
    org_id: Option<Uuid>,
    limited_to_apps: String,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    created_by_key_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("api_keys.{what} of key {}", row.id));
        let mode = Mode::parse(&row.mode).ok_or_else(|| corrupt("mode"))?;
        let apps: Vec<String> =
            serde_json::from_str(&row.limited_to_apps).map_err(|_| corrupt("limited_to_apps"))?;
        let limited_to_apps = apps
            .iter()
            .map(|a| AppId::parse(a))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt("limited_to_apps"))?;
        Ok(ApiKeyRecord {
            id: row.id,
            preview: row.preview,
            mode,
            name: row.name,
            user_id: row.user_id,
            org_id: row.org_id,
            limited_to_apps,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            created_by_key_id: row.created_by_key_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(crate) fn keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKeyRecord>, StoreError> {
    rows.into_iter().map(ApiKeyRecord::try_from).collect()
}

pub(crate) fn apps_json(apps: &[AppId]) -> String {
    let names: Vec<&str> = apps.iter().map(AppId::as_str).collect();
    serde_json::Value::from(names).to_string()
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

pub(crate) fn role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("memberships.role `{name}`")))
}

/// Maps constraint violations of a write to what they mean.
pub(crate) fn write_error(error: sqlx::Error, missing: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(missing);
        }
        if db.is_unique_violation() {
            return StoreError::Conflict("api key");
        }
    }
    error.into()
}

/// Implements [`crate::Store`] for a backend with `reader()`, `writer()` and
/// `close_pools()` methods, over database `$db`.
macro_rules! impl_store {
    ($backend:ty, $db:ty) => {
        impl $backend {
            async fn insert_key_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: $crate::NewApiKey,
            ) -> $crate::Result<$crate::ApiKeyRecord> {
                let now = $crate::now();
                let row: $crate::sql::KeyRow = sqlx::query_as(concat!(
                    "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, \
                     limited_to_apps, expires_at, created_by_key_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
                    $crate::sql::key_columns!()
                ))
                .bind(&key.material.digest.as_bytes()[..])
                .bind(&key.material.preview)
                .bind(key.mode.as_str())
                .bind(key.name.as_str())
                .bind(key.user_id)
                .bind(key.org_id)
                .bind($crate::sql::apps_json(&key.limited_to_apps))
                .bind(key.expires_at)
                .bind(key.created_by_key_id)
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| $crate::sql::write_error(e, "organization"))?;
                row.try_into()
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $backend {
            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await
            }

            async fn has_users(&self) -> $crate::Result<bool> {
                let any: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users LIMIT 1")
                    .fetch_optional(self.reader())
                    .await?;
                Ok(any.is_some())
            }

            async fn enroll(&self, enrollee: $crate::Enrollee) -> $crate::Result<$crate::Enrollment> {
                use keygate_core::Role;
                let now = $crate::now();
                let mut tx = self.writer().begin().await?;
                let existing: Option<uuid::Uuid> =
                    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                        .bind(enrollee.email.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let user_id = match existing {
                    Some(id) => id,
                    None => {
                        let id = uuid::Uuid::now_v7();
                        sqlx::query("INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)")
                            .bind(id)
                            .bind(enrollee.email.as_str())
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        id
                    }
                };
                let (org_id, role) = match enrollee.enroll {
                    $crate::Enroll::NewOrganization { name } => {
                        let id = uuid::Uuid::now_v7();
                        sqlx::query(
                            "INSERT INTO organizations (id, name, created_at, updated_at) \
                             VALUES ($1, $2, $3, $3)",
                        )
                        .bind(id)
                        .bind(name.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        (id, Role::SuperAdmin)
                    }
                    $crate::Enroll::Member { org_id, role } => {
                        // A no-op update locks the organization's row (PostgreSQL;
                        // SQLite's single writer is exclusive anyway), so that two
                        // concurrent downgrades cannot both see another super_admin.
                        let locked = sqlx::query(
                            "UPDATE organizations SET updated_at = updated_at WHERE id = $1",
                        )
                        .bind(org_id)
                        .execute(&mut *tx)
                        .await?;
                        if locked.rows_affected() == 0 {
                            return Err($crate::StoreError::NotFound("organization"));
                        }
                        let current: Option<String> = sqlx::query_scalar(
                            "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2",
                        )
                        .bind(org_id)
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if current.as_deref() == Some(Role::SuperAdmin.as_str())
                            && role != Role::SuperAdmin
                        {
                            let owners: i64 = sqlx::query_scalar(
                                "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = $2",
                            )
                            .bind(org_id)
                            .bind(Role::SuperAdmin.as_str())
                            .fetch_one(&mut *tx)
                            .await?;
                            if owners <= 1 {
                                return Err($crate::StoreError::LastSuperAdmin);
                            }
                        }
                        (org_id, role)
                    }
                };
                sqlx::query(
                    "INSERT INTO memberships (org_id, user_id, role, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(org_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let key = Self::insert_key_on(
                    &mut *tx,
                    $crate::NewApiKey {
                        material: enrollee.key,
                        mode: keygate_core::Mode::All,
                        name: enrollee.key_name,
                        user_id,
                        org_id: None,
                        limited_to_apps: Vec::new(),
                        expires_at: None,
                        created_by_key_id: None,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok($crate::Enrollment { user_id, org_id, key })
            }

            async fn organization(
                &self,
                id: uuid::Uuid,
            ) -> $crate::Result<Option<$crate::Organization>> {
                let row: Option<$crate::sql::OrgRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::org_columns!(),
                    " FROM organizations WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(Into::into))
            }

            async fn update_organization(
                &self,
                id: uuid::Uuid,
                changes: $crate::OrgChanges,
            ) -> $crate::Result<Option<$crate::Organization>> {
                let row: Option<$crate::sql::OrgRow> = sqlx::query_as(concat!(
                    "UPDATE organizations SET name = COALESCE($2, name), \
                     require_apikey_expiration = COALESCE($3, require_apikey_expiration), \
                     max_apikey_expiration_days = CASE WHEN $4 THEN $5 \
                     ELSE max_apikey_expiration_days END, updated_at = $6 WHERE id = $1 RETURNING ",
                    $crate::sql::org_columns!()
                ))
                .bind(id)
                .bind(changes.name.as_ref().map(|n| n.as_str()))
                .bind(changes.require_apikey_expiration)
                .bind(changes.max_apikey_expiration_days.is_some())
                .bind(changes.max_apikey_expiration_days.flatten())
                .bind($crate::now())
                .fetch_optional(self.writer())
                .await?;
                Ok(row.map(Into::into))
            }

            async fn role(
                &self,
                org_id: uuid::Uuid,
                user_id: uuid::Uuid,
            ) -> $crate::Result<Option<keygate_core::Role>> {
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2",
                )
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(self.reader())
                .await?;
                role.as_deref().map($crate::sql::role).transpose()
            }

            async fn key_by_digest(
                &self,
                digest: &keygate_core::KeyDigest,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE digest = $1"
                ))
                .bind(&digest.as_bytes()[..])
                .fetch_optional(self.reader())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn key_by_id(&self, id: i64) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn keys_of_user(
                &self,
                user_id: uuid::Uuid,
            ) -> $crate::Result<Vec<$crate::ApiKeyRecord>> {
                let rows = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE user_id = $1 ORDER BY id"
                ))
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::keys(rows)
            }

            async fn keys_of_org(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::Result<Vec<$crate::ApiKeyRecord>> {
                let rows = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE org_id = $1 ORDER BY id"
                ))
                .bind(org_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::keys(rows)
            }

            async fn insert_key(&self, key: $crate::NewApiKey) -> $crate::Result<$crate::ApiKeyRecord> {
                let mut conn = self.writer().acquire().await?;
                Self::insert_key_on(&mut conn, key).await
            }

            async fn update_key(
                &self,
                id: i64,
                changes: $crate::KeyChanges,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "UPDATE api_keys SET name = COALESCE($2, name), mode = COALESCE($3, mode), \
                     limited_to_apps = COALESCE($4, limited_to_apps), \
                     expires_at = CASE WHEN $5 THEN $6 ELSE expires_at END, updated_at = $7 \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::key_columns!()
                ))
                .bind(id)
                .bind(changes.name.as_ref().map(|n| n.as_str()))
                .bind(changes.mode.map(|m| m.as_str()))
                .bind(changes.limited_to_apps.as_deref().map($crate::sql::apps_json))
                .bind(changes.expires_at.is_some())
                .bind(changes.expires_at.flatten())
                .bind($crate::now())
                .fetch_optional(self.writer())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_key(&self, id: i64) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_key_use(
                &self,
                uses: &[(i64, chrono::DateTime<chrono::Utc>)],
            ) -> $crate::Result<()> {
                let mut tx = self.writer().begin().await?;
                for (id, at) in uses {
                    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_store;
