//! Invitations: who may invite whom, who redeems, what the first key of a
//! new account is, and who may withdraw one.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ExpiryPolicy, Refusal, administrator, may_act_on_member};
use crate::authz::{Mode, Role};

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
/// presented by its current secret ([`Principal::may_mint`](crate::authz::Principal::may_mint)).
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
    /// It has limits of its own or is limited to apps ([`Principal::may_mint`](crate::authz::Principal::may_mint)).
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
