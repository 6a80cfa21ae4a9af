//! `/app`: the apps of an organization, named by reverse-domain `app_id`.
//!
//! Reading needs R; creating, renaming and deleting W. An app-limited key
//! sees and touches only its apps: any other answers 404, as if absent.

use crate::admission::Admission;
use crate::state::blobs::BlobStore;
use axum::Json;
use axum::extract::{Path, State};
use keygate_core::authz::{Action, AppWrite, Target};
use keygate_core::{AppId, KeyName};
use keygate_store::App;
use keygate_store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Data, ReadErrors, SUCCESS, Success, Timestamp, WriteErrors};
use crate::admission::caller::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, RawBody, parse_org_id, require_app_id, require_org_id};

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    #[schema(value_type = String, example = "com.example.app")]
    app_id: AppId,
    name: String,
    org_id: Uuid,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<App> for AppView {
    fn from(app: App) -> Self {
        Self {
            app_id: app.app_id,
            name: app.name,
            org_id: app.org_id,
            created_at: Timestamp(app.created_at),
            updated_at: Timestamp(app.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OneApp {
    app: AppView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppQuery {
    org_id: Option<String>,
}

impl IntoParams for AppQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![super::schema::query(
            "org_id",
            false,
            super::schema::uuid(),
            "Only this organization's apps; by default those of every organization the caller belongs to",
        )]
    }
}

/// The app named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    #[param(schema_with = super::schema::app_id)]
    #[allow(dead_code, reason = "describes the path; read by the handlers' `Path<String>`")]
    app_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateApp {
    #[schema(required = true, schema_with = super::schema::app_id)]
    app_id: Option<String>,
    #[schema(required = true, schema_with = super::schema::name)]
    name: Option<String>,
    #[schema(required = true, schema_with = super::schema::uuid)]
    org_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameApp {
    #[schema(required = true, schema_with = super::schema::name)]
    name: Option<String>,
}

/// App names follow the rules of key names: 1–200 characters, no control characters.
fn parse_app_name(raw: Option<&str>) -> ApiResult<String> {
    let raw = raw.ok_or_else(|| ApiError::bad_request("name_required", "name is required"))?;
    KeyName::parse(raw)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

/// The app named in a path, if the caller may perform `action` on it.
pub async fn find_app(admission: &Admission, caller: &Caller, raw: &str, action: Action) -> ApiResult<App> {
    let app_id = AppId::parse(raw).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string()))?;
    let app = admission.store.app(&app_id).await?.ok_or_else(ApiError::app_not_found)?;
    caller.require(admission, Target::app(app.org_id, &app.app_id), action, ApiError::app_not_found).await?;
    Ok(app)
}

#[utoipa::path(
    get,
    path = "/app",
    tag = "app",
    params(AppQuery),
    responses(
        (status = 200, description = "Apps the key sees (needs R)", body = Data<AppView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<AppQuery>,
) -> ApiResult<Json<Data<AppView>>> {
    let apps = match query.org_id.as_deref() {
        Some(raw) => {
            let org_id = parse_org_id(raw)?;
            caller.require(&admission, Target::org(org_id), Action::Read, ApiError::org_not_found).await?;
            store.apps_of_org(org_id).await?
        }
        None => store.apps_of_user(caller.user_id()).await?,
    };
    let mut roles = std::collections::HashMap::new();
    let mut data = Vec::with_capacity(apps.len());
    for app in apps {
        let role = match roles.get(&app.org_id) {
            Some(role) => *role,
            None => *roles.entry(app.org_id).or_insert(caller.role_in(&admission, app.org_id).await?),
        };
        if caller.principal.decide(role, Target::app(app.org_id, &app.app_id), Action::Read).is_allowed() {
            data.push(AppView::from(app));
        }
    }
    Ok(Json(Data { data }))
}

#[utoipa::path(
    get,
    path = "/app/{app_id}",
    tag = "app",
    params(AppPath),
    responses(
        (status = 200, description = "The app (needs R)", body = OneApp),
        ReadErrors,
    ),
)]
pub async fn get(
    State(admission): State<Admission>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<OneApp>> {
    let app = find_app(&admission, &caller, &app_id, Action::Read).await?;
    Ok(Json(OneApp { app: app.into() }))
}

#[utoipa::path(
    post,
    path = "/app",
    tag = "app",
    request_body = CreateApp,
    responses(
        (status = 200, description = "The new app (needs W)", body = OneApp),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn create(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    body: RawBody,
) -> ApiResult<Json<OneApp>> {
    let request = body
        .json::<CreateApp>()?
        .ok_or_else(|| ApiError::invalid_body("Send {\"app_id\", \"name\", \"org_id\"}"))?;
    let app_id = require_app_id(request.app_id.as_deref())?;
    let name = parse_app_name(request.name.as_deref())?;
    let org_id = require_org_id(request.org_id.as_deref())?;
    let action = AppWrite::Create.action();
    caller.require(&admission, Target::app(org_id, &app_id), action, ApiError::org_not_found).await?;
    let app = store.create_app(org_id, &app_id, &name, &caller.actor()).await?;
    tracing::info!(app_id = %app.app_id, %org_id, "app created");
    Ok(Json(OneApp { app: app.into() }))
}

#[utoipa::path(
    put,
    path = "/app/{app_id}",
    tag = "app",
    params(AppPath),
    request_body = RenameApp,
    responses(
        (status = 200, description = "The renamed app (needs W)", body = OneApp),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn rename(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Path(app_id): Path<String>,
    body: RawBody,
) -> ApiResult<Json<OneApp>> {
    let app = find_app(&admission, &caller, &app_id, AppWrite::Rename.action()).await?;
    let request = body
        .json::<RenameApp>()?
        .ok_or_else(|| ApiError::bad_request("name_required", "name is required"))?;
    let name = parse_app_name(request.name.as_deref())?;
    let app =
        store.rename_app(&app.app_id, &name, &caller.actor()).await?.ok_or_else(ApiError::app_not_found)?;
    Ok(Json(OneApp { app: app.into() }))
}

#[utoipa::path(
    delete,
    path = "/app/{app_id}",
    tag = "app",
    params(AppPath),
    responses(
        (status = 200, description = "Deleted with its bundles (needs W)", body = Success),
        ReadErrors,
    ),
)]
pub async fn delete(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    State(blobs): State<BlobStore>,
    caller: Caller,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Success>> {
    let app = find_app(&admission, &caller, &app_id, AppWrite::Delete.action()).await?;
    let (app_id, actor) = (app.app_id.clone(), caller.actor());
    // The rows, then the bytes, even if the client leaves meanwhile.
    let deleted = crate::state::blobs::to_completion(async move {
        let removed = store.delete_app(&app_id, &actor).await?;
        if let Some(removed) = &removed {
            blobs.remove(removed).await;
        }
        Ok::<_, keygate_store::StoreError>(removed)
    });
    let blobs = deleted.await?.ok_or_else(ApiError::app_not_found)?;
    tracing::info!(app_id = %app.app_id, bundles = blobs.len(), "app deleted");
    Ok(Json(SUCCESS))
}
