//! Apps and their bundles. Every write holds its organization first
//! ([`RowLock::Share`]; exclusively for an upload under a storage quota, so
//! that uploads take turns and each sees the bytes of those before it),
//! then the app, and is decided over the calling key and its role as they
//! stand then ([`may_write_app`]); it is audited in its organization's log
//! within its transaction. An organization's deletion and membership
//! changes hold its row exclusively: they wait for these writes, and these
//! for them. Deleting an app holds its row for update, so that no bundle
//! appears meanwhile and every blob key it leaves behind is returned; it
//! announces [`AuthChange::App`], since keys limited to it reach nothing
//! there now. A bundle's bytes live in the blob store.

use async_trait::async_trait;
use keygate_core::{AppId, AppWrite};
use uuid::Uuid;

use crate::backend::{Backend, RowLock, lock_org};
use crate::decisions::may_write_app;
use crate::error::write_error;
use crate::event::{Event, log};
use crate::model::check_quota;
use crate::rows::{APP_COLUMNS, AppRow, BUNDLE_COLUMNS, BundleRow, ORG_BUNDLE_BYTES, all, one};
use crate::sql::{Db, sql};
use crate::{Actor, App, AppStore, AuditAction, AuthChange, Bundle, Entity, NewBundle, Result, StoreError};

/// The apps `filter` selects, by app id.
fn apps_where(filter: &str) -> String {
    format!("SELECT {APP_COLUMNS} FROM apps WHERE {filter} ORDER BY app_id")
}

/// Begins `write` to app `app_id`: its organization held as `lock` says,
/// then the app, then the decision; the app's organization. `None` when
/// there is no such app (or it was deleted, or moved to another
/// organization by a deletion and a creation, before it was held).
async fn app_write(
    db: &mut Db<'_>,
    app_id: &AppId,
    actor: &Actor,
    write: AppWrite,
    lock: RowLock,
) -> Result<Option<Uuid>> {
    const ORG_OF: &str = "SELECT org_id FROM apps WHERE app_id = $1";
    let org_id: Option<Uuid> = sql(ORG_OF).bind(app_id.as_str()).scalar(db).await?;
    let Some(org_id) = org_id else { return Ok(None) };
    match lock_org(db, org_id, lock).await {
        Err(StoreError::NotFound(Entity::Organization)) => return Ok(None),
        locked => locked?,
    }
    let app_lock = match write {
        AppWrite::Rename | AppWrite::Delete => RowLock::Update,
        AppWrite::Create | AppWrite::Upload | AppWrite::DeleteBundle => RowLock::KeyShare,
    };
    let held: Option<Uuid> =
        sql(&format!("{ORG_OF}{}", db.locking(app_lock))).bind(app_id.as_str()).scalar(db).await?;
    if held != Some(org_id) {
        return Ok(None);
    }
    may_write_app(db, org_id, app_id, actor, write).await?;
    Ok(Some(org_id))
}

#[async_trait]
impl<B: Backend> AppStore for B {
    async fn create_app(&self, org_id: Uuid, app_id: &AppId, name: &str, actor: &Actor) -> Result<App> {
        let (app_id, name, actor) = (app_id.clone(), name.to_owned(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                // Not while the organization is being deleted: its deletion
                // must see every app, to return the blob keys of all their
                // bundles.
                lock_org(&mut db, org_id, RowLock::Share).await?;
                may_write_app(&mut db, org_id, &app_id, &actor, AppWrite::Create).await?;
                let text = format!(
                    "INSERT INTO apps (app_id, org_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     RETURNING {APP_COLUMNS}"
                );
                let row: AppRow = sql(&text)
                    .bind(app_id.as_str())
                    .bind(org_id)
                    .bind(name)
                    .bind(crate::now())
                    .fetch_one(&mut db)
                    .await
                    .map_err(|e| write_error(e, Entity::Organization, Entity::App))?;
                let app = App::try_from(row)?;
                log(&mut db, org_id, Event::new(AuditAction::AppCreate, app_id.as_str(), &actor)).await?;
                Ok((app, vec![]))
            })
        })
        .await
    }

    async fn app(&self, app_id: &AppId) -> Result<Option<App>> {
        one::<AppRow, _>(
            sql(&apps_where("app_id = $1")).bind(app_id.as_str()).fetch_optional(&mut self.reads()).await?,
        )
    }

    async fn apps_of_org(&self, org_id: Uuid) -> Result<Vec<App>> {
        all::<AppRow, _>(sql(&apps_where("org_id = $1")).bind(org_id).fetch_all(&mut self.reads()).await?)
    }

    async fn apps_of_user(&self, user_id: Uuid) -> Result<Vec<App>> {
        let text = apps_where("org_id IN (SELECT org_id FROM memberships WHERE user_id = $1)");
        all::<AppRow, _>(sql(&text).bind(user_id).fetch_all(&mut self.reads()).await?)
    }

    async fn rename_app(&self, app_id: &AppId, name: &str, actor: &Actor) -> Result<Option<App>> {
        let (app_id, name, actor) = (app_id.clone(), name.to_owned(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                let write = app_write(&mut db, &app_id, &actor, AppWrite::Rename, RowLock::Share);
                let Some(org_id) = write.await? else { return Ok((None, vec![])) };
                let text = format!(
                    "UPDATE apps SET name = $2, updated_at = $3 WHERE app_id = $1 RETURNING {APP_COLUMNS}"
                );
                let row: Option<AppRow> = sql(&text)
                    .bind(app_id.as_str())
                    .bind(name)
                    .bind(crate::now())
                    .fetch_optional(&mut db)
                    .await?;
                let app = one::<_, App>(row)?;
                if app.is_some() {
                    log(&mut db, org_id, Event::new(AuditAction::AppUpdate, app_id.as_str(), &actor)).await?;
                }
                Ok((app, vec![]))
            })
        })
        .await
    }

    async fn delete_app(&self, app_id: &AppId, actor: &Actor) -> Result<Option<Vec<String>>> {
        let (app_id, actor) = (app_id.clone(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                // The app's row held: no bundle is added to it from here on.
                let write = app_write(&mut db, &app_id, &actor, AppWrite::Delete, RowLock::Share);
                let Some(org_id) = write.await? else { return Ok((None, vec![])) };
                let blobs: Vec<(String,)> = sql("DELETE FROM bundles WHERE app_id = $1 RETURNING blob_key")
                    .bind(app_id.as_str())
                    .fetch_all(&mut db)
                    .await?;
                sql("DELETE FROM apps WHERE app_id = $1").bind(app_id.as_str()).execute(&mut db).await?;
                log(&mut db, org_id, Event::new(AuditAction::AppDelete, app_id.as_str(), &actor)).await?;
                let blobs = blobs.into_iter().map(|(blob,)| blob).collect();
                Ok((Some(blobs), vec![AuthChange::App { app_id }]))
            })
        })
        .await
    }

    async fn insert_bundle(&self, bundle: NewBundle, actor: &Actor) -> Result<Bundle> {
        let actor = *actor;
        self.transact(move |mut db| {
            Box::pin(async move {
                let lock = if bundle.max_org_storage.is_some() { RowLock::Exclusive } else { RowLock::Share };
                let write = app_write(&mut db, &bundle.app_id, &actor, AppWrite::Upload, lock);
                let org_id = write.await?.ok_or(StoreError::NotFound(Entity::App))?;
                let text = format!(
                    "INSERT INTO bundles (app_id, version, checksum, size, blob_key, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {BUNDLE_COLUMNS}"
                );
                let row: BundleRow = sql(&text)
                    .bind(bundle.app_id.as_str())
                    .bind(bundle.version.as_str())
                    .bind(bundle.checksum.as_str())
                    .bind(bundle.size)
                    .bind(bundle.blob_key.as_str())
                    .bind(crate::now())
                    .fetch_one(&mut db)
                    .await
                    .map_err(|e| write_error(e, Entity::App, Entity::Bundle))?;
                if bundle.max_org_storage.is_some() {
                    // After the insert: the transaction is rolled back if the
                    // organization is now over its quota.
                    let used: (i64,) =
                        sql(&format!("{ORG_BUNDLE_BYTES}$1")).bind(org_id).fetch_one(&mut db).await?;
                    check_quota(used.0, bundle.max_org_storage)?;
                }
                let bundle = Bundle::try_from(row)?;
                log(&mut db, org_id, Event::of_bundle(AuditAction::BundleUpload, &bundle, &actor)).await?;
                Ok((bundle, vec![]))
            })
        })
        .await
    }

    async fn org_storage(&self, org_id: Uuid) -> Result<u64> {
        let used: (i64,) =
            sql(&format!("{ORG_BUNDLE_BYTES}$1")).bind(org_id).fetch_one(&mut self.reads()).await?;
        Ok(u64::try_from(used.0).unwrap_or(0))
    }

    async fn blob_keys(&self) -> Result<Vec<String>> {
        let keys: Vec<(String,)> = sql("SELECT blob_key FROM bundles").fetch_all(&mut self.reads()).await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }

    async fn bundles(&self, app_id: &AppId) -> Result<Vec<Bundle>> {
        let text = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 ORDER BY id");
        all::<BundleRow, _>(sql(&text).bind(app_id.as_str()).fetch_all(&mut self.reads()).await?)
    }

    async fn bundle(&self, app_id: &AppId, version: &str) -> Result<Option<Bundle>> {
        let text = format!("SELECT {BUNDLE_COLUMNS} FROM bundles WHERE app_id = $1 AND version = $2");
        one::<BundleRow, _>(
            sql(&text).bind(app_id.as_str()).bind(version).fetch_optional(&mut self.reads()).await?,
        )
    }

    async fn delete_bundle(&self, app_id: &AppId, version: &str, actor: &Actor) -> Result<Option<Bundle>> {
        let (app_id, version, actor) = (app_id.clone(), version.to_owned(), *actor);
        self.transact(move |mut db| {
            Box::pin(async move {
                let write = app_write(&mut db, &app_id, &actor, AppWrite::DeleteBundle, RowLock::Share);
                let Some(org_id) = write.await? else { return Ok((None, vec![])) };
                let text = format!(
                    "DELETE FROM bundles WHERE app_id = $1 AND version = $2 RETURNING {BUNDLE_COLUMNS}"
                );
                let row: Option<BundleRow> =
                    sql(&text).bind(app_id.as_str()).bind(version).fetch_optional(&mut db).await?;
                let Some(bundle) = one::<_, Bundle>(row)? else { return Ok((None, vec![])) };
                log(&mut db, org_id, Event::of_bundle(AuditAction::BundleDelete, &bundle, &actor)).await?;
                Ok((Some(bundle), vec![]))
            })
        })
        .await
    }
}
