//! `/bundle`: the uploaded builds of an app, by semver version.
//!
//! Listing and downloading need R, uploading U, deleting W, each on the app.
//! The bytes stream into the blob store (SHA-256 and size computed on the
//! way); the row that lists a bundle is written only once the bytes are
//! safely on disk.

use crate::admission::Admission;
use crate::state::BundleLimits;
use crate::state::blobs::BlobStore;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keygate_core::authz::{Action, AppWrite};
use keygate_core::rules;
use keygate_store::Store;
use keygate_store::{Bundle, NewBundle, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::app::find_app;
use super::schema::MAX_VERSION_LEN;
use super::{Data, ReadErrors, SUCCESS, Success, Timestamp, WriteErrors};
use crate::admission::caller::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Params, required};
use crate::state::blobs::{BlobError, to_completion};

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleView {
    id: i64,
    app_id: String,
    version: String,
    /// Hex SHA-256 of the bytes.
    checksum: String,
    size: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<Bundle> for BundleView {
    fn from(b: Bundle) -> Self {
        Self {
            id: b.id,
            app_id: b.app_id.as_str().to_owned(),
            version: b.version,
            checksum: b.checksum,
            size: b.size,
            created_at: Timestamp(b.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OneBundle {
    bundle: BundleView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    app_id: Option<String>,
    version: Option<String>,
}

impl IntoParams for BundleQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use super::schema::{app_id, query, version};
        vec![
            query("app_id", true, app_id(), "The app"),
            query("version", true, version(), "A semantic version such as 1.2.3 or 1.0.0-beta.1"),
        ]
    }
}

/// The largest major, minor or patch number: 19 digits.
const MAX_VERSION_NUMBER: u64 = 9_999_999_999_999_999_999;

impl BundleQuery {
    fn app_id(&self) -> ApiResult<&str> {
        required(self.app_id.as_deref())
            .ok_or_else(|| ApiError::bad_request("app_id_required", "app_id is required"))
    }

    /// The version, which must be semantic (`1.2.3`, `1.0.0-beta.1`).
    fn version(&self) -> ApiResult<String> {
        let untrimmed = self.version.as_deref().unwrap_or_default();
        let raw = required(self.version.as_deref())
            .ok_or_else(|| ApiError::bad_request("version_required", "version is required"))?;
        let parsed = semver::Version::parse(raw)
            .ok()
            .filter(|v| [v.major, v.minor, v.patch].iter().all(|&n| n <= MAX_VERSION_NUMBER));
        if untrimmed.chars().count() > MAX_VERSION_LEN || parsed.is_none() {
            return Err(ApiError::bad_request(
                "invalid_version",
                format!(
                    "version must be a semantic version such as 1.2.3 or 1.0.0-beta.1, at most {MAX_VERSION_LEN} characters"
                ),
            ));
        }
        Ok(raw.to_owned())
    }
}

#[utoipa::path(
    get,
    path = "/bundle",
    tag = "bundle",
    params(BundleQuery),
    responses(
        (status = 200, description = "The app's bundles (needs R)", body = Data<BundleView>),
        ReadErrors,
    ),
)]
pub async fn list(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    caller: Caller,
    Params(query): Params<BundleQuery>,
) -> ApiResult<Json<Data<BundleView>>> {
    let app = find_app(&admission, &caller, query.app_id()?, Action::Read).await?;
    let bundles = store.bundles(&app.app_id).await?;
    Ok(Json(Data { data: bundles.into_iter().map(BundleView::from).collect() }))
}

#[utoipa::path(
    post,
    path = "/bundle",
    tag = "bundle",
    params(BundleQuery),
    request_body(content = inline(super::schema::Binary), content_type = "application/octet-stream", description = "The bundle's bytes"),
    responses(
        (status = 200, description = "Stored, with its SHA-256 checksum and size (needs U)", body = OneBundle),
        ReadErrors,
        WriteErrors,
    ),
)]
pub async fn upload(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    State(blobs): State<BlobStore>,
    State(limits): State<BundleLimits>,
    caller: Caller,
    Params(query): Params<BundleQuery>,
    body: Body,
) -> ApiResult<Json<OneBundle>> {
    let app = find_app(&admission, &caller, query.app_id()?, AppWrite::Upload.action()).await?;
    let version = query.version()?;
    let exists =
        || ApiError::conflict("bundle_exists", format!("{} already has a bundle {version}", app.app_id));
    if store.bundle(&app.app_id, &version).await?.is_some() {
        return Err(exists());
    }
    // What is left of the organization's quota bounds the upload at once, so
    // that a full organization is not sent 50 MiB first; the store checks
    // again under the write lock, against concurrent uploads.
    let used = match limits.max_org_storage {
        Some(_) => store.org_storage(app.org_id).await?,
        None => 0,
    };
    let allowance = rules::upload_allowance(limits.max_org_storage, used, limits.max_bundle_size)?;
    // A declared length past the allowance is refused before a byte is read
    // (hyper's size hint of a body is at least its `Content-Length`).
    if hyper::body::Body::size_hint(&body).lower() > allowance.bytes {
        return Err(if allowance.by_quota {
            ApiError::storage_quota_exceeded(limits.max_org_storage.unwrap_or_default())
        } else {
            ApiError::payload_too_large("The bundle", allowance.bytes)
        });
    }
    let actor = caller.actor();
    let upload = Upload { store, blobs, max_org_storage: limits.max_org_storage };
    let bundle = to_completion(upload.write(app.app_id, version, body, allowance, actor)).await?;
    tracing::info!(app_id = %bundle.app_id, version = %bundle.version, size = bundle.size, "bundle uploaded");
    Ok(Json(OneBundle { bundle: bundle.into() }))
}

/// Where an upload goes: its bytes, then the row that lists them.
struct Upload {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    max_org_storage: Option<u64>,
}

impl Upload {
    /// Writes the bytes of `body`, then the row that lists them; the bytes are
    /// removed again if the row cannot be written.
    async fn write(
        self,
        app_id: keygate_core::AppId,
        version: String,
        body: Body,
        allowance: rules::UploadAllowance,
        actor: keygate_store::Actor,
    ) -> ApiResult<Bundle> {
        let exists =
            || ApiError::conflict("bundle_exists", format!("{app_id} already has a bundle {version}"));
        let blob = self.blobs.write(body, allowance.bytes).await.map_err(|e| match e {
            BlobError::TooLarge(_) if allowance.by_quota => {
                ApiError::storage_quota_exceeded(self.max_org_storage.unwrap_or_default())
            }
            BlobError::TooLarge(limit) => ApiError::payload_too_large("The bundle", limit),
            BlobError::Empty => ApiError::bad_request(
                "empty_bundle",
                "The bundle is empty: send its bytes as the request body",
            ),
            BlobError::Body(error) => ApiError::invalid_body(format!("The upload was interrupted: {error}")),
            BlobError::Io(error) => {
                tracing::error!(%error, "blob store write failed");
                ApiError::blob_storage(&error)
            }
        })?;
        let new = NewBundle {
            app_id: app_id.clone(),
            version: version.clone(),
            checksum: blob.checksum.clone(),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            blob_key: blob.key.clone(),
            max_org_storage: self.max_org_storage,
        };
        match self.store.insert_bundle(new, &actor).await {
            Ok(bundle) => Ok(bundle),
            Err(error) => {
                self.blobs.remove(std::slice::from_ref(&blob.key)).await;
                Err(match error {
                    StoreError::Conflict(_) => exists(),
                    e => e.into(),
                })
            }
        }
    }
}

#[utoipa::path(
    delete,
    path = "/bundle",
    tag = "bundle",
    params(BundleQuery),
    responses(
        (status = 200, description = "Deleted with its bytes (needs W)", body = Success),
        ReadErrors,
    ),
)]
pub async fn delete(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    State(blobs): State<BlobStore>,
    caller: Caller,
    Params(query): Params<BundleQuery>,
) -> ApiResult<Json<Success>> {
    let app = find_app(&admission, &caller, query.app_id()?, AppWrite::DeleteBundle.action()).await?;
    let version = query.version()?;
    let actor = caller.actor();
    // The row, then its bytes, even if the client leaves meanwhile.
    let deleted = to_completion(async move {
        let deleted = store.delete_bundle(&app.app_id, &version, &actor).await?;
        if let Some(bundle) = &deleted {
            blobs.remove(std::slice::from_ref(&bundle.blob_key)).await;
        }
        Ok::<_, StoreError>(deleted)
    });
    deleted.await?.ok_or_else(ApiError::bundle_not_found)?;
    Ok(Json(SUCCESS))
}

#[utoipa::path(
    get,
    path = "/bundle/download",
    tag = "bundle",
    params(BundleQuery),
    responses(
        (status = 200, description = "The bundle's bytes (needs R)", content_type = "application/octet-stream", body = inline(super::schema::Binary)),
        ReadErrors,
    ),
)]
pub async fn download(
    State(store): State<Arc<dyn Store>>,
    State(admission): State<Admission>,
    State(blobs): State<BlobStore>,
    caller: Caller,
    Params(query): Params<BundleQuery>,
) -> ApiResult<Response> {
    let app = find_app(&admission, &caller, query.app_id()?, Action::Read).await?;
    let version = query.version()?;
    let bundle = store.bundle(&app.app_id, &version).await?.ok_or_else(ApiError::bundle_not_found)?;
    let body = blobs.read(&bundle.blob_key).await.map_err(|error| {
        tracing::error!(%error, blob = %bundle.blob_key, "a listed bundle's blob cannot be read");
        ApiError::blob_unreadable()
    })?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bundle.size));
    // Bytes to save, never a page a browser would render or sniff.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", bundle.checksum)) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schema::version_pattern;
    use proptest::prelude::*;

    fn version_ok(raw: &str) -> bool {
        BundleQuery { app_id: None, version: Some(raw.to_owned()) }.version().is_ok()
    }

    /// The document's pattern for `version`, as the `regex` crate reads it.
    fn documented() -> regex::Regex {
        let escapes = regex::Regex::new(r"\\u([0-9a-fA-F]{4})").expect("regex");
        regex::Regex::new(&escapes.replace_all(&version_pattern(), r"\x{$1}")).expect("a valid pattern")
    }

    #[test]
    fn versions_are_semantic_and_bounded() {
        for good in ["1.2.3", " 1.0.0-beta.1 ", "0.0.0+build.01", "1.2.3-0a.1", "9999999999999999999.0.0"] {
            assert!(version_ok(good), "{good:?} refused");
        }
        for bad in ["1.2", "v1.2.3", "1.2.3-01", "01.2.3", "1.2.3+", "", "18446744073709551615.0.0"] {
            assert!(!version_ok(bad), "{bad:?} accepted");
        }
    }

    proptest! {
        /// The pattern (with `maxLength`) accepts exactly what the server does.
        #[test]
        fn the_documented_version_pattern_is_the_servers_rule(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("0".to_owned()), Just("1".to_owned()), Just("01".to_owned()),
                    Just(".".to_owned()), Just("-".to_owned()), Just("+".to_owned()),
                    Just("a".to_owned()), Just("Z".to_owned()), Just(" ".to_owned()),
                    Just("\u{a0}".to_owned()), Just("\t".to_owned()), Just("9".repeat(19)),
                    Just("9".repeat(20)), Just("é".to_owned()), Just("1.2.3".to_owned()),
                ],
                0..12,
            ),
            padding in 0usize..140,
        ) {
            let raw: String = parts.concat();
            let pattern = documented();
            for raw in [raw.clone(), format!("1.2.3-{}{raw}", "a".repeat(padding))] {
                let documented = pattern.is_match(&raw) && raw.chars().count() <= MAX_VERSION_LEN;
                prop_assert_eq!(documented, version_ok(&raw), "{:?}", raw);
            }
        }
    }
}
