//! Apps and their bundles. Every write locks its organization's row first
//! (shared; exclusively for an upload under a storage quota, so that
//! uploads take turns and each sees the bytes of those before it), then the
//! app's, and is decided over the calling key and its role as they stand
//! under those locks ([`may_write_app`]); it is audited in its
//! organization's log within its transaction. The organization's deletion
//! and membership changes hold its row exclusively: they wait for these
//! writes, and these for them. Deleting an app holds its row exclusively,
//! so that no bundle appears meanwhile and every blob key it leaves behind
//! is returned.

use async_trait::async_trait;
use keygate_core::{AppId, AppWrite};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{OrgLock, PostgresStore};
use crate::decisions::may_write_app;
use crate::error::write_error;
use crate::event::{AuditLog, Event};
use crate::model::check_quota;
use crate::params::BindModel;
use crate::rows::{APP_COLUMNS, AppRow, BUNDLE_COLUMNS, BundleRow, ORG_BUNDLE_BYTES, one, select};
use crate::{Actor, App, AppStore, AuditAction, AuthChange, Bundle, Entity, NewBundle, Result, StoreError};

/// A bundle with the organization that owns its app, whose log records it.
#[derive(sqlx::FromRow)]
struct OwnedBundle {
    #[sqlx(flatten)]
    bundle: BundleRow,
    org_id: Uuid,
}

/// `statement`, an insert or delete of bundles, as one statement that
/// returns them with their organizations.
fn with_owners(statement: &str) -> String {
    format!(
        "WITH bundle AS ({statement} RETURNING {BUNDLE_COLUMNS}) \
         SELECT bundle.*, apps.org_id FROM bundle JOIN apps USING (app_id)"
    )
}

/// The apps `filter` selects, by app id.
fn apps_where(filter: &str) -> String {
    format!("SELECT {APP_COLUMNS} FROM apps WHERE {filter} ORDER BY app_id")
}

impl PostgresStore {
    /// Begins `write` to app `app_id`: its organization's row locked as
    /// `lock` says, then the app's, then the decision. `None` when there
    /// is no such app (or it was deleted, or moved to another organization
    /// by a deletion and a creation, before the lock).
    async fn begin_app_write(
        &self,
        app_id: &AppId,
        actor: &Actor,
        write: AppWrite,
        lock: OrgLock,
    ) -> Result<Option<(Transaction<'static, Postgres>, Uuid)>> {
        let mut tx = self.pool.begin().await?;
        let org_of = "SELECT org_id FROM apps WHERE app_id = $1";
        let org_id: Option<Uuid> =
            sqlx::query_scalar(org_of).bind(app_id.as_str()).fetch_optional(&mut *tx).await?;
        let Some(org_id) = org_id else { return Ok(None) };
        match super::lock_org(&mut tx, org_id, lock).await {
            Err(StoreError::NotFound(Entity::Organization)) => return Ok(None),
            locked => locked?,
        }
        let row_lock = match write {
            AppWrite::Rename | AppWrite::Delete => "FOR UPDATE",
            AppWrite::Create | AppWrite::Upload | AppWrite::DeleteBundle => "FOR KEY SHARE",
        };
        let held: Option<Uuid> = sqlx::query_scalar(&format!("{org_of} {row_lock}"))
            .bind(app_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if held != Some(org_id) {
            return Ok(None);
        }
        may_write_app(&mut crate::sql::Db::Postgres(&mut *tx), org_id, app_id, actor, write).await?;
        Ok(Some((tx, org_id)))
    }

    /// Runs `statement` (see [`with_owners`]), a change of one bundle of
    /// `app_id` by `write`, and writes its event, naming the bundle
    /// `app_id@version`, to the log of the app's organization; commits.
    async fn change_bundle(
        &self,
        app_id: &AppId,
        statement: QueryAs<'_, Postgres, OwnedBundle, PgArguments>,
        write: AppWrite,
        action: AuditAction,
        actor: &Actor,
    ) -> Result<Option<Bundle>> {
        let Some((mut tx, _)) = self.begin_app_write(app_id, actor, write, OrgLock::Shared).await? else {
            return Ok(None);
        };
        let changed = statement.fetch_optional(&mut *tx).await;
        let Some(OwnedBundle { bundle, org_id }) =
            changed.map_err(|e| write_error(e, Entity::App, Entity::Bundle))?
        else {
            return Ok(None);
        };
        let bundle = Bundle::try_from(bundle)?;
        Postgres::log(&mut tx, org_id, Event::of_bundle(action, &bundle, actor)).await?;
        tx.commit().await?;
        Ok(Some(bundle))
    }
}

#[async_trait]
impl AppStore for PostgresStore {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App> {
        let sql = format!(
            "INSERT INTO apps (app_id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             RETURNING {APP_COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        // Not while the organization is being deleted: its deletion must see
        // every app, to return the blob keys of all their bundles.
        super::lock_org(&mut tx, org_id, OrgLock::Shared).await?;
        may_write_app(&mut crate::sql::Db::Postgres(&mut *tx), org_id, app_id, actor, AppWrite::Create)
            .await?;
        let row: AppRow = sqlx::query_as(&sql)
            .bind(app_id.as_str())
            .bind(org_id)
            .bind(name)
            .bind(crate::now())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| write_error(e, Entity::Organization, Entity::App))?;
        let app = App::try_from(row)?;
        Postgres::log(&mut tx, org_id, Event::new(AuditAction::AppCreate, app_id.as_str(), actor)).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn app(&self, app_id: &AppId) -> Result<Option<App>> {
        Ok(select::<AppRow, _, _>(&self.pool, &apps_where("app_id = $1"), app_id.as_str()).await?.pop())
    }

    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>> {
        select::<AppRow, _, _>(&self.pool, &apps_where("org_id = $1"), org_id).await
    }

    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>> {
        let sql = apps_where("org_id IN (SELECT org_id FROM memberships WHERE user_id = $1)");
        select::<AppRow, _, _>(&self.pool, &sql, user_id).await
    }

    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>> {
        let sql =
            format!("UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING {APP_COLUMNS}");
        let Some((mut tx, _)) =
            self.begin_app_write(app_id, actor, AppWrite::Rename, OrgLock::Shared).await?
        else {
            return Ok(None);
        };
        let row: Option<AppRow> = sqlx::query_as(&sql)
            .bind(app_id.as_str())
            .bind(name)
            .bind(crate::now())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(app) = one::<_, App>(row)? else {
            return Ok(None);
        };
        Postgres::log(&mut tx, app.org_id, Event::new(AuditAction::AppUpdate, app_id.as_str(), actor))
            .await?;
        tx.commit().await?;
        Ok(Some(app))
    }

    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>> {
        // The app's row held: no bundle is added to it from here on.
        let Some((mut tx, org_id)) =
            self.begin_app_write(app_id, actor, AppWrite::Delete, OrgLock::Shared).await?
        else {
            return Ok(None);
        };
        let blobs: Vec<String> = sqlx::query_scalar(
            "WITH blobs AS (DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key), \
             app AS (DELETE FROM apps WHERE app_id = $1) \
             SELECT blob_key FROM blobs",
        )
        .bind(app_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
        Postgres::log(&mut tx, org_id, Event::new(AuditAction::AppDelete, app_id.as_str(), actor)).await?;
        self.changes.commit(tx, [AuthChange::App { app_id: app_id.clone() }]).await?;
        Ok(Some(blobs))
    }

    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle> {
        let sql = with_owners(
            "INSERT INTO bundles (app_id, version, checksum, size, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        );
        let insert = sqlx::query_as(&sql).bind_new_bundle(&bundle);
        if bundle.max_org_storage.is_none() {
            let inserted = self.change_bundle(
                &bundle.app_id,
                insert,
                AppWrite::Upload,
                AuditAction::BundleUpload,
                actor,
            );
            return inserted.await?.ok_or(StoreError::NotFound(Entity::App));
        }
        let lock = OrgLock::Exclusive;
        let Some((mut tx, _)) = self.begin_app_write(&bundle.app_id, actor, AppWrite::Upload, lock).await?
        else {
            return Err(StoreError::NotFound(Entity::App));
        };
        let inserted: Option<OwnedBundle> =
            insert.fetch_optional(&mut *tx).await.map_err(|e| write_error(e, Entity::App, Entity::Bundle))?;
        let OwnedBundle { bundle: row, org_id } = inserted.ok_or(StoreError::NotFound(Entity::App))?;
        let used: i64 =
            sqlx::query_scalar(&format!("{ORG_BUNDLE_BYTES}$1")).bind(org_id).fetch_one(&mut *tx).await?;
        check_quota(used, bundle.max_org_storage)?;
        let row = Bundle::try_from(row)?;
        Postgres::log(&mut tx, org_id, Event::of_bundle(AuditAction::BundleUpload, &row, actor)).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn org_storage(&self, org_id: Uuid) -> Result<u64> {
        let used: i64 =
            sqlx::query_scalar(&format!("{ORG_BUNDLE_BYTES}$1")).bind(org_id).fetch_one(&self.pool).await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn blob_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT blob_key FROM bundles").fetch_all(&self.pool).await?)
    }

    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>> {
        let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 ORDER BY id");
        select::<BundleRow, _, _>(&self.pool, &sql, app_id.as_str()).await
    }

    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>> {
        let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 AND version = $2");
        let row: Option<BundleRow> =
            sqlx::query_as(&sql).bind(app_id.as_str()).bind(version).fetch_optional(&self.pool).await?;
        one(row)
    }

    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>> {
        let sql = with_owners("DELETE FROM bundles WHERE app_id = $1 AND version = $2");
        let delete = sqlx::query_as(&sql).bind(app_id.as_str()).bind(version);
        self.change_bundle(app_id, delete, AppWrite::DeleteBundle, AuditAction::BundleDelete, actor).await
    }
}
