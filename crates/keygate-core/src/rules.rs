//! Every authorization rule beyond the one decision of [`crate::authz`], each
//! a pure function: handlers and storage call these and never compare roles
//! or modes themselves.
//!
//! | rule | function |
//! |---|---|
//! | which keys a caller sees (and so may read, change, rotate, delete) | [`may_see_key`] |
//! | managing keys in an organization needs membership in it | [`key_management_role`] |
//! | a member acts on another member only from a strictly higher role | [`may_act_on_member`] |
//! | a member changes or deletes another's key only from above its owner | [`may_change_key`] |
//! | only a key's own user rotates it | [`may_rotate_key`] |
//! | who may change a key's limits, and that no key changes its own | [`may_change_limits`] |
//! | which roles an actor may assign or remove, on whom | [`may_change_membership`] |
//! | an organization keeps a `super_admin` | [`keeps_a_super_admin`] |
//! | who may invite whom, with which role | [`may_invite`] |
//! | who redeems an invitation, and whether it still stands | [`may_redeem`] |
//! | an invitation's first key | [`first_key_expiry`] |
//! | who may withdraw an invitation | [`may_withdraw_invite`] |
//! | which other keys a key may change or rotate | [`may_manage_other_key`] |
//! | who sets the rate limits an organization's keys share | [`may_change_shared_limits`] |
//! | who changes an organization's settings | [`may_update_organization`] |
//! | who deletes an organization | [`may_delete_organization`] |
//! | whose calling key still administers an organization | [`may_administer`] |
//! | whether a change of an existing key commits | [`crate::key_writes::may_write_key`] |
//! | which keys an admin may block or unblock in an organization | [`may_block`], [`may_unblock`] |
//! | a blocked key acts as a non-member | [`role_as_key_acts`] |
//! | who may create an organization | [`may_create_organization`] |
//! | an organization's expiry policy | [`ExpiryPolicy::check`] |
//! | an organization's storage quota | [`storage_left`], [`within_storage_quota`] |
//! | what `/verify` answers | [`verify`] |
//!
//! A key's own restraints bind what it makes: only an unrestrained key
//! creates keys ([`Principal::may_mint`]), and nothing it creates or changes
//! exceeds it ([`Principal::may_grant`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::authz::{Action, Decision, Principal, Role, Target};
use crate::domain::AppId;

mod invitations;
pub use invitations::*;

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
    /// Nobody grants a role above their own (403).
    #[error("that role is above the acting member's own")]
    RoleAboveOwn,
    /// The member acted on (or the owner of the key acted on) ranks at or
    /// above the acting member (403).
    #[error("that member's role is equal to or above the acting member's")]
    Outranked,
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
    /// Roles change only for members; a newcomer joins by invitation (404).
    #[error("not a member of the organization")]
    NotAMember,
    /// An invitation's role is below the inviter's own (403).
    #[error("an invitation's role must be below the inviter's own")]
    InviteAtOrAboveOwn,
    /// The invitee is a member already: their role changes as a member's (409).
    #[error("already a member of the organization")]
    AlreadyMember,
    /// The invitation's inviter could no longer issue it (404, as an
    /// unknown, used, withdrawn or expired one).
    #[error("no such invitation")]
    InvitationVoid,
    /// The invitation is addressed to an existing account: it is accepted
    /// only with one of that account's keys, of mode `all` (401).
    #[error("the invitation needs the invitee's own key")]
    InvitationNeedsOwnKey,
    /// The key presented is not the invitee's, or the invitee is a new
    /// account and a key was presented (403).
    #[error("the invitation is addressed to another account")]
    NotTheInvitee,
    /// The operator enrolls an email that already has an account into an
    /// organization it is not a member of, without confirming the account
    /// is that person's: anyone who can redeem an invitation can create an
    /// account for any address.
    #[error(
        "that email already has an account, which anyone who invited the address could have made: it joins another \
         organization by an invitation it accepts with its own key, or pass --existing-account if you know the \
         account is that person's"
    )]
    ExistingAccount,
    /// A key with rate limits, credits or app limits creates no keys and
    /// lifts no limits (403).
    #[error("a key with limits or app limits cannot create keys or change limits")]
    RestrainedKey,
    /// No key changes its own limits (403).
    #[error("a key cannot change its own limits")]
    OwnLimits,
    /// Changing a key's limits needs the `admin` right in its organization (403).
    #[error("changing a key's limits needs an admin of its organization")]
    LimitsNeedAdministrator,
    /// An unscoped key's limits are the operator's (403).
    #[error("the limits of an unscoped key are set by an operator")]
    UnscopedLimits,
    /// A key cannot block itself (400).
    #[error("a key cannot block itself")]
    OwnKeyBlock,
    /// A key scoped to the organization is disabled or deleted, not blocked (400).
    #[error("key {0} is scoped to the organization")]
    ScopedKeyBlock(i64),
    /// Only a member's unscoped key is blocked (404).
    #[error("no unscoped key of a member")]
    NotBlockable,
    /// The rate limits an organization's keys share are the owners' to set (403).
    #[error("an organization's shared rate limits are set by a super_admin")]
    SharedLimitsNeedOwner,
    /// The key acted on is outside the caller's view (404, as an unknown one).
    #[error("no such key")]
    KeyNotFound,
    /// The calling key was deleted, disabled or expired since the request
    /// was authenticated (401).
    #[error("the calling key no longer works")]
    CallerRevoked,
}

/// Whether `caller` sees `key`, given `admin_in_key_org` ([`Principal::decide`]
/// with [`Action::Administer`] in the key's organization, as the calling
/// key acts there: [`Decision::Invisible`] when it is no member there or is
/// blocked there): its own keys inside its scope, those scoped to an
/// organization only where it acts, and, where it administers the key's
/// organization, every key scoped to it.
/// Whether the operator may enroll an email into an organization: a new
/// account, a member already there (a change of role), or an existing
/// account the operator confirms is that person's (`confirmed`). An
/// account an invitation created is the word of whoever held the code, not
/// of the address's owner.
pub fn may_enroll(has_account: bool, member_here: bool, confirmed: bool) -> Result<(), Refusal> {
    if has_account && !member_here && !confirmed { Err(Refusal::ExistingAccount) } else { Ok(()) }
}

pub fn may_see_key(caller: &Principal, key: &Principal, admin_in_key_org: Decision) -> bool {
    let acts_there = key.scope.org.is_none() || admin_in_key_org != Decision::Invisible;
    let own = key.user_id == caller.user_id && caller.scope.covers(&key.scope) && acts_there;
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

/// The one outranking rule: a member acts on another member (their role,
/// their keys, blocks of their keys) only from a strictly higher role, so
/// that nobody reaches a peer or a superior; on themselves, as the
/// operation's own rule allows. `member_role` `None`: no longer a member.
pub fn may_act_on_member(
    actor: Uuid,
    actor_role: Role,
    member: Uuid,
    member_role: Option<Role>,
) -> Result<(), Refusal> {
    if actor == member || member_role.is_none_or(|role| actor_role.outranks(role)) {
        Ok(())
    } else {
        Err(Refusal::Outranked)
    }
}

/// What a key can do is its mode ∩ its owner's role, so a member changes
/// (or deletes) another member's key only if they outrank its owner.
pub fn may_change_key(
    caller: &Principal,
    caller_role: Role,
    key: &Principal,
    owner_role: Option<Role>,
) -> Result<(), Refusal> {
    may_act_on_member(caller.user_id, caller_role, key.user_id, owner_role)
}

/// A new secret is a new credential, so only the key's own user rotates it;
/// an admin can delete it instead.
pub fn may_rotate_key(caller: &Principal, key: &Principal) -> Result<(), Refusal> {
    if key.user_id == caller.user_id { Ok(()) } else { Err(Refusal::NotTheOwner) }
}

/// Changing what a key may spend (enabled, rate limits, credits): an
/// unrestrained key ([`Principal::may_mint`]) of someone who administers
/// the key's organization (`admin_in_key_org`), never the key itself, never
/// an unscoped key (its limits are the operator's), and on one's own keys
/// only from the owning role (`caller_role`): below it, limits were set
/// from above and are not the owner's to lift. Whom the caller may reach
/// is [`may_change_key`].
pub fn may_change_limits(
    caller: &Principal,
    caller_role: Option<Role>,
    key: &Principal,
    admin_in_key_org: Decision,
) -> Result<(), Refusal> {
    if key.key_id == caller.key_id {
        return Err(Refusal::OwnLimits);
    }
    if !caller.may_mint() {
        return Err(Refusal::RestrainedKey);
    }
    if key.scope.org.is_none() {
        return Err(Refusal::UnscopedLimits);
    }
    if !admin_in_key_org.is_allowed() {
        return Err(Refusal::LimitsNeedAdministrator);
    }
    if key.user_id == caller.user_id && caller_role != Some(Role::SuperAdmin) {
        return Err(Refusal::OwnLimits);
    }
    Ok(())
}

/// Whether the member `acting` (whose role is `acting_role`) may move
/// `member` from `current` to `new` (`None`: removed). The acting member
/// administers the organization, grants no role above their own, and acts
/// on another member only from a strictly higher role
/// ([`may_act_on_member`]); only members change: a newcomer joins by
/// invitation.
pub fn may_change_membership(
    acting: Uuid,
    acting_role: Option<Role>,
    member: Uuid,
    current: Option<Role>,
    new: Option<Role>,
) -> Result<(), Refusal> {
    let acting_role = administrator(acting_role)?;
    if current.is_none() {
        return Err(Refusal::NotAMember);
    }
    if new.is_some_and(|new| !acting_role.covers(new)) {
        return Err(Refusal::RoleAboveOwn);
    }
    may_act_on_member(acting, acting_role, member, current)
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

/// Managing another key than itself (changing it, giving it a new secret):
/// only a key that could mint one ([`Principal::may_mint`]); a restrained
/// key manages itself alone, within its own bounds.
pub fn may_manage_other_key(caller: &Principal, key: &Principal) -> Result<(), Refusal> {
    if key.key_id == caller.key_id || caller.may_mint() { Ok(()) } else { Err(Refusal::RestrainedKey) }
}

/// Changing the rate limits an organization's keys share binds every key
/// there, its owners' too: only the owning role (`super_admin`) may.
pub fn may_change_shared_limits(role: Role) -> Result<(), Refusal> {
    if role.actions().contains(Action::Own) { Ok(()) } else { Err(Refusal::SharedLimitsNeedOwner) }
}

/// Changing an organization's settings (`org`): an administrator there,
/// as the calling key acts (`role`: `None` when not a member or blocked
/// there); the rate limits its keys share (`shared_limits`), only its
/// owning role ([`may_change_shared_limits`]).
pub fn may_update_organization(
    caller: &Principal,
    role: Option<Role>,
    org: Uuid,
    shared_limits: bool,
) -> Result<(), Refusal> {
    match (caller.decide(role, Target::org(org), Action::Administer), role) {
        (Decision::Allow, Some(role)) if shared_limits => may_change_shared_limits(role),
        (Decision::Allow, _) => Ok(()),
        (Decision::Forbidden, _) => Err(Refusal::NotAnAdministrator),
        (Decision::Invisible, _) => Err(Refusal::Invisible),
    }
}

/// Administering `org` (members, blocks, invitations) through the calling
/// key as it stands now: [`Principal::decide`] with [`Action::Administer`]
/// (a restrained key, a secret on its way out or a blocked key
/// administers nothing); the acting member's role.
pub fn may_administer(caller: &Principal, role: Option<Role>, org: Uuid) -> Result<Role, Refusal> {
    match (caller.decide(role, Target::org(org), Action::Administer), role) {
        (Decision::Allow, Some(role)) => Ok(role),
        (Decision::Invisible, _) | (Decision::Allow, None) => Err(Refusal::Invisible),
        (Decision::Forbidden, _) => Err(Refusal::NotAnAdministrator),
    }
}

/// Deleting an organization, with everything it holds: its owning role
/// only (`super_admin`), as the calling key acts there.
pub fn may_delete_organization(caller: &Principal, role: Option<Role>, org: Uuid) -> Result<(), Refusal> {
    match caller.decide(role, Target::org(org), Action::Own) {
        Decision::Allow => Ok(()),
        Decision::Forbidden => Err(Refusal::Forbidden),
        Decision::Invisible => Err(Refusal::Invisible),
    }
}

/// Blocking a key in organization `org` by the member `actor` (their role
/// there as their key `actor_key` acts: `None` when not a member or that
/// key is blocked there): an administrator, never of the calling key
/// itself, only of a member's unscoped key (`owner_role`: the owner's role
/// there), and only of a key whose owner they outrank, or their own.
pub fn may_block(
    actor: Uuid,
    actor_key: i64,
    actor_role: Option<Role>,
    org: Uuid,
    key: &Principal,
    owner_role: Option<Role>,
) -> Result<(), Refusal> {
    let actor_role = administrator(actor_role)?;
    if key.key_id == actor_key {
        return Err(Refusal::OwnKeyBlock);
    }
    if key.scope.org == Some(org) {
        return Err(Refusal::ScopedKeyBlock(key.key_id));
    }
    if key.scope.org.is_some() || owner_role.is_none() {
        return Err(Refusal::NotBlockable);
    }
    may_act_on_member(actor, actor_role, key.user_id, owner_role)
}

/// Lifting a block: by an administrator whose role is strictly above the
/// key's owner's, who therefore never lifts a block on their own key.
pub fn may_unblock(actor_role: Option<Role>, owner_role: Option<Role>) -> Result<(), Refusal> {
    let actor_role = administrator(actor_role)?;
    if owner_role.is_none_or(|owner| actor_role.outranks(owner)) { Ok(()) } else { Err(Refusal::Outranked) }
}

/// A member's role as one of their keys acts in an organization: none at
/// all where that key is blocked. A block only ever narrows, and there it
/// reads as no membership, so every decision refuses it.
pub fn role_as_key_acts(role: Option<Role>, blocked: bool) -> Option<Role> {
    if blocked { None } else { role }
}

/// The acting member's role, if it administers the organization.
pub fn administrator(role: Option<Role>) -> Result<Role, Refusal> {
    let role = role.ok_or(Refusal::Invisible)?;
    if role.actions().contains(Action::Administer) { Ok(role) } else { Err(Refusal::NotAnAdministrator) }
}

/// Creating an organization needs an unscoped key of mode `all` (as the
/// CLI issues): a scoped key must not reach beyond its organization.
pub fn may_create_organization(caller: &Principal) -> bool {
    caller.scope.org.is_none() && caller.may_mint()
}

/// How many bytes an upload may take, and whether the organization's
/// storage quota (rather than the size limit of one bundle) sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAllowance {
    pub bytes: u64,
    pub by_quota: bool,
}

/// What one upload may take: `max_bundle` bytes, or what is left of the
/// organization's storage `quota` (its bundles take `used` now) if that is
/// less; refused at once when nothing is left.
pub fn upload_allowance(quota: Option<u64>, used: u64, max_bundle: u64) -> Result<UploadAllowance, Refusal> {
    match (quota, storage_left(quota, used)) {
        (Some(quota), Some(0)) => Err(Refusal::StorageQuota(quota)),
        (_, Some(left)) if left < max_bundle => Ok(UploadAllowance { bytes: left, by_quota: true }),
        _ => Ok(UploadAllowance { bytes: max_bundle, by_quota: false }),
    }
}

/// What an organization's bundles may still take (`quota`: its storage
/// quota, `None` for none), given what they take now: `Some(0)` is full.
pub fn storage_left(quota: Option<u64>, used: u64) -> Option<u64> {
    quota.map(|quota| quota.saturating_sub(used))
}

/// Whether an organization's bundles, taking `used` bytes with a new one,
/// stay within its `quota`.
pub fn within_storage_quota(used: u64, quota: Option<u64>) -> Result<(), Refusal> {
    match quota {
        Some(limit) if used > limit => Err(Refusal::StorageQuota(limit)),
        _ => Ok(()),
    }
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

/// The answer of `/verify` and `/auth` for a live key: the one decision when
/// an organization is concerned (`role` is the owner's role in
/// [`VerifyTarget::org`]). An unscoped key with nothing named has no role
/// to be judged by: it may read, the one action every role has, if its
/// mode allows and its owner is still a member somewhere it is not blocked
/// (`role`: their role in any such organization); anything more needs the
/// organization named, or any member's key (`user add --issue-key` gives
/// one) would act with its mode's power whatever its owner's role.
pub fn verify(key: &Principal, target: VerifyTarget<'_>, role: Option<Role>, action: Action) -> bool {
    match target.org(key) {
        Ok(Some(org)) => {
            let target = Target { org, app: target.app.map(|(_, app)| app) };
            key.decide(role, target, action).is_allowed()
        }
        Ok(None) => role.is_some() && action == Action::Read && key.mode.actions().contains(action),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
