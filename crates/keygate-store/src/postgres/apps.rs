//! Apps and their bundles. Every write is audited in its organization's log
//! within its transaction. Deleting an app locks its row first, and an app is
//! created under a shared lock of its organization (which the organization's
//! deletion excludes), so that no bundle appears meanwhile and every blob key
//! a deletion leaves behind is returned.

use async_trait::async_trait;
use keygate_core::AppId;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{PostgresStore, audit};
use crate::error::write_error;
use crate::rows::{AppRow, BundleRow, all, app_columns, bundle_columns, one};
use crate::{Actor, App, AppStore, AuditAction, AuthChange, Bundle, Entity, NewBundle, Result, StoreError};

/// The organization that owns the app, whose log records its bundles.
async fn owner_of(conn: &mut PgConnection, app_id: &AppId) -> Result<Uuid> {
    let org_id: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM apps WHERE app_id = $1")
        .bind(app_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    org_id.ok_or(StoreError::NotFound(Entity::App))
}

fn bundle_target(bundle: &Bundle) -> String {
    format!("{}@{}", bundle.app_id.as_str(), bundle.version)
}

#[async_trait]
impl AppStore for PostgresStore {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App> {
        let mut tx = self.pool.begin().await?;
        // Not while the organization is being deleted: its deletion must see
        // every app, to return the blob keys of all their bundles.
        super::share_org(&mut tx, org_id).await?;
        let row: AppRow = sqlx::query_as(concat!(
            "INSERT INTO apps (app_id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             RETURNING ",
            app_columns!()
        ))
        .bind(app_id.as_str())
        .bind(org_id)
        .bind(name)
        .bind(crate::now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, Entity::Organization, Entity::App))?;
        let app = App::try_from(row)?;
        audit::record(&mut tx, app.org_id, AuditAction::AppCreate, app.app_id.as_str(), actor).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn app(&self, app_id: &AppId) -> Result<Option<App>> {
        let row: Option<AppRow> =
            sqlx::query_as(concat!("SELECT ", app_columns!(), " FROM apps WHERE app_id = $1"))
                .bind(app_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        one(row)
    }

    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>> {
        let rows: Vec<AppRow> = sqlx::query_as(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE org_id = $1 ORDER BY app_id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>> {
        let rows: Vec<AppRow> = sqlx::query_as(
            "SELECT a.app_id, a.org_id, a.name, a.created_at, a.updated_at FROM apps a \
             JOIN memberships m ON m.org_id = a.org_id WHERE m.user_id = $1 ORDER BY a.app_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<AppRow> = sqlx::query_as(concat!(
            "UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING ",
            app_columns!()
        ))
        .bind(app_id.as_str())
        .bind(name)
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(app) = one::<_, App>(row)? else {
            return Ok(None);
        };
        audit::record(&mut tx, app.org_id, AuditAction::AppUpdate, app.app_id.as_str(), actor).await?;
        tx.commit().await?;
        Ok(Some(app))
    }

    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        let org_id: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM apps WHERE app_id = $1 FOR UPDATE")
            .bind(app_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(org_id) = org_id else {
            return Ok(None);
        };
        let blobs: Vec<String> =
            sqlx::query_scalar("DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key")
                .bind(app_id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM apps WHERE app_id = $1").bind(app_id.as_str()).execute(&mut *tx).await?;
        audit::record(&mut tx, org_id, AuditAction::AppDelete, app_id.as_str(), actor).await?;
        tx.commit().await?;
        self.changes.announce([AuthChange::App { app_id: app_id.clone() }]);
        Ok(Some(blobs))
    }

    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle> {
        let mut tx = self.pool.begin().await?;
        let row: BundleRow = sqlx::query_as(concat!(
            "INSERT INTO bundles (app_id, version, checksum, size, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            bundle_columns!()
        ))
        .bind(bundle.app_id.as_str())
        .bind(&bundle.version)
        .bind(&bundle.checksum)
        .bind(bundle.size)
        .bind(&bundle.blob_key)
        .bind(crate::now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| write_error(e, Entity::App, Entity::Bundle))?;
        let bundle = Bundle::try_from(row)?;
        // The insert holds a share lock on the app's row: it is still there.
        let org_id = owner_of(&mut tx, &bundle.app_id).await?;
        audit::record(&mut tx, org_id, AuditAction::BundleUpload, &bundle_target(&bundle), actor).await?;
        tx.commit().await?;
        Ok(bundle)
    }

    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>> {
        let rows: Vec<BundleRow> = sqlx::query_as(concat!(
            "SELECT ",
            bundle_columns!(),
            " FROM bundles WHERE app_id = $1 ORDER BY id"
        ))
        .bind(app_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>> {
        let row: Option<BundleRow> = sqlx::query_as(concat!(
            "SELECT ",
            bundle_columns!(),
            " FROM bundles WHERE app_id = $1 AND version = $2"
        ))
        .bind(app_id.as_str())
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        one(row)
    }

    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<BundleRow> = sqlx::query_as(concat!(
            "DELETE FROM bundles WHERE app_id = $1 AND version = $2 RETURNING ",
            bundle_columns!()
        ))
        .bind(app_id.as_str())
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(bundle) = one::<_, Bundle>(row)? else {
            return Ok(None);
        };
        let org_id = owner_of(&mut tx, &bundle.app_id).await?;
        audit::record(&mut tx, org_id, AuditAction::BundleDelete, &bundle_target(&bundle), actor).await?;
        tx.commit().await?;
        Ok(Some(bundle))
    }
}
