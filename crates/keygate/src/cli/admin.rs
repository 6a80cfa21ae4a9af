//! Operator actions shared by the CLI and the server's start-up: enrolling a
//! user into a new or existing organization, with an unscoped `all` key
//! when asked for one.

use keygate_core::{ApiKeySecret, Email, KeyName, OrgName, Role};
use keygate_store::{Enroll, Enrollee, Entity, Store, StoreError};
use serde::Serialize;
use uuid::Uuid;

/// What `keygate bootstrap` and `keygate user add` print: the only time the
/// key's secret is shown.
#[derive(Debug, Serialize)]
pub struct EnrollmentOutput {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub key_id: i64,
    #[serde(serialize_with = "expose")]
    pub key: ApiKeySecret,
}

fn expose<S: serde::Serializer>(secret: &ApiKeySecret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("organization {0} does not exist")]
    NoSuchOrganization(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random generator failed: {0}")]
    Random(#[from] getrandom::Error),
}

pub async fn bootstrap(
    store: &dyn Store,
    email: &str,
    org_name: &str,
) -> Result<EnrollmentOutput, AdminError> {
    bootstrap_as(store, email, org_name, false).await
}

/// [`bootstrap`]; `existing_account`: the operator confirms an account
/// that already has this email is the person's (`--existing-account`).
pub async fn bootstrap_as(
    store: &dyn Store,
    email: &str,
    org_name: &str,
    existing_account: bool,
) -> Result<EnrollmentOutput, AdminError> {
    let name = OrgName::parse(org_name).map_err(|e| AdminError::Invalid(format!("--org-name: {e}")))?;
    enroll(store, email, Enroll::NewOrganization { name }, "Bootstrap Key", existing_account).await
}

/// What `keygate user add` prints without `--issue-key`: the membership.
#[derive(Debug, Serialize)]
pub struct MembershipOutput {
    pub user_id: Uuid,
    pub org_id: Uuid,
    #[serde(serialize_with = "role_name")]
    pub role: Role,
}

fn role_name<S: serde::Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.as_str())
}

/// Adds the user (created if the email is new) to the organization, or
/// changes their role, as the operator: no key is issued.
pub async fn set_role(
    store: &dyn Store,
    email: &str,
    org_id: Uuid,
    role: Role,
) -> Result<MembershipOutput, AdminError> {
    let email = Email::parse(email).map_err(|e| AdminError::Invalid(format!("--email: {e}")))?;
    let member = store.set_member(org_id, &email, role, &keygate_store::Actor::OPERATOR).await.map_err(
        |e| match e {
            StoreError::NotFound(Entity::Organization) => AdminError::NoSuchOrganization(org_id),
            e => AdminError::Store(e),
        },
    )?;
    Ok(MembershipOutput { user_id: member.user_id, org_id, role: member.role })
}

/// Like [`set_role`], and issues the user an unscoped `all` key.
pub async fn add_user(
    store: &dyn Store,
    email: &str,
    org_id: Uuid,
    role: Role,
) -> Result<EnrollmentOutput, AdminError> {
    add_user_as(store, email, org_id, role, false).await
}

/// [`add_user`]; `existing_account` as for [`bootstrap_as`].
pub async fn add_user_as(
    store: &dyn Store,
    email: &str,
    org_id: Uuid,
    role: Role,
    existing_account: bool,
) -> Result<EnrollmentOutput, AdminError> {
    let enrolled = enroll(store, email, Enroll::Member { org_id, role }, "CLI Key", existing_account).await;
    enrolled.map_err(|e| match e {
        AdminError::Store(StoreError::NotFound(Entity::Organization)) => {
            AdminError::NoSuchOrganization(org_id)
        }
        e => e,
    })
}

async fn enroll(
    store: &dyn Store,
    email: &str,
    enroll: Enroll,
    key_name: &str,
    existing_account: bool,
) -> Result<EnrollmentOutput, AdminError> {
    let email = Email::parse(email).map_err(|e| AdminError::Invalid(format!("--email: {e}")))?;
    let secret = ApiKeySecret::generate()?;
    let key_name = KeyName::parse(key_name).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let enrollment = store
        .enroll(Enrollee {
            email,
            enroll,
            key: keygate_store::KeyMaterial { digest: secret.digest(), preview: secret.preview() },
            key_name,
            existing_account,
        })
        .await?;
    Ok(EnrollmentOutput {
        user_id: enrollment.user_id,
        org_id: enrollment.org_id,
        key_id: enrollment.key.id,
        key: secret,
    })
}
