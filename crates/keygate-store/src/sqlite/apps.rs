//! Apps and their bundles. Every change is audited in its app's
//! organization inside its own transaction; deleting an app announces
//! [`AuthChange::App`], since keys limited to it reach nothing there now.
//! A bundle's bytes live in the blob store: deletes hand back the blob keys.

use async_trait::async_trait;
use keygate_core::AppId;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::{SqliteStore, audit};
use crate::error::{Entity, write_error};
use crate::rows::{self, AppRow, BundleRow, app_columns, bundle_columns};
use crate::{Actor, App, AppStore, AuditAction, AuthChange, Bundle, NewBundle, Result};

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App> {
        let mut tx = self.begin().await?;
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
        audit::record(&mut tx, org_id, AuditAction::AppCreate, actor, app_id.as_str()).await?;
        self.commit(tx, []).await?;
        Ok(app)
    }

    async fn app(&self, app_id: &AppId) -> Result<Option<App>> {
        let row: Option<AppRow> =
            sqlx::query_as(concat!("SELECT ", app_columns!(), " FROM apps WHERE app_id = $1"))
                .bind(app_id.as_str())
                .fetch_optional(&self.reader)
                .await?;
        rows::one(row)
    }

    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>> {
        let rows: Vec<AppRow> = sqlx::query_as(concat!(
            "SELECT ",
            app_columns!(),
            " FROM apps WHERE org_id = $1 ORDER BY app_id"
        ))
        .bind(org_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>> {
        let rows: Vec<AppRow> = sqlx::query_as(
            "SELECT a.app_id, a.org_id, a.name, a.created_at, a.updated_at FROM apps a \
             JOIN memberships m ON m.org_id = a.org_id WHERE m.user_id = $1 ORDER BY a.app_id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>> {
        let mut tx = self.begin().await?;
        let row: Option<AppRow> = sqlx::query_as(concat!(
            "UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING ",
            app_columns!()
        ))
        .bind(app_id.as_str())
        .bind(name)
        .bind(crate::now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(app) = rows::one::<_, App>(row)? else {
            return Ok(None);
        };
        audit::record(&mut tx, app.org_id, AuditAction::AppUpdate, actor, app_id.as_str()).await?;
        self.commit(tx, []).await?;
        Ok(Some(app))
    }

    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>> {
        let mut tx = self.begin().await?;
        let blobs: Vec<String> =
            sqlx::query_scalar("DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key")
                .bind(app_id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        let org_id: Option<Uuid> = sqlx::query_scalar("DELETE FROM apps WHERE app_id = $1 RETURNING org_id")
            .bind(app_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(org_id) = org_id else {
            return Ok(None);
        };
        audit::record(&mut tx, org_id, AuditAction::AppDelete, actor, app_id.as_str()).await?;
        self.commit(tx, [AuthChange::App { app_id: app_id.clone() }]).await?;
        Ok(Some(blobs))
    }

    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle> {
        let mut tx = self.begin().await?;
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
        let org_id = org_of_app(&mut tx, &bundle.app_id).await?;
        audit::record(&mut tx, org_id, AuditAction::BundleUpload, actor, &bundle_target(&bundle)).await?;
        self.commit(tx, []).await?;
        Ok(bundle)
    }

    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>> {
        let rows: Vec<BundleRow> = sqlx::query_as(concat!(
            "SELECT ",
            bundle_columns!(),
            " FROM bundles WHERE app_id = $1 ORDER BY id"
        ))
        .bind(app_id.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows::all(rows)
    }

    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>> {
        let row: Option<BundleRow> = sqlx::query_as(concat!(
            "SELECT ",
            bundle_columns!(),
            " FROM bundles WHERE app_id = $1 AND version = $2"
        ))
        .bind(app_id.as_str())
        .bind(version)
        .fetch_optional(&self.reader)
        .await?;
        rows::one(row)
    }

    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>> {
        let mut tx = self.begin().await?;
        let row: Option<BundleRow> = sqlx::query_as(concat!(
            "DELETE FROM bundles WHERE app_id = $1 AND version = $2 RETURNING ",
            bundle_columns!()
        ))
        .bind(app_id.as_str())
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(bundle) = rows::one::<_, Bundle>(row)? else {
            return Ok(None);
        };
        let org_id = org_of_app(&mut tx, app_id).await?;
        audit::record(&mut tx, org_id, AuditAction::BundleDelete, actor, &bundle_target(&bundle)).await?;
        self.commit(tx, []).await?;
        Ok(Some(bundle))
    }
}

async fn org_of_app(conn: &mut SqliteConnection, app_id: &AppId) -> Result<Uuid> {
    Ok(sqlx::query_scalar("SELECT org_id FROM apps WHERE app_id = $1")
        .bind(app_id.as_str())
        .fetch_one(&mut *conn)
        .await?)
}

/// A bundle as the audit log names it: `app_id@version`.
fn bundle_target(bundle: &Bundle) -> String {
    format!("{}@{}", bundle.app_id.as_str(), bundle.version)
}
