//! Every authorization rule beyond the one decision of [`crate::authz`], each
//! a pure function: handlers and storage call these and never compare roles
//! or modes themselves.
//!
//! | rule | function |
//! |---|---|
//! | which keys a caller sees (and so may read, change, rotate, delete) | [`may_see_key`] |
//! | managing keys in an organization needs membership in it | [`key_management_role`] |
//! | an admin never changes a key whose owner outranks them | [`may_change_key`] |
//! | only a key's own user rotates it | [`may_rotate_key`] |
//! | which roles an actor may assign or remove | [`may_change_membership`] |
//! | an organization keeps a `super_admin` | [`keeps_a_super_admin`] |
//! | who may create an organization | [`may_create_organization`] |
//! | an organization's expiry policy | [`ExpiryPolicy::check`] |
//! | what `/verify` answers | [`verify`] |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::authz::{Action, Decision, Mode, Principal, Role, Target};
use crate::domain::AppId;

/// Why a rule refused: each maps to one HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The organization is outside the caller's view: it is not a member, or
    /// the key's scope excludes it (404, so that nothing can be probed).
    #[error("the organization is not visible to the caller")]
    Invisible,
    /// The caller sees it but may not do it (403).
    #[error("insufficient permissions")]
    Forbidden,
    /// Changing memberships needs the `admin` right in the organization (403).
    #[error("changing members needs an admin of the organization")]
    NotAnAdministrator,
    /// Nobody grants, changes or removes a role above their own (403).
    #[error("that role is above the acting member's own")]
    RoleAboveOwn,
    /// An organization keeps at least one `super_admin` (409).
    #[error("an organization keeps at least one super_admin")]
    LastSuperAdmin,
    /// Only a key's own user gives it a new secret (403).
    #[error("only the key's own user can rotate it")]
    NotTheOwner,
    /// The key's expiry breaks its organization's policy (400).
    #[error("the key's expiry breaks its organization's policy")]
    ExpiryPolicy(PolicyViolation),
    /// The organization's bundles would take more than this many bytes (413).
    #[error("the organization's bundles would take more than {0} bytes")]
    StorageQuota(u64),
}

/// Whether `caller` sees `key`: its own keys inside its scope, and, where it
/// administers the key's organization (`admin_in_key_org` from
/// [`Principal::decide`] with [`Action::Administer`]), every key scoped to it.
pub fn may_see_key(caller: &Principal, key: &Principal, admin_in_key_org: Decision) -> bool {
    let own = key.user_id == caller.user_id && caller.scope.covers(&key.scope);
    own || (key.scope.org.is_some() && admin_in_key_org.is_allowed())
}

/// Managing keys in `org` (creating one there, or changing one scoped to it)
/// needs the org inside the calling key's scope and the caller a member of
/// it: returns the caller's role, or [`Refusal::Invisible`].
pub fn key_management_role(caller: &Principal, org: Uuid, role: Option<Role>) -> Result<Role, Refusal> {
    if !caller.scope.contains_org(org) {
        return Err(Refusal::Invisible);
    }
    role.ok_or(Refusal::Invisible)
}

/// What a key can do is its mode ∩ its owner's role, so a member changes
/// another member's key only if the owner's role does not outrank theirs.
pub fn may_change_key(
    caller: &Principal,
    caller_role: Role,
    key: &Principal,
    owner_role: Option<Role>,
) -> Result<(), Refusal> {
    if key.user_id == caller.user_id || owner_role.is_none_or(|owner| caller_role.covers(owner)) {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

/// A new secret is a new credential, so only the key's own user rotates it;
/// an admin can delete it instead.
pub fn may_rotate_key(caller: &Principal, key: &Principal) -> Result<(), Refusal> {
    if key.user_id == caller.user_id { Ok(()) } else { Err(Refusal::NotTheOwner) }
}

/// Whether a member whose role is `acting` may move another member from
/// `current` to `new` (`None`: not a member / removed). The acting member
/// must administer the organization, and neither role may be above theirs.
pub fn may_change_membership(
    acting: Option<Role>,
    current: Option<Role>,
    new: Option<Role>,
) -> Result<(), Refusal> {
    let acting = acting.ok_or(Refusal::Invisible)?;
    if !acting.actions().contains(Action::Administer) {
        return Err(Refusal::NotAnAdministrator);
    }
    if [current, new].into_iter().flatten().any(|role| !acting.covers(role)) {
        return Err(Refusal::RoleAboveOwn);
    }
    Ok(())
}

/// Whether moving a member from `current` to `new` still leaves a
/// `super_admin`, given how many the organization has now.
pub fn keeps_a_super_admin(
    current: Option<Role>,
    new: Option<Role>,
    super_admins: i64,
) -> Result<(), Refusal> {
    let demotes = current == Some(Role::SuperAdmin) && new != Some(Role::SuperAdmin);
    if demotes && super_admins <= 1 { Err(Refusal::LastSuperAdmin) } else { Ok(()) }
}

/// Creating an organization needs an unscoped key of mode `all` (as the
/// CLI issues): a scoped key must not reach beyond its organization.
pub fn may_create_organization(caller: &Principal) -> bool {
    caller.mode == Mode::All && caller.scope.org.is_none() && !caller.scope.is_app_limited()
}

/// An organization's rules for the expiry of keys scoped to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryPolicy {
    pub require_expiration: bool,
    pub max_days: Option<i32>,
}

/// Why a key's expiry breaks its organization's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyViolation {
    ExpirationRequired,
    ExceedsMaxDays(i32),
}

impl ExpiryPolicy {
    pub fn check(self, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), PolicyViolation> {
        if self.require_expiration && expires_at.is_none() {
            return Err(PolicyViolation::ExpirationRequired);
        }
        if let Some(days) = self.max_days {
            let limit = now + chrono::Duration::days(i64::from(days));
            if expires_at.is_none_or(|at| at > limit) {
                return Err(PolicyViolation::ExceedsMaxDays(days));
            }
        }
        Ok(())
    }
}

/// What a `/verify` request names: the organization and the app (with the
/// organization that owns it), each as found.
#[derive(Debug, Clone, Copy)]
pub struct VerifyTarget<'a> {
    /// The organization named in the request.
    pub org: Option<Uuid>,
    /// The app named in the request, with its organization.
    pub app: Option<(Uuid, &'a AppId)>,
}

impl VerifyTarget<'_> {
    /// The organization acted on: the one named, else the app's, else the
    /// key's own. `Err` when the named org and the app's disagree.
    pub fn org(&self, key: &Principal) -> Result<Option<Uuid>, Refusal> {
        match (self.org, self.app) {
            (Some(named), Some((owner, _))) if named != owner => Err(Refusal::Forbidden),
            (named, app) => Ok(named.or(app.map(|(owner, _)| owner)).or(key.scope.org)),
        }
    }
}

/// The answer of `/verify` for a live key: the one decision when an
/// organization is concerned (`role` is the owner's role in
/// [`VerifyTarget::org`]); for an unscoped key with nothing named, only its
/// mode can be judged.
pub fn verify(key: &Principal, target: VerifyTarget<'_>, role: Option<Role>, action: Action) -> bool {
    match target.org(key) {
        Ok(Some(org)) => {
            let target = Target { org, app: target.app.map(|(_, app)| app) };
            key.decide(role, target, action).is_allowed()
        }
        Ok(None) => key.mode.actions().contains(action),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Scope;

    const ORG: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const ME: Uuid = Uuid::from_u128(10);
    const YOU: Uuid = Uuid::from_u128(11);

    fn key(user_id: Uuid, mode: Mode, org: Option<Uuid>, apps: &[&str]) -> Principal {
        let apps = apps.iter().map(|a| AppId::parse(a).expect("app id")).collect();
        Principal { key_id: 1, user_id, mode, scope: Scope { org, apps }, expires_at: None }
    }

    #[test]
    fn a_caller_sees_its_own_keys_in_scope_and_the_keys_of_orgs_it_administers() {
        let caller = key(ME, Mode::All, Some(ORG), &[]);
        let mine = key(ME, Mode::Read, Some(ORG), &["com.example.a"]);
        let mine_elsewhere = key(ME, Mode::Read, Some(OTHER), &[]);
        let mine_unscoped = key(ME, Mode::Read, None, &[]);
        let theirs = key(YOU, Mode::Read, Some(ORG), &[]);
        let theirs_unscoped = key(YOU, Mode::Read, None, &[]);
        assert!(may_see_key(&caller, &mine, Decision::Forbidden));
        assert!(!may_see_key(&caller, &mine_elsewhere, Decision::Invisible));
        assert!(!may_see_key(&caller, &mine_unscoped, Decision::Forbidden), "wider than the caller");
        assert!(may_see_key(&caller, &theirs, Decision::Allow));
        assert!(!may_see_key(&caller, &theirs, Decision::Forbidden));
        assert!(!may_see_key(&caller, &theirs_unscoped, Decision::Allow), "unscoped keys are their owner's");
    }

    #[test]
    fn key_management_needs_membership_inside_the_scope() {
        let scoped = key(ME, Mode::All, Some(ORG), &[]);
        assert_eq!(key_management_role(&scoped, ORG, Some(Role::Read)), Ok(Role::Read));
        assert_eq!(key_management_role(&scoped, ORG, None), Err(Refusal::Invisible));
        assert_eq!(key_management_role(&scoped, OTHER, Some(Role::Admin)), Err(Refusal::Invisible));
        let unscoped = key(ME, Mode::All, None, &[]);
        assert_eq!(key_management_role(&unscoped, OTHER, Some(Role::Write)), Ok(Role::Write));
    }

    #[test]
    fn an_admin_never_changes_the_key_of_a_member_who_outranks_them() {
        let admin = key(ME, Mode::All, Some(ORG), &[]);
        let owners_key = key(YOU, Mode::Read, Some(ORG), &[]);
        assert_eq!(
            may_change_key(&admin, Role::Admin, &owners_key, Some(Role::SuperAdmin)),
            Err(Refusal::Forbidden)
        );
        assert_eq!(may_change_key(&admin, Role::Admin, &owners_key, Some(Role::Admin)), Ok(()));
        assert_eq!(may_change_key(&admin, Role::Admin, &owners_key, None), Ok(()), "a former member's key");
        let own = key(ME, Mode::Read, Some(ORG), &[]);
        assert_eq!(may_change_key(&admin, Role::Read, &own, Some(Role::Read)), Ok(()));
    }

    #[test]
    fn only_the_owner_rotates() {
        let caller = key(ME, Mode::All, Some(ORG), &[]);
        assert_eq!(may_rotate_key(&caller, &key(ME, Mode::Read, Some(ORG), &[])), Ok(()));
        assert_eq!(may_rotate_key(&caller, &key(YOU, Mode::Read, Some(ORG), &[])), Err(Refusal::NotTheOwner));
    }

    #[test]
    fn members_are_changed_only_by_admins_and_never_above_their_role() {
        use Role::*;
        assert_eq!(may_change_membership(None, None, Some(Read)), Err(Refusal::Invisible));
        assert_eq!(may_change_membership(Some(Write), None, Some(Read)), Err(Refusal::NotAnAdministrator));
        assert_eq!(may_change_membership(Some(Admin), None, Some(Admin)), Ok(()));
        assert_eq!(may_change_membership(Some(Admin), None, Some(SuperAdmin)), Err(Refusal::RoleAboveOwn));
        assert_eq!(
            may_change_membership(Some(Admin), Some(SuperAdmin), Some(Read)),
            Err(Refusal::RoleAboveOwn)
        );
        assert_eq!(may_change_membership(Some(Admin), Some(SuperAdmin), None), Err(Refusal::RoleAboveOwn));
        assert_eq!(may_change_membership(Some(Admin), Some(Write), None), Ok(()));
        assert_eq!(may_change_membership(Some(SuperAdmin), Some(SuperAdmin), Some(Read)), Ok(()));
    }

    #[test]
    fn the_last_super_admin_stays() {
        use Role::*;
        assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(Admin), 1), Err(Refusal::LastSuperAdmin));
        assert_eq!(keeps_a_super_admin(Some(SuperAdmin), None, 1), Err(Refusal::LastSuperAdmin));
        assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(Admin), 2), Ok(()));
        assert_eq!(keeps_a_super_admin(Some(SuperAdmin), Some(SuperAdmin), 1), Ok(()));
        assert_eq!(keeps_a_super_admin(Some(Admin), None, 1), Ok(()));
        assert_eq!(keeps_a_super_admin(None, Some(Read), 0), Ok(()));
    }

    #[test]
    fn only_unscoped_all_keys_create_organizations() {
        assert!(may_create_organization(&key(ME, Mode::All, None, &[])));
        assert!(!may_create_organization(&key(ME, Mode::Write, None, &[])));
        assert!(!may_create_organization(&key(ME, Mode::All, Some(ORG), &[])));
        assert!(!may_create_organization(&key(ME, Mode::All, None, &["com.example.a"])));
    }

    #[test]
    fn the_expiry_policy_binds_keys() {
        let now = Utc::now();
        let soon = Some(now + chrono::Duration::days(10));
        let late = Some(now + chrono::Duration::days(40));
        let open = ExpiryPolicy::default();
        assert_eq!(open.check(None, now), Ok(()));
        let required = ExpiryPolicy { require_expiration: true, max_days: None };
        assert_eq!(required.check(None, now), Err(PolicyViolation::ExpirationRequired));
        assert_eq!(required.check(late, now), Ok(()));
        let bounded = ExpiryPolicy { require_expiration: false, max_days: Some(30) };
        assert_eq!(bounded.check(soon, now), Ok(()));
        assert_eq!(bounded.check(late, now), Err(PolicyViolation::ExceedsMaxDays(30)));
        assert_eq!(bounded.check(None, now), Err(PolicyViolation::ExceedsMaxDays(30)));
    }

    #[test]
    fn verify_decides_like_every_endpoint() {
        let a = AppId::parse("com.example.a").expect("app id");
        let b = AppId::parse("com.example.b").expect("app id");
        let nothing = VerifyTarget { org: None, app: None };
        let org_wide = key(ME, Mode::Upload, Some(ORG), &[]);
        assert!(verify(&org_wide, nothing, Some(Role::Admin), Action::Upload), "the key's own org");
        assert!(!verify(&org_wide, nothing, Some(Role::Read), Action::Upload), "the role binds");
        assert!(!verify(&org_wide, nothing, Some(Role::Admin), Action::Administer), "the mode binds");
        let scoped = key(ME, Mode::Upload, Some(ORG), &["com.example.a"]);
        assert!(
            !verify(&scoped, nothing, Some(Role::Admin), Action::Upload),
            "app-limited: org level reads only"
        );
        let on_a = VerifyTarget { org: None, app: Some((ORG, &a)) };
        let on_b = VerifyTarget { org: None, app: Some((ORG, &b)) };
        assert!(verify(&scoped, on_a, Some(Role::Admin), Action::Write));
        assert!(!verify(&scoped, on_b, Some(Role::Admin), Action::Read), "outside the app scope");
        let mismatch = VerifyTarget { org: Some(OTHER), app: Some((ORG, &a)) };
        assert!(!verify(&scoped, mismatch, Some(Role::Admin), Action::Read), "org and app disagree");
        let unscoped = key(ME, Mode::Write, None, &[]);
        assert!(verify(&unscoped, nothing, None, Action::Write), "only the mode can be judged");
        assert!(!verify(&unscoped, nothing, None, Action::Upload));
        let elsewhere = VerifyTarget { org: Some(OTHER), app: None };
        assert!(!verify(&unscoped, elsewhere, None, Action::Read), "not a member there");
    }
}
