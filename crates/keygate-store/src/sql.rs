//! The SQL both backends share.
//!
//! Every statement here is valid on SQLite and PostgreSQL alike (`$n`
//! placeholders, `RETURNING`, `ON CONFLICT`), and every column maps to the
//! same Rust type on both. sqlx's generic bounds over `Database` are
//! unwieldy, so [`impl_store!`] stamps the one implementation out for each
//! backend instead; a backend only supplies its pools and migrations.

use chrono::{DateTime, Utc};
use keygate_core::{AppId, KeyDigest, Mode, Role};
use uuid::Uuid;

use crate::{ApiKeyRecord, App, Bundle, Member, Membership, Organization, StoreError};

macro_rules! key_columns {
    () => {
        "id, digest, preview, mode, name, user_id, org_id, limited_to_apps, expires_at, last_used_at, \
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
    digest: Vec<u8>,
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
        let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what} of key {}", row.id));
        let mode = Mode::parse(&row.mode).ok_or_else(|| corrupt("mode"))?;
        let apps: Vec<String> =
            serde_json::from_str(&row.limited_to_apps).map_err(|_| corrupt("limited_to_apps"))?;
        let limited_to_apps = apps
            .iter()
            .map(|a| AppId::parse(a))
            .collect::<Result<_, _>>()
            .map_err(|_| corrupt("limited_to_apps"))?;
        let digest = KeyDigest::from_slice(&row.digest).ok_or_else(|| corrupt("digest"))?;
        Ok(ApiKeyRecord {
            id: row.id,
            digest,
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

impl OrgRow {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }
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

macro_rules! app_columns {
    () => {
        "app_id, org_id, name, created_at, updated_at"
    };
}
pub(crate) use app_columns;

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

macro_rules! bundle_columns {
    () => {
        "id, app_id, version, checksum, size, blob_key, created_at"
    };
}
pub(crate) use bundle_columns;

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

/// Converts every row, failing on the first that cannot be read.
pub(crate) fn all<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

pub(crate) fn role(name: &str) -> Result<Role, StoreError> {
    Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("memberships.role `{name}`")))
}

/// Maps constraint violations of a write to what they mean: a reference to
/// a `missing` row, or a `duplicate` of an existing one.
pub(crate) fn write_error(error: sqlx::Error, missing: &'static str, duplicate: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(missing);
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(duplicate);
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
                .map_err(|e| $crate::sql::write_error(e, "organization", "api key"))?;
                row.try_into()
            }
            async fn insert_membership_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
                user_id: uuid::Uuid,
                role: keygate_core::Role,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO memberships (org_id, user_id, role, created_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .bind(org_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind($crate::now())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Locks the organization's row until the transaction ends
            /// (PostgreSQL; SQLite's single writer is exclusive anyway), so
            /// that concurrent membership changes see each other.
            async fn lock_org_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
            ) -> $crate::Result<()> {
                let locked = sqlx::query("UPDATE organizations SET updated_at = updated_at WHERE id = $1")
                    .bind(org_id)
                    .execute(&mut *conn)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound("organization"));
                }
                Ok(())
            }

            async fn role_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
                user_id: uuid::Uuid,
            ) -> $crate::Result<Option<keygate_core::Role>> {
                let role: Option<String> =
                    sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                        .bind(org_id)
                        .bind(user_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                role.as_deref().map($crate::sql::role).transpose()
            }

            /// Refuses to leave the organization without a super_admin.
            async fn keep_a_super_admin_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
            ) -> $crate::Result<()> {
                let owners: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = $2")
                        .bind(org_id)
                        .bind(keygate_core::Role::SuperAdmin.as_str())
                        .fetch_one(&mut *conn)
                        .await?;
                if owners <= 1 {
                    return Err($crate::StoreError::LastSuperAdmin);
                }
                Ok(())
            }

            /// Gives `user_id` the `role` in `org_id`. With an `acting` member,
            /// whose role is read under the organization's lock, that member
            /// must administer the organization, and neither the old nor the
            /// new role may be above theirs.
            async fn apply_role_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
                user_id: uuid::Uuid,
                role: keygate_core::Role,
                acting: Option<uuid::Uuid>,
            ) -> $crate::Result<()> {
                use keygate_core::Role;
                Self::lock_org_on(&mut *conn, org_id).await?;
                let current = Self::role_on(&mut *conn, org_id, user_id).await?;
                if let Some(acting) = acting {
                    let acting = Self::acting_role_on(&mut *conn, org_id, acting).await?;
                    if !acting.covers(role) || current.is_some_and(|c| !acting.covers(c)) {
                        return Err($crate::StoreError::RoleAboveOwn);
                    }
                }
                if current == Some(Role::SuperAdmin) && role != Role::SuperAdmin {
                    Self::keep_a_super_admin_on(&mut *conn, org_id).await?;
                }
                Self::insert_membership_on(&mut *conn, org_id, user_id, role).await
            }

            /// The role of a member about to change memberships, who must
            /// still administer the organization.
            async fn acting_role_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                org_id: uuid::Uuid,
                acting: uuid::Uuid,
            ) -> $crate::Result<keygate_core::Role> {
                match Self::role_on(&mut *conn, org_id, acting).await? {
                    Some(role) if role.actions().contains(keygate_core::Action::Administer) => Ok(role),
                    Some(_) => Err($crate::StoreError::RoleAboveOwn),
                    None => Err($crate::StoreError::NotFound("organization")),
                }
            }

            async fn user_for_email_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                email: &keygate_core::Email,
            ) -> $crate::Result<uuid::Uuid> {
                // Insert-or-nothing, then read: two enrollments of one new email
                // at once both end with the same user, on either backend.
                sqlx::query("INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
                    .bind(uuid::Uuid::now_v7())
                    .bind(email.as_str())
                    .bind($crate::now())
                    .execute(&mut *conn)
                    .await?;
                Ok(sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(email.as_str())
                    .fetch_one(&mut *conn)
                    .await?)
            }

            /// A new organization owned by `owner` as its `super_admin`.
            async fn insert_org_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                name: &keygate_core::OrgName,
                owner: uuid::Uuid,
            ) -> $crate::Result<$crate::Organization> {
                let row: $crate::sql::OrgRow = sqlx::query_as(concat!(
                    "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                     RETURNING ",
                    $crate::sql::org_columns!()
                ))
                .bind(uuid::Uuid::now_v7())
                .bind(name.as_str())
                .bind($crate::now())
                .fetch_one(&mut *conn)
                .await?;
                Self::insert_membership_on(&mut *conn, row.id(), owner, keygate_core::Role::SuperAdmin).await?;
                Ok(row.into())
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
                let mut tx = self.writer().begin().await?;
                let user_id = Self::user_for_email_on(&mut *tx, &enrollee.email).await?;
                let org_id = match enrollee.enroll {
                    $crate::Enroll::NewOrganization { name } => {
                        Self::insert_org_on(&mut *tx, &name, user_id).await?.id
                    }
                    $crate::Enroll::Member { org_id, role } => {
                        Self::apply_role_on(&mut *tx, org_id, user_id, role, None).await?;
                        org_id
                    }
                };
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
                let mut conn = self.reader().acquire().await?;
                Self::role_on(&mut conn, org_id, user_id).await
            }

            async fn create_organization(
                &self,
                name: &keygate_core::OrgName,
                owner: uuid::Uuid,
            ) -> $crate::Result<$crate::Organization> {
                let mut tx = self.writer().begin().await?;
                let org = Self::insert_org_on(&mut *tx, name, owner)
                    .await
                    .map_err(|e| match e {
                        $crate::StoreError::Database(e) => $crate::sql::write_error(e, "user", "organization"),
                        e => e,
                    })?;
                tx.commit().await?;
                Ok(org)
            }

            async fn memberships(&self, user_id: uuid::Uuid) -> $crate::Result<Vec<$crate::Membership>> {
                let rows: Vec<$crate::sql::MembershipRow> = sqlx::query_as(
                    "SELECT o.id, o.name, o.require_apikey_expiration, o.max_apikey_expiration_days, \
                     o.created_at, o.updated_at, m.role FROM memberships m \
                     JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id",
                )
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn delete_organization(&self, id: uuid::Uuid) -> $crate::Result<Option<Vec<String>>> {
                let mut tx = self.writer().begin().await?;
                let blobs: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM bundles WHERE app_id IN (SELECT app_id FROM apps WHERE org_id = $1) \
                     RETURNING blob_key",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                // Apps, bundles, memberships and scoped keys go by ON DELETE CASCADE.
                let deleted = sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok((deleted.rows_affected() > 0).then_some(blobs))
            }

            async fn members(&self, org_id: uuid::Uuid) -> $crate::Result<Vec<$crate::Member>> {
                let rows: Vec<$crate::sql::MemberRow> = sqlx::query_as(
                    "SELECT u.id AS user_id, u.email, m.role FROM memberships m \
                     JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email",
                )
                .bind(org_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn set_member(
                &self,
                change: $crate::MemberChange,
                email: &keygate_core::Email,
                role: keygate_core::Role,
            ) -> $crate::Result<$crate::Member> {
                let mut tx = self.writer().begin().await?;
                let user_id = Self::user_for_email_on(&mut *tx, email).await?;
                Self::apply_role_on(&mut *tx, change.org_id, user_id, role, Some(change.acting_user)).await?;
                tx.commit().await?;
                Ok($crate::Member { user_id, email: email.as_str().to_owned(), role })
            }

            async fn remove_member(&self, change: $crate::MemberChange, user_id: uuid::Uuid) -> $crate::Result<bool> {
                use keygate_core::Role;
                let mut tx = self.writer().begin().await?;
                Self::lock_org_on(&mut *tx, change.org_id).await?;
                let acting = Self::acting_role_on(&mut *tx, change.org_id, change.acting_user).await?;
                let Some(current) = Self::role_on(&mut *tx, change.org_id, user_id).await? else {
                    return Ok(false);
                };
                if !acting.covers(current) {
                    return Err($crate::StoreError::RoleAboveOwn);
                }
                if current == Role::SuperAdmin {
                    Self::keep_a_super_admin_on(&mut *tx, change.org_id).await?;
                }
                sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .bind(change.org_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM api_keys WHERE org_id = $1 AND user_id = $2")
                    .bind(change.org_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_app(
                &self,
                org_id: uuid::Uuid,
                app_id: &keygate_core::AppId,
                name: &str,
            ) -> $crate::Result<$crate::App> {
                let row: $crate::sql::AppRow = sqlx::query_as(concat!(
                    "INSERT INTO apps (app_id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     RETURNING ",
                    $crate::sql::app_columns!()
                ))
                .bind(app_id.as_str())
                .bind(org_id)
                .bind(name)
                .bind($crate::now())
                .fetch_one(self.writer())
                .await
                .map_err(|e| $crate::sql::write_error(e, "organization", "app"))?;
                row.try_into()
            }

            async fn app(&self, app_id: &keygate_core::AppId) -> $crate::Result<Option<$crate::App>> {
                let row: Option<$crate::sql::AppRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::app_columns!(),
                    " FROM apps WHERE app_id = $1"
                ))
                .bind(app_id.as_str())
                .fetch_optional(self.reader())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn apps_of_org(&self, org_id: uuid::Uuid) -> $crate::Result<Vec<$crate::App>> {
                let rows: Vec<$crate::sql::AppRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::app_columns!(),
                    " FROM apps WHERE org_id = $1 ORDER BY app_id"
                ))
                .bind(org_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn apps_of_user(&self, user_id: uuid::Uuid) -> $crate::Result<Vec<$crate::App>> {
                let rows: Vec<$crate::sql::AppRow> = sqlx::query_as(
                    "SELECT a.app_id, a.org_id, a.name, a.created_at, a.updated_at FROM apps a \
                     JOIN memberships m ON m.org_id = a.org_id WHERE m.user_id = $1 ORDER BY a.app_id",
                )
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn rename_app(&self, app_id: &keygate_core::AppId, name: &str) -> $crate::Result<Option<$crate::App>> {
                let row: Option<$crate::sql::AppRow> = sqlx::query_as(concat!(
                    "UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING ",
                    $crate::sql::app_columns!()
                ))
                .bind(app_id.as_str())
                .bind(name)
                .bind($crate::now())
                .fetch_optional(self.writer())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_app(&self, app_id: &keygate_core::AppId) -> $crate::Result<Option<Vec<String>>> {
                let mut tx = self.writer().begin().await?;
                let blobs: Vec<String> =
                    sqlx::query_scalar("DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key")
                        .bind(app_id.as_str())
                        .fetch_all(&mut *tx)
                        .await?;
                let deleted =
                    sqlx::query("DELETE FROM apps WHERE app_id = $1").bind(app_id.as_str()).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok((deleted.rows_affected() > 0).then_some(blobs))
            }

            async fn insert_bundle(&self, bundle: $crate::NewBundle) -> $crate::Result<$crate::Bundle> {
                let row: $crate::sql::BundleRow = sqlx::query_as(concat!(
                    "INSERT INTO bundles (app_id, version, checksum, size, blob_key, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                    $crate::sql::bundle_columns!()
                ))
                .bind(bundle.app_id.as_str())
                .bind(&bundle.version)
                .bind(&bundle.checksum)
                .bind(bundle.size)
                .bind(&bundle.blob_key)
                .bind($crate::now())
                .fetch_one(self.writer())
                .await
                .map_err(|e| $crate::sql::write_error(e, "app", "bundle"))?;
                row.try_into()
            }

            async fn bundles(&self, app_id: &keygate_core::AppId) -> $crate::Result<Vec<$crate::Bundle>> {
                let rows: Vec<$crate::sql::BundleRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::bundle_columns!(),
                    " FROM bundles WHERE app_id = $1 ORDER BY id"
                ))
                .bind(app_id.as_str())
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn bundle(
                &self,
                app_id: &keygate_core::AppId,
                version: &str,
            ) -> $crate::Result<Option<$crate::Bundle>> {
                let row: Option<$crate::sql::BundleRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::bundle_columns!(),
                    " FROM bundles WHERE app_id = $1 AND version = $2"
                ))
                .bind(app_id.as_str())
                .bind(version)
                .fetch_optional(self.reader())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_bundle(
                &self,
                app_id: &keygate_core::AppId,
                version: &str,
            ) -> $crate::Result<Option<$crate::Bundle>> {
                let row: Option<$crate::sql::BundleRow> = sqlx::query_as(concat!(
                    "DELETE FROM bundles WHERE app_id = $1 AND version = $2 RETURNING ",
                    $crate::sql::bundle_columns!()
                ))
                .bind(app_id.as_str())
                .bind(version)
                .fetch_optional(self.writer())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn key_by_digest(
                &self,
                digest: &keygate_core::KeyDigest,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2)"
                ))
                .bind(&digest.as_bytes()[..])
                .bind($crate::now())
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
                let rows: Vec<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE user_id = $1 ORDER BY id"
                ))
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn keys_of_org(
                &self,
                org_id: uuid::Uuid,
            ) -> $crate::Result<Vec<$crate::ApiKeyRecord>> {
                let rows: Vec<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    " FROM api_keys WHERE org_id = $1 ORDER BY id"
                ))
                .bind(org_id)
                .fetch_all(self.reader())
                .await?;
                $crate::sql::all(rows)
            }

            async fn insert_key(&self, key: $crate::NewApiKey) -> $crate::Result<$crate::ApiKeyRecord> {
                let mut tx = self.writer().begin().await?;
                if let Some(org_id) = key.org_id {
                    // Under the organization's lock, so that a member removed at
                    // the same moment cannot be left holding a new key.
                    Self::lock_org_on(&mut *tx, org_id).await?;
                    if Self::role_on(&mut *tx, org_id, key.user_id).await?.is_none() {
                        return Err($crate::StoreError::NotFound("membership"));
                    }
                }
                let key = Self::insert_key_on(&mut *tx, key).await?;
                tx.commit().await?;
                Ok(key)
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

            async fn key_and_owner_role(
                &self,
                digest: &keygate_core::KeyDigest,
            ) -> $crate::Result<Option<($crate::ApiKeyRecord, Option<keygate_core::Role>)>> {
                let row: Option<$crate::sql::KeyRoleRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::key_columns!(),
                    ", (SELECT role FROM memberships m \
                     WHERE m.org_id = api_keys.org_id AND m.user_id = api_keys.user_id) AS owner_role \
                     FROM api_keys WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2)"
                ))
                .bind(&digest.as_bytes()[..])
                .bind($crate::now())
                .fetch_optional(self.reader())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn delete_key_by_digest(
                &self,
                digest: &keygate_core::KeyDigest,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "DELETE FROM api_keys \
                     WHERE digest = $1 OR (previous_digest = $1 AND previous_expires_at > $2) RETURNING ",
                    $crate::sql::key_columns!()
                ))
                .bind(&digest.as_bytes()[..])
                .bind($crate::now())
                .fetch_optional(self.writer())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn rotate_key(
                &self,
                id: i64,
                current: &keygate_core::KeyDigest,
                material: $crate::KeyMaterial,
                grace_until: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                let row: Option<$crate::sql::KeyRow> = sqlx::query_as(concat!(
                    "UPDATE api_keys SET \
                     previous_digest = CASE WHEN $4 THEN digest ELSE NULL END, \
                     previous_expires_at = $5, digest = $2, preview = $3, updated_at = $6 \
                     WHERE id = $1 AND digest = $7 RETURNING ",
                    $crate::sql::key_columns!()
                ))
                .bind(id)
                .bind(&material.digest.as_bytes()[..])
                .bind(&material.preview)
                .bind(grace_until.is_some())
                .bind(grace_until)
                .bind($crate::now())
                .bind(&current.as_bytes()[..])
                .fetch_optional(self.writer())
                .await
                .map_err(|e| $crate::sql::write_error(e, "api key", "api key"))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn record_audit(&self, event: $crate::NewAuditEvent) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO audit_events \
                     (org_id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1)",
                )
                .bind(event.org_id)
                .bind($crate::now())
                .bind(event.action)
                .bind(event.actor_user_id)
                .bind(event.actor_key_id)
                .bind(event.target_type)
                .bind(&event.target_id)
                .bind(&event.ip)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn audit_events(
                &self,
                org_id: uuid::Uuid,
                before: Option<i64>,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::AuditEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, at, action, actor_user_id, actor_key_id, target_type, target_id, ip \
                     FROM audit_events WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
                )
                .bind(org_id)
                .bind(before)
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn record_usage(&self, uses: &[$crate::KeyUse]) -> $crate::Result<()> {
                // In id order, so that replicas writing at once never deadlock;
                // never backwards, so that an older batch cannot undo a newer one.
                let mut uses: Vec<&$crate::KeyUse> = uses.iter().collect();
                uses.sort_unstable_by_key(|u| u.key_id);
                let mut tx = self.writer().begin().await?;
                for key in uses {
                    // Always touches the key's row, which locks it until commit:
                    // a key deleted meanwhile is skipped, never a foreign-key error.
                    let found = sqlx::query(
                        "UPDATE api_keys SET last_used_at = CASE \
                         WHEN $2 IS NOT NULL AND (last_used_at IS NULL OR last_used_at < $2) THEN $2 \
                         ELSE last_used_at END WHERE id = $1",
                    )
                    .bind(key.key_id)
                    .bind(key.last_used_at)
                    .execute(&mut *tx)
                    .await?;
                    if found.rows_affected() == 0 {
                        continue;
                    }
                    for day in &key.days {
                        sqlx::query(
                            "INSERT INTO key_usage (key_id, day, requests, denied) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (key_id, day) DO UPDATE SET \
                             requests = key_usage.requests + excluded.requests, \
                             denied = key_usage.denied + excluded.denied",
                        )
                        .bind(key.key_id)
                        .bind(day.date)
                        .bind(day.requests)
                        .bind(day.denied)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn key_usage(
                &self,
                key_id: i64,
                since: chrono::NaiveDate,
            ) -> $crate::Result<Vec<$crate::DailyUse>> {
                Ok(sqlx::query_as(
                    "SELECT day, requests, denied FROM key_usage WHERE key_id = $1 AND day >= $2 ORDER BY day",
                )
                .bind(key_id)
                .bind(since)
                .fetch_all(self.reader())
                .await?)
            }
        }
    };
}
pub(crate) use impl_store;
