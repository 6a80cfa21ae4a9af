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

/// Issuing an invitation: the inviter administers the organization, invites
/// only below their own role, and only someone who is not a member
/// (`invitee`: their role now, `None` for a non-member or a new address).
pub fn may_invite(inviter: Option<Role>, invited: Role, invitee: Option<Role>) -> Result<(), Refusal> {
    let inviter = administrator(inviter)?;
    if !inviter.outranks(invited) {
        return Err(Refusal::InviteAtOrAboveOwn);
    }
    if invitee.is_some() {
        return Err(Refusal::AlreadyMember);
    }
    Ok(())
}

/// Who an invitation is addressed to, as its redemption finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invitee {
    /// No account has the invitation's address.
    New,
    /// The account with the address, and its role in the organization now.
    Existing { user: Uuid, role: Option<Role> },
}

/// The key presented with a redemption: whose it is, its mode, and
/// whether it is free to speak for its owner: no limits or app limits,
/// presented by its current secret ([`Principal::may_mint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented {
    pub user: Uuid,
    pub mode: Mode,
    pub free: bool,
}

/// What redeeming an invitation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// A new account, its membership and its first key, for whoever holds
    /// the code (sent to the invitation's address).
    NewAccount,
    /// The existing account joins; no key is made.
    Join { user: Uuid },
}

/// The key an invitation was issued with, as its redemption finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuingKey {
    pub expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    /// It has limits of its own or is limited to apps ([`Principal::may_mint`]).
    pub restrained: bool,
    /// Blocked in the invitation's organization.
    pub blocked: bool,
}

impl IssuingKey {
    /// Whether an invitation issued with this key still stands at `now`:
    /// the key still exists (`None`: deleted or revoked), works, and could
    /// mint a key.
    fn stands(key: Option<IssuingKey>, now: DateTime<Utc>) -> bool {
        key.is_some_and(|key| {
            key.enabled && !key.restrained && !key.blocked && key.expires_at.is_none_or(|at| at > now)
        })
    }
}

/// Redeeming an invitation. It still stands only until it expires
/// (`open_until`, exclusive), while its inviter
/// (`inviter_now`: their role as it is now) could issue it
/// ([`may_invite`]) and the key it was issued with still exists, works and
/// could mint a key: an invitation is a credential that key made. One to an
/// existing account is accepted only by that account, with one of its keys
/// of mode `all`, and makes no key; one to a new address makes the account
/// for whoever holds the code, and no key may be presented with it.
pub fn may_redeem(
    inviter_now: Option<Role>,
    invited: Role,
    open_until: DateTime<Utc>,
    issuing_key: Option<IssuingKey>,
    now: DateTime<Utc>,
    invitee: Invitee,
    presented: Option<Presented>,
) -> Result<Redemption, Refusal> {
    if !invitation_open(open_until, now) {
        return Err(Refusal::InvitationVoid);
    }
    may_invite(inviter_now, invited, None).map_err(|_| Refusal::InvitationVoid)?;
    if !IssuingKey::stands(issuing_key, now) {
        return Err(Refusal::InvitationVoid);
    }
    match (invitee, presented) {
        (Invitee::New, None) => Ok(Redemption::NewAccount),
        (Invitee::New, Some(_)) => Err(Refusal::NotTheInvitee),
        (Invitee::Existing { .. }, None) => Err(Refusal::InvitationNeedsOwnKey),
        (Invitee::Existing { user, .. }, Some(key)) if key.user != user => Err(Refusal::NotTheInvitee),
        (Invitee::Existing { .. }, Some(key)) if key.mode != Mode::All || !key.free => {
            Err(Refusal::InvitationNeedsOwnKey)
        }
        (Invitee::Existing { role: Some(_), .. }, Some(_)) => Err(Refusal::AlreadyMember),
        (Invitee::Existing { user, role: None }, Some(_)) => Ok(Redemption::Join { user }),
    }
}

/// A key scoped to an organization belongs to a member of it: whoever
/// creates it (the operator included), its owner has a role there.
pub fn may_hold_key_in_org(owner_role: Option<Role>) -> Result<Role, Refusal> {
    owner_role.ok_or(Refusal::NotAMember)
}

/// Whoever creates an organization is its first `super_admin`.
pub const CREATOR_ROLE: Role = Role::SuperAdmin;

/// Whether an invitation that expires at `open_until` is still open at
/// `now`: to be redeemed, or listed as pending.
pub fn invitation_open(open_until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < open_until
}

/// A newcomer's first key (an invitation's, or the one `keygate user add`
/// prints) acts with mode `all` (its holder's role still caps it), so that
/// the newcomer manages their own keys with it.
pub const FIRST_KEY_MODE: Mode = Mode::All;

/// How long a first key lives where the organization requires expiry but
/// sets no maximum.
pub const FIRST_KEY_REQUIRED_EXPIRY_DAYS: i64 = 90;

/// An invitation's first key is an organization-scoped key of mode `all`
/// (the newcomer's role still caps what it does, and with it they manage
/// their own keys), a child of the key the invitation was issued with; it
/// expires as late as the organization's policy lets it (at its maximum,
/// else after [`FIRST_KEY_REQUIRED_EXPIRY_DAYS`] where expiry is required,
/// else never), and never after that issuing key (`issuer_expires_at`).
pub fn first_key_expiry(
    policy: ExpiryPolicy,
    now: DateTime<Utc>,
    issuer_expires_at: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let days = match (policy.require_expiration, policy.max_days) {
        (_, Some(max)) => Some(i64::from(max)),
        (true, None) => Some(FIRST_KEY_REQUIRED_EXPIRY_DAYS),
        (false, None) => None,
    };
    let by_policy = days.map(|days| now + chrono::Duration::days(days));
    match (by_policy, issuer_expires_at) {
        (Some(policy), Some(issuer)) => Some(policy.min(issuer)),
        (policy, issuer) => policy.or(issuer),
    }
}

/// Withdrawing an invitation: by the administrator who issued it, or one
/// who outranks its issuer (`issuer_role`: their role now; an issuer who is
/// no longer a member is outranked by every administrator).
pub fn may_withdraw_invite(
    actor: Uuid,
    actor_role: Option<Role>,
    issued_by: Option<Uuid>,
    issuer_role: Option<Role>,
) -> Result<(), Refusal> {
    let actor_role = administrator(actor_role)?;
    match issued_by {
        Some(issuer) => may_act_on_member(actor, actor_role, issuer, issuer_role),
        None => Ok(()),
    }
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
/// mode allows; anything more needs the organization named, or any
/// member's key (`user add --issue-key` gives one) would act with its
/// mode's power whatever its owner's role.
pub fn verify(key: &Principal, target: VerifyTarget<'_>, role: Option<Role>, action: Action) -> bool {
    match target.org(key) {
        Ok(Some(org)) => {
            let target = Target { org, app: target.app.map(|(_, app)| app) };
            key.decide(role, target, action).is_allowed()
        }
        Ok(None) => action == Action::Read && key.mode.actions().contains(action),
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
        Principal {
            key_id: 1,
            user_id,
            mode,
            scope: Scope { org, apps },
            expires_at: None,
            limited: false,
            retiring: false,
        }
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
        assert!(
            !may_see_key(&caller, &mine, Decision::Invisible),
            "no longer acting there: blocked, removed"
        );
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

    /// Every operation on another member's role, keys, blocks or
    /// invitations goes through one rule: a lower or equal rank is refused.
    #[test]
    fn a_member_acts_on_another_only_from_a_strictly_higher_role() {
        for actor in Role::ALL {
            for target in Role::ALL {
                let expected = if actor.outranks(target) { Ok(()) } else { Err(Refusal::Outranked) };
                assert_eq!(
                    may_act_on_member(ME, actor, YOU, Some(target)),
                    expected,
                    "{actor:?} on {target:?}"
                );
                assert_eq!(may_act_on_member(ME, actor, ME, Some(target)), Ok(()), "on oneself");
            }
            assert_eq!(may_act_on_member(ME, actor, YOU, None), Ok(()), "a former member");
        }
    }

    #[test]
    fn an_admin_never_changes_the_key_of_a_member_at_or_above_them() {
        let admin = key(ME, Mode::All, Some(ORG), &[]);
        let theirs = key(YOU, Mode::Read, Some(ORG), &[]);
        assert_eq!(
            may_change_key(&admin, Role::Admin, &theirs, Some(Role::SuperAdmin)),
            Err(Refusal::Outranked)
        );
        assert_eq!(may_change_key(&admin, Role::Admin, &theirs, Some(Role::Admin)), Err(Refusal::Outranked));
        assert_eq!(may_change_key(&admin, Role::Admin, &theirs, Some(Role::Write)), Ok(()));
        assert_eq!(may_change_key(&admin, Role::Admin, &theirs, None), Ok(()), "a former member's key");
        let own = key(ME, Mode::Read, Some(ORG), &[]);
        assert_eq!(may_change_key(&admin, Role::Read, &own, Some(Role::Read)), Ok(()));
    }

    #[test]
    fn limits_change_only_by_an_unrestrained_admin_key_and_never_by_the_key_itself() {
        let admin = key(ME, Mode::All, Some(ORG), &[]);
        let other = Principal { key_id: 2, ..key(YOU, Mode::Read, Some(ORG), &[]) };
        assert_eq!(may_change_limits(&admin, Some(Role::Admin), &other, Decision::Allow), Ok(()));
        assert_eq!(
            may_change_limits(&admin, Some(Role::Admin), &admin, Decision::Allow),
            Err(Refusal::OwnLimits)
        );
        let limited = Principal { limited: true, ..admin.clone() };
        assert_eq!(
            may_change_limits(&limited, Some(Role::Admin), &other, Decision::Allow),
            Err(Refusal::RestrainedKey)
        );
        let app_limited = key(ME, Mode::All, Some(ORG), &["com.example.a"]);
        assert_eq!(
            may_change_limits(&app_limited, Some(Role::Admin), &other, Decision::Allow),
            Err(Refusal::RestrainedKey)
        );
        assert_eq!(
            may_change_limits(&admin, Some(Role::Admin), &other, Decision::Forbidden),
            Err(Refusal::LimitsNeedAdministrator)
        );
        let unscoped = Principal { key_id: 3, ..key(YOU, Mode::Read, None, &[]) };
        assert_eq!(
            may_change_limits(&admin, Some(Role::Admin), &unscoped, Decision::Allow),
            Err(Refusal::UnscopedLimits)
        );
        // Limits set from above on an admin's own other key stay theirs to bear.
        let own_other = Principal { key_id: 4, ..key(ME, Mode::Read, Some(ORG), &[]) };
        assert_eq!(
            may_change_limits(&admin, Some(Role::Admin), &own_other, Decision::Allow),
            Err(Refusal::OwnLimits)
        );
        assert_eq!(may_change_limits(&admin, Some(Role::SuperAdmin), &own_other, Decision::Allow), Ok(()));
    }

    #[test]
    fn only_the_owner_rotates() {
        let caller = key(ME, Mode::All, Some(ORG), &[]);
        assert_eq!(may_rotate_key(&caller, &key(ME, Mode::Read, Some(ORG), &[])), Ok(()));
        assert_eq!(may_rotate_key(&caller, &key(YOU, Mode::Read, Some(ORG), &[])), Err(Refusal::NotTheOwner));
    }

    #[test]
    fn members_are_changed_only_by_admins_from_above_and_never_above_their_role() {
        use Role::*;
        let change = |acting, current, new| may_change_membership(ME, acting, YOU, current, new);
        assert_eq!(change(None, Some(Read), Some(Read)), Err(Refusal::Invisible));
        assert_eq!(change(Some(Write), Some(Read), Some(Upload)), Err(Refusal::NotAnAdministrator));
        assert_eq!(change(Some(Admin), Some(Read), Some(Admin)), Ok(()), "up to their own role");
        assert_eq!(change(Some(Admin), Some(Read), Some(SuperAdmin)), Err(Refusal::RoleAboveOwn));
        assert_eq!(change(Some(Admin), Some(SuperAdmin), Some(Read)), Err(Refusal::Outranked));
        assert_eq!(change(Some(Admin), Some(SuperAdmin), None), Err(Refusal::Outranked));
        assert_eq!(change(Some(Admin), Some(Admin), None), Err(Refusal::Outranked), "a peer");
        assert_eq!(change(Some(SuperAdmin), Some(SuperAdmin), Some(Read)), Err(Refusal::Outranked), "a peer");
        assert_eq!(change(Some(Admin), Some(Write), None), Ok(()));
        assert_eq!(change(Some(Admin), None, Some(Read)), Err(Refusal::NotAMember), "newcomers are invited");
        let own = |acting, current, new| may_change_membership(ME, acting, ME, current, new);
        assert_eq!(own(Some(Admin), Some(Admin), Some(Read)), Ok(()), "stepping down");
        assert_eq!(own(Some(Admin), Some(Admin), Some(SuperAdmin)), Err(Refusal::RoleAboveOwn));
        assert_eq!(own(Some(SuperAdmin), Some(SuperAdmin), None), Ok(()), "leaving");
    }

    #[test]
    fn invitations_offer_only_roles_below_the_inviters_and_only_to_non_members() {
        use Role::*;
        assert_eq!(may_invite(None, Read, None), Err(Refusal::Invisible));
        assert_eq!(may_invite(Some(Write), Read, None), Err(Refusal::NotAnAdministrator));
        assert_eq!(may_invite(Some(Admin), Write, None), Ok(()));
        assert_eq!(may_invite(Some(Admin), Admin, None), Err(Refusal::InviteAtOrAboveOwn));
        assert_eq!(may_invite(Some(SuperAdmin), SuperAdmin, None), Err(Refusal::InviteAtOrAboveOwn));
        assert_eq!(may_invite(Some(SuperAdmin), Admin, None), Ok(()));
        assert_eq!(may_invite(Some(SuperAdmin), Read, Some(Read)), Err(Refusal::AlreadyMember));
    }

    #[test]
    fn only_a_member_holds_a_key_scoped_to_the_organization() {
        assert_eq!(may_hold_key_in_org(None), Err(Refusal::NotAMember));
        for role in Role::ALL {
            assert_eq!(may_hold_key_in_org(Some(role)), Ok(role));
        }
    }

    #[test]
    fn an_invitation_is_redeemed_only_by_its_invitee_while_its_inviter_could_issue_it() {
        use Role::*;
        let all = |user| Some(Presented { user, mode: Mode::All, free: true });
        let now = Utc::now();
        let open = now + chrono::Duration::days(7);
        let key = IssuingKey { expires_at: None, enabled: true, restrained: false, blocked: false };
        let redeem = |inviter, invited, invitee, presented| {
            may_redeem(inviter, invited, open, Some(key), now, invitee, presented)
        };
        let existing = Invitee::Existing { user: YOU, role: None };
        assert_eq!(redeem(Some(Admin), Write, Invitee::New, None), Ok(Redemption::NewAccount));
        assert_eq!(redeem(Some(Admin), Write, existing, all(YOU)), Ok(Redemption::Join { user: YOU }));
        // The inviter was demoted, removed or lost the right meanwhile.
        assert_eq!(redeem(Some(Write), Read, Invitee::New, None), Err(Refusal::InvitationVoid));
        assert_eq!(redeem(Some(Admin), Admin, Invitee::New, None), Err(Refusal::InvitationVoid));
        assert_eq!(redeem(None, Read, Invitee::New, None), Err(Refusal::InvitationVoid));
        // The key it was issued with is gone, expired, disabled, blocked or restrained now.
        let past = Some(now - chrono::Duration::seconds(1));
        for issuing in [
            None,
            Some(IssuingKey { expires_at: past, ..key }),
            Some(IssuingKey { enabled: false, ..key }),
            Some(IssuingKey { blocked: true, ..key }),
            Some(IssuingKey { restrained: true, ..key }),
        ] {
            let void = may_redeem(Some(Admin), Read, open, issuing, now, Invitee::New, None);
            assert_eq!(void, Err(Refusal::InvitationVoid), "{issuing:?}");
        }
        // The invitation itself expired: its end is exclusive.
        for expired in [now, now - chrono::Duration::seconds(1)] {
            let void = may_redeem(Some(Admin), Read, expired, Some(key), now, Invitee::New, None);
            assert_eq!(void, Err(Refusal::InvitationVoid), "{expired}");
        }
        // An existing account, only with its own key of mode `all`.
        assert_eq!(redeem(Some(Admin), Read, existing, None), Err(Refusal::InvitationNeedsOwnKey));
        assert_eq!(redeem(Some(Admin), Read, existing, all(ME)), Err(Refusal::NotTheInvitee));
        let read_key = Some(Presented { user: YOU, mode: Mode::Read, free: true });
        let restrained = Some(Presented { user: YOU, mode: Mode::All, free: false });
        assert_eq!(
            redeem(Some(Role::Admin), Role::Read, existing, restrained),
            Err(Refusal::InvitationNeedsOwnKey),
            "a limited or retiring key speaks for nobody"
        );
        assert_eq!(redeem(Some(Admin), Read, existing, read_key), Err(Refusal::InvitationNeedsOwnKey));
        let member = Invitee::Existing { user: YOU, role: Some(Read) };
        assert_eq!(redeem(Some(SuperAdmin), Write, member, all(YOU)), Err(Refusal::AlreadyMember));
        // A new address: whoever holds the code, and nobody else's key.
        assert_eq!(redeem(Some(Admin), Read, Invitee::New, all(ME)), Err(Refusal::NotTheInvitee));
    }

    #[test]
    fn a_first_key_expires_as_late_as_the_policy_lets_it() {
        let now = Utc::now();
        let days = |d| Some(now + chrono::Duration::days(d));
        assert_eq!(first_key_expiry(ExpiryPolicy::default(), now, None), None);
        let required = ExpiryPolicy { require_expiration: true, max_days: None };
        assert_eq!(first_key_expiry(required, now, None), days(FIRST_KEY_REQUIRED_EXPIRY_DAYS));
        let bounded = ExpiryPolicy { require_expiration: false, max_days: Some(30) };
        assert_eq!(first_key_expiry(bounded, now, None), days(30));
        assert_eq!(bounded.check(first_key_expiry(bounded, now, None), now), Ok(()));
        // Never after the key the invitation was issued with.
        assert_eq!(first_key_expiry(ExpiryPolicy::default(), now, days(1)), days(1));
        assert_eq!(first_key_expiry(bounded, now, days(1)), days(1));
        assert_eq!(first_key_expiry(bounded, now, days(60)), days(30));
    }

    #[test]
    fn invitations_are_withdrawn_by_their_issuer_or_from_above_the_issuer() {
        use Role::*;
        assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(ME), Some(Admin)), Ok(()));
        assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(Write)), Ok(()), "from above");
        assert_eq!(
            may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(Admin)),
            Err(Refusal::Outranked),
            "a peer's"
        );
        assert_eq!(
            may_withdraw_invite(ME, Some(Admin), Some(YOU), Some(SuperAdmin)),
            Err(Refusal::Outranked)
        );
        assert_eq!(may_withdraw_invite(ME, Some(Admin), Some(YOU), None), Ok(()), "a former member's");
        assert_eq!(
            may_withdraw_invite(ME, Some(Write), Some(ME), Some(Write)),
            Err(Refusal::NotAnAdministrator)
        );
        assert_eq!(may_withdraw_invite(ME, None, Some(ME), None), Err(Refusal::Invisible));
    }

    #[test]
    fn a_restrained_key_manages_itself_alone() {
        let free = key(ME, Mode::All, Some(ORG), &[]);
        let limited = Principal { limited: true, ..free.clone() };
        let app_limited = key(ME, Mode::All, Some(ORG), &["com.example.a"]);
        let sibling = Principal { key_id: 2, ..key(ME, Mode::Read, Some(ORG), &[]) };
        assert_eq!(may_manage_other_key(&free, &sibling), Ok(()));
        assert_eq!(may_manage_other_key(&limited, &sibling), Err(Refusal::RestrainedKey));
        assert_eq!(may_manage_other_key(&app_limited, &sibling), Err(Refusal::RestrainedKey));
        assert_eq!(may_manage_other_key(&limited, &limited), Ok(()), "itself");
    }

    #[test]
    fn only_owners_set_the_limits_every_key_shares() {
        assert_eq!(may_change_shared_limits(Role::SuperAdmin), Ok(()));
        assert_eq!(may_change_shared_limits(Role::Admin), Err(Refusal::SharedLimitsNeedOwner));
    }

    #[test]
    fn blocks_reach_only_members_unscoped_keys_from_above() {
        use Role::*;
        let theirs = Principal { key_id: 2, ..key(YOU, Mode::All, None, &[]) };
        let block = |role, key: &Principal, owner| may_block(ME, 1, Some(role), ORG, key, owner);
        assert_eq!(block(Admin, &theirs, Some(Write)), Ok(()));
        assert_eq!(block(Admin, &theirs, Some(Admin)), Err(Refusal::Outranked));
        assert_eq!(block(Admin, &theirs, Some(SuperAdmin)), Err(Refusal::Outranked));
        assert_eq!(block(Admin, &theirs, None), Err(Refusal::NotBlockable));
        assert_eq!(block(Write, &theirs, Some(Read)), Err(Refusal::NotAnAdministrator));
        let calling = key(ME, Mode::All, None, &[]);
        assert_eq!(block(SuperAdmin, &calling, Some(SuperAdmin)), Err(Refusal::OwnKeyBlock));
        let other_own = Principal { key_id: 5, ..calling.clone() };
        assert_eq!(block(Admin, &other_own, Some(Admin)), Ok(()), "another key of one's own");
        let scoped = Principal { key_id: 3, ..key(YOU, Mode::Read, Some(ORG), &[]) };
        assert_eq!(block(SuperAdmin, &scoped, Some(Read)), Err(Refusal::ScopedKeyBlock(3)));
        let elsewhere = Principal { key_id: 4, ..key(YOU, Mode::Read, Some(OTHER), &[]) };
        assert_eq!(block(SuperAdmin, &elsewhere, Some(Read)), Err(Refusal::NotBlockable));
        assert_eq!(may_unblock(Some(Admin), Some(Write)), Ok(()));
        assert_eq!(may_unblock(Some(Admin), Some(Admin)), Err(Refusal::Outranked));
        assert_eq!(may_unblock(Some(Write), Some(Read)), Err(Refusal::NotAnAdministrator));
        assert_eq!(may_unblock(None, Some(Read)), Err(Refusal::Invisible));
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
        assert!(!may_create_organization(&Principal { limited: true, ..key(ME, Mode::All, None, &[]) }));
        assert!(!may_create_organization(&Principal { retiring: true, ..key(ME, Mode::All, None, &[]) }));
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
        let unscoped = key(ME, Mode::All, None, &[]);
        assert!(verify(&unscoped, nothing, None, Action::Read), "what every role may");
        // Tenth review: a read member's unscoped key passed `admin` rules.
        for action in [Action::Write, Action::Upload, Action::Administer, Action::Own] {
            assert!(!verify(&unscoped, nothing, None, action), "{action:?}: no role to judge it by");
        }
        let elsewhere = VerifyTarget { org: Some(OTHER), app: None };
        assert!(!verify(&unscoped, elsewhere, None, Action::Read), "not a member there");
    }

    #[test]
    fn an_organization_is_changed_by_its_administrators_and_its_shared_limits_by_its_owners() {
        let caller = key(ME, Mode::All, None, &[]);
        let update = |role, limits| may_update_organization(&caller, role, ORG, limits);
        assert_eq!(update(Some(Role::Admin), false), Ok(()));
        assert_eq!(update(Some(Role::Admin), true), Err(Refusal::SharedLimitsNeedOwner));
        assert_eq!(update(Some(Role::SuperAdmin), true), Ok(()));
        assert_eq!(update(Some(Role::Write), false), Err(Refusal::NotAnAdministrator));
        assert_eq!(update(None, false), Err(Refusal::Invisible), "not a member, or blocked there");
        let read_key = key(ME, Mode::Read, None, &[]);
        assert_eq!(
            may_update_organization(&read_key, Some(Role::SuperAdmin), ORG, false),
            Err(Refusal::NotAnAdministrator)
        );
        let elsewhere = key(ME, Mode::All, Some(OTHER), &[]);
        assert_eq!(
            may_update_organization(&elsewhere, Some(Role::SuperAdmin), ORG, false),
            Err(Refusal::Invisible)
        );
    }

    #[test]
    fn only_an_owner_deletes_an_organization() {
        let caller = key(ME, Mode::All, None, &[]);
        assert_eq!(may_delete_organization(&caller, Some(Role::SuperAdmin), ORG), Ok(()));
        assert_eq!(may_delete_organization(&caller, Some(Role::Admin), ORG), Err(Refusal::Forbidden));
        assert_eq!(may_delete_organization(&caller, None, ORG), Err(Refusal::Invisible));
        let write_key = key(ME, Mode::Write, None, &[]);
        assert_eq!(may_delete_organization(&write_key, Some(Role::SuperAdmin), ORG), Err(Refusal::Forbidden));
    }

    #[test]
    fn a_storage_quota_bounds_what_is_left_and_what_is_kept() {
        assert_eq!(storage_left(None, 10), None);
        assert_eq!(storage_left(Some(100), 30), Some(70));
        assert_eq!(storage_left(Some(100), 130), Some(0), "over a lowered quota: full");
        assert_eq!(within_storage_quota(100, Some(100)), Ok(()));
        assert_eq!(within_storage_quota(101, Some(100)), Err(Refusal::StorageQuota(100)));
        assert_eq!(within_storage_quota(u64::MAX, None), Ok(()));
        let allowance = |bytes, by_quota| Ok(UploadAllowance { bytes, by_quota });
        assert_eq!(upload_allowance(None, 10, 50), allowance(50, false));
        assert_eq!(upload_allowance(Some(100), 30, 50), allowance(50, false));
        assert_eq!(upload_allowance(Some(100), 60, 50), allowance(40, true));
        assert_eq!(upload_allowance(Some(100), 100, 50), Err(Refusal::StorageQuota(100)));
        assert_eq!(upload_allowance(Some(100), 130, 50), Err(Refusal::StorageQuota(100)));
    }

    #[test]
    fn a_blocked_key_acts_as_a_non_member() {
        assert_eq!(role_as_key_acts(Some(Role::SuperAdmin), true), None);
        assert_eq!(role_as_key_acts(Some(Role::Read), false), Some(Role::Read));
        assert_eq!(role_as_key_acts(None, false), None);
    }

    #[test]
    fn only_a_free_key_of_an_administrator_administers() {
        let free = key(ME, Mode::All, None, &[]);
        assert_eq!(may_administer(&free, Some(Role::Admin), ORG), Ok(Role::Admin));
        assert_eq!(may_administer(&free, Some(Role::Write), ORG), Err(Refusal::NotAnAdministrator));
        assert_eq!(may_administer(&free, None, ORG), Err(Refusal::Invisible), "removed, or blocked there");
        let limited = Principal { limited: true, ..free.clone() };
        assert_eq!(may_administer(&limited, Some(Role::SuperAdmin), ORG), Err(Refusal::NotAnAdministrator));
        let retiring = Principal { retiring: true, ..free };
        assert_eq!(may_administer(&retiring, Some(Role::SuperAdmin), ORG), Err(Refusal::NotAnAdministrator));
    }
}
