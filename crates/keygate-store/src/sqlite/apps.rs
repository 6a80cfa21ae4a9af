//! Apps and their bundles. Every change is decided over the calling key
//! and its role as they stand in the change's own transaction
//! ([`may_write_app`]), and audited in its app's organization there;
//! deleting an app announces [`AuthChange::App`], since keys limited to it
//! reach nothing there now. A bundle's bytes live in the blob store:
//! deletes hand back the blob keys.

use async_trait::async_trait;
use keygate_core::{AppId, AppWrite};
use sqlx::Sqlite;
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use crate::decisions::may_write_app;
use crate::error::{Entity, write_error};
use crate::event::{AuditLog, Event};
use crate::model::check_quota;
use crate::params::BindModel;
use crate::rows::{self, APP_COLUMNS, AppRow, BUNDLE_COLUMNS, BundleRow, ORG_BUNDLE_BYTES, select};
use crate::{Actor, App, AppStore, AuditAction, AuthChange, Bundle, NewBundle, Result, StoreError};

/// The organization of app `app_id`, if there is one.
async fn org_of(conn: &mut SqliteConnection, app_id: &AppId) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT org_id FROM apps WHERE app_id = $1")
        .bind(app_id.as_str())
        .fetch_optional(&mut *conn)
        .await?)
}

/// The apps `filter` selects, by app id.
fn apps_where(filter: &str) -> String {
    format!("SELECT {APP_COLUMNS} FROM apps WHERE {filter} ORDER BY app_id")
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App> {
        let sql = format!(
            "INSERT INTO apps (app_id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             RETURNING {APP_COLUMNS}"
        );
        let (app_id, name, actor) = (app_id.clone(), name.to_owned(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                may_write_app(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    org_id,
                    &app_id,
                    &actor,
                    AppWrite::Create,
                )
                .await?;
                let row: AppRow = sqlx::query_as(&sql)
                    .bind(app_id.as_str())
                    .bind(org_id)
                    .bind(name)
                    .bind(crate::now())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| write_error(e, Entity::Organization, Entity::App))?;
                let app = App::try_from(row)?;
                Sqlite::log(conn, org_id, Event::new(AuditAction::AppCreate, app_id.as_str(), &actor))
                    .await?;
                Ok((app, vec![]))
            })
        })
        .await
    }

    async fn app(&self, app_id: &AppId) -> Result<Option<App>> {
        Ok(select::<AppRow, _, _>(&self.reader, &apps_where("app_id = $1"), app_id.as_str()).await?.pop())
    }

    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>> {
        select::<AppRow, _, _>(&self.reader, &apps_where("org_id = $1"), org_id).await
    }

    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>> {
        let sql = apps_where("org_id IN (SELECT org_id FROM memberships WHERE user_id = $1)");
        select::<AppRow, _, _>(&self.reader, &sql, user_id).await
    }

    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>> {
        let sql =
            format!("UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING {APP_COLUMNS}");
        let (app_id, name, actor) = (app_id.clone(), name.to_owned(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                let Some(org_id) = org_of(conn, &app_id).await? else { return Ok((None, vec![])) };
                may_write_app(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    org_id,
                    &app_id,
                    &actor,
                    AppWrite::Rename,
                )
                .await?;
                let row: Option<AppRow> = sqlx::query_as(&sql)
                    .bind(app_id.as_str())
                    .bind(name)
                    .bind(crate::now())
                    .fetch_optional(&mut *conn)
                    .await?;
                let app = rows::one::<_, App>(row)?;
                if let Some(app) = &app {
                    let event = Event::new(AuditAction::AppUpdate, app_id.as_str(), &actor);
                    Sqlite::log(conn, app.org_id, event).await?;
                }
                Ok((app, vec![]))
            })
        })
        .await
    }

    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>> {
        let (app_id, actor) = (app_id.clone(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                let Some(org_id) = org_of(conn, &app_id).await? else { return Ok((None, vec![])) };
                may_write_app(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    org_id,
                    &app_id,
                    &actor,
                    AppWrite::Delete,
                )
                .await?;
                let blobs: Vec<String> =
                    sqlx::query_scalar("DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key")
                        .bind(app_id.as_str())
                        .fetch_all(&mut *conn)
                        .await?;
                sqlx::query("DELETE FROM apps WHERE app_id = $1")
                    .bind(app_id.as_str())
                    .execute(&mut *conn)
                    .await?;
                Sqlite::log(conn, org_id, Event::new(AuditAction::AppDelete, app_id.as_str(), &actor))
                    .await?;
                Ok((Some(blobs), vec![AuthChange::App { app_id }]))
            })
        })
        .await
    }

    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle> {
        let sql = format!(
            "INSERT INTO bundles (app_id, version, checksum, size, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {BUNDLE_COLUMNS}"
        );
        let actor = *actor;
        self.write(move |conn| {
            Box::pin(async move {
                let org_id = org_of(conn, &bundle.app_id).await?.ok_or(StoreError::NotFound(Entity::App))?;
                may_write_app(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    org_id,
                    &bundle.app_id,
                    &actor,
                    AppWrite::Upload,
                )
                .await?;
                let row = sqlx::query_as::<_, BundleRow>(&sql)
                    .bind_new_bundle(&bundle)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| write_error(e, Entity::App, Entity::Bundle))?;
                if bundle.max_org_storage.is_some() {
                    // After the insert, in the job's savepoint: the writer rolls
                    // it back if the organization is now over its quota.
                    let used: i64 = sqlx::query_scalar(&format!("{ORG_BUNDLE_BYTES}$1"))
                        .bind(org_id)
                        .fetch_one(&mut *conn)
                        .await?;
                    check_quota(used, bundle.max_org_storage)?;
                }
                let bundle = Bundle::try_from(row)?;
                Sqlite::log(conn, org_id, Event::of_bundle(AuditAction::BundleUpload, &bundle, &actor))
                    .await?;
                Ok((bundle, vec![]))
            })
        })
        .await
    }

    async fn org_storage(&self, org_id: Uuid) -> Result<u64> {
        let used: i64 =
            sqlx::query_scalar(&format!("{ORG_BUNDLE_BYTES}$1")).bind(org_id).fetch_one(&self.reader).await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn blob_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT blob_key FROM bundles").fetch_all(&self.reader).await?)
    }

    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>> {
        let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 ORDER BY id");
        select::<BundleRow, _, _>(&self.reader, &sql, app_id.as_str()).await
    }

    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>> {
        let sql = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 AND version = $2");
        let row: Option<BundleRow> =
            sqlx::query_as(&sql).bind(app_id.as_str()).bind(version).fetch_optional(&self.reader).await?;
        rows::one(row)
    }

    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>> {
        let sql =
            format!("DELETE FROM bundles WHERE app_id = $1 AND version = $2 RETURNING {BUNDLE_COLUMNS}");
        let (app_id, version, actor) = (app_id.clone(), version.to_owned(), *actor);
        self.write(move |conn| {
            Box::pin(async move {
                let Some(org_id) = org_of(conn, &app_id).await? else { return Ok((None, vec![])) };
                may_write_app(
                    &mut crate::sql::Db::Sqlite(&mut *conn),
                    org_id,
                    &app_id,
                    &actor,
                    AppWrite::DeleteBundle,
                )
                .await?;
                let row: Option<BundleRow> = sqlx::query_as(&sql)
                    .bind(app_id.as_str())
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(bundle) = rows::one(row)? else {
                    return Ok((None, vec![]));
                };
                Sqlite::log(conn, org_id, Event::of_bundle(AuditAction::BundleDelete, &bundle, &actor))
                    .await?;
                Ok((Some(bundle), vec![]))
            })
        })
        .await
    }
}
