//! What the writes of every backend bind: values of the model, in the
//! order in which each backend's statement numbers its parameters (given
//! with each). The SQL is the backend's own; what goes into it is the same.

use chrono::{DateTime, Utc};
use keygate_core::KeyDigest;
use sqlx::query::QueryAs;
use sqlx::{Database, Encode, Type};
use uuid::Uuid;

use keygate_core::limits::Credits;

use crate::rows::{AppList, ratelimits_json, refill_json};
use crate::{KeyChanges, KeyMaterial, NewApiKey, NewBundle, OrgChanges};

/// A value that statements on `DB` bind.
pub(crate) trait Param<'q, DB: Database>: Encode<'q, DB> + Type<DB> + 'q {}

impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB> + 'q> Param<'q, DB> for T {}

/// A key's new secret, replacing `current` (if that is still the key's).
pub(crate) struct Rotation<'a> {
    pub material: &'a KeyMaterial,
    pub current: &'a KeyDigest,
    /// Until when the replaced secret keeps working; `None`: it stops now.
    pub grace_until: Option<DateTime<Utc>>,
}

/// Binds values of the model after those a statement binds already.
pub(crate) trait BindModel<'q>: Sized {
    /// `$1`–`$15`: digest, preview, mode, name, user, organization, apps,
    /// expiry, creating key, the time of creation; whether it is enabled,
    /// its rate limits, its credit balance, their refill and its period.
    fn bind_new_key(self, key: &'q NewApiKey) -> Self;

    /// `$2`–`$13`, after the key's id: name, mode and apps (each `NULL` to
    /// keep it), whether to set the expiry, the expiry, the time of change;
    /// enabled and rate limits (each `NULL` to keep it), whether to set the
    /// credits, their balance, refill and period.
    fn bind_key_changes(self, changes: &'q KeyChanges) -> Self;

    /// `$2`–`$7`, after the key's id: new digest, new preview, whether the
    /// old secret stays for a grace period, its end, the time of change,
    /// and the digest the key must still have.
    fn bind_rotation(self, rotation: &'q Rotation<'q>) -> Self;

    /// Three values: a credit balance, its refill, and the start of the
    /// refill period it belongs to (each `NULL` for unlimited credits).
    fn bind_credits(self, credits: Option<&Credits>) -> Self;

    /// `$2`–`$7`, after the organization's id: name and expiry requirement
    /// (each `NULL` to keep it), whether to set the longest expiry, that
    /// limit, the time of change, the shared rate limits (`NULL` to keep them).
    fn bind_org_changes(self, changes: &'q OrgChanges) -> Self;

    /// `$1`–`$6`: app, version, checksum, size, blob key, time of upload.
    fn bind_new_bundle(self, bundle: &'q NewBundle) -> Self;
}

impl<'q, DB: Database, O> BindModel<'q> for QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    &'q [u8]: Param<'q, DB>,
    &'q str: Param<'q, DB>,
    Option<&'q str>: Param<'q, DB>,
    Uuid: Param<'q, DB>,
    Option<Uuid>: Param<'q, DB>,
    AppList: Param<'q, DB>,
    Option<AppList>: Param<'q, DB>,
    bool: Param<'q, DB>,
    Option<bool>: Param<'q, DB>,
    i64: Param<'q, DB>,
    Option<i64>: Param<'q, DB>,
    DateTime<Utc>: Param<'q, DB>,
    Option<DateTime<Utc>>: Param<'q, DB>,
    Option<i32>: Param<'q, DB>,
    String: Param<'q, DB>,
    Option<String>: Param<'q, DB>,
{
    fn bind_new_key(self, key: &'q NewApiKey) -> Self {
        self.bind(&key.material.digest.as_bytes()[..])
            .bind(key.material.preview.as_str())
            .bind(key.mode.as_str())
            .bind(key.name.as_str())
            .bind(key.user_id)
            .bind(key.org_id)
            .bind(AppList::from(&key.limited_to_apps[..]))
            .bind(key.expires_at)
            .bind(key.created_by_key_id)
            .bind(crate::now())
            .bind(key.limits.enabled)
            .bind(ratelimits_json(&key.limits.ratelimits))
            .bind_credits(key.limits.credits.as_ref())
    }

    fn bind_key_changes(self, changes: &'q KeyChanges) -> Self {
        let update = self
            .bind(changes.name.as_ref().map(|name| name.as_str()))
            .bind(changes.mode.map(|mode| mode.as_str()))
            .bind(changes.limited_to_apps.as_deref().map(AppList::from));
        settable(update, changes.expires_at)
            .bind(crate::now())
            .bind(changes.enabled)
            .bind(changes.ratelimits.as_deref().map(ratelimits_json))
            .bind(changes.credits.is_some())
            .bind_credits(changes.credits.flatten().as_ref())
    }

    fn bind_credits(self, credits: Option<&Credits>) -> Self {
        let now = crate::now();
        self.bind(credits.map(|c| c.remaining))
            .bind(credits.and_then(|c| refill_json(c.refill.as_ref())))
            .bind(credits.and_then(|c| c.refill).map(|refill| refill.period_start(now).timestamp_millis()))
    }

    fn bind_rotation(self, rotation: &'q Rotation<'q>) -> Self {
        self.bind(&rotation.material.digest.as_bytes()[..])
            .bind(rotation.material.preview.as_str())
            .bind(rotation.grace_until.is_some())
            .bind(rotation.grace_until)
            .bind(crate::now())
            .bind(&rotation.current.as_bytes()[..])
    }

    fn bind_org_changes(self, changes: &'q OrgChanges) -> Self {
        let update = self
            .bind(changes.name.as_ref().map(|name| name.as_str()))
            .bind(changes.require_apikey_expiration);
        settable(update, changes.max_apikey_expiration_days)
            .bind(crate::now())
            .bind(changes.ratelimits.as_deref().map(ratelimits_json))
    }

    fn bind_new_bundle(self, bundle: &'q NewBundle) -> Self {
        self.bind(bundle.app_id.as_str())
            .bind(bundle.version.as_str())
            .bind(bundle.checksum.as_str())
            .bind(bundle.size)
            .bind(bundle.blob_key.as_str())
            .bind(crate::now())
    }
}

/// Binds a field that `Some(None)` clears as two values: whether to set
/// it, and to what (`NULL`: cleared).
fn settable<'q, DB: Database, O, T>(
    update: QueryAs<'q, DB, O, DB::Arguments<'q>>,
    field: Option<Option<T>>,
) -> QueryAs<'q, DB, O, DB::Arguments<'q>>
where
    bool: Param<'q, DB>,
    Option<T>: Param<'q, DB>,
{
    update.bind(field.is_some()).bind(field.flatten())
}
