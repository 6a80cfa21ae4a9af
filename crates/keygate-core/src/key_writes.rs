//! Whether a change of an existing key — an edit, a new secret, a deletion —
//! may commit, decided by [`may_write_key`] over [`KeyWriteFacts`]: the
//! calling key, the key changed and the roles and policy around them, as the
//! write's own transaction reads them with the rows it changes. A handler may
//! ask the same question earlier for a quick answer; the commit never rests
//! on that earlier read.

use chrono::{DateTime, Utc};

use crate::authz::{Action, Decision, Grant, Mode, Principal, Role, Scope, Target};
use crate::domain::AppId;
use crate::rules::{self, ExpiryPolicy, Refusal};

/// Whether a key works at `now`, as authentication and every write judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Live,
    /// Its expiry has passed (checked first: an expired key says so).
    Expired,
    Disabled,
}

impl Liveness {
    pub fn of(enabled: bool, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Liveness {
        if expires_at.is_some_and(|at| at <= now) {
            Liveness::Expired
        } else if !enabled {
            Liveness::Disabled
        } else {
            Liveness::Live
        }
    }
}

/// Whether a secret found with `valid_until` still answers at `now`: a
/// key's current secret always (`None`), its previous one until the end of
/// the rotation's grace period, exclusive.
pub fn secret_answers(valid_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    valid_until.is_none_or(|until| until > now)
}

/// A key as a write finds it.
#[derive(Debug, Clone)]
pub struct KeyState {
    pub principal: Principal,
    pub enabled: bool,
}

impl KeyState {
    /// The calling key, if it still works at `now`: a key deleted, disabled
    /// or expired since the request was authenticated changes nothing.
    pub fn acting(caller: Option<&KeyState>, now: DateTime<Utc>) -> Result<&Principal, Refusal> {
        match caller {
            Some(key) if Liveness::of(key.enabled, key.principal.expires_at, now) == Liveness::Live => {
                Ok(&key.principal)
            }
            _ => Err(Refusal::CallerRevoked),
        }
    }
}

/// What a change of an existing key is decided on.
#[derive(Debug, Clone)]
pub struct KeyWriteFacts {
    /// The calling key as it stands now; `None` once deleted.
    pub caller: Option<KeyState>,
    /// The caller's role in the changed key's organization as the calling
    /// key acts there: `None` when not a member, or blocked there. Unused
    /// for an unscoped key.
    pub caller_role: Option<Role>,
    /// The key changed.
    pub key: Principal,
    /// Its owner's role in its organization; `None` when not a member.
    pub owner_role: Option<Role>,
    /// Its organization's expiry policy; `None` for an unscoped key.
    pub policy: Option<ExpiryPolicy>,
    pub now: DateTime<Utc>,
}

/// What an edit asks for, beyond its name (which binds nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEdit {
    pub mode: Option<Mode>,
    pub apps: Option<Vec<AppId>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Whether it touches what the key may spend (enabled, rate limits, credits).
    pub limits: bool,
}

/// A change of an existing key.
#[derive(Debug, Clone, Copy)]
pub enum KeyWrite<'a> {
    Edit(&'a KeyEdit),
    /// A new secret for the same key.
    Rotate,
    Delete,
}

/// Whether `write` may commit, over `facts`:
///
/// 1. the calling key still works and manages keys (mode `all`);
/// 2. it sees the key ([`rules::may_see_key`]; else [`Refusal::KeyNotFound`]);
/// 3. a rotation is the owner's own ([`rules::may_rotate_key`]); an edit or
///    a deletion of a scoped key needs membership there and a role above
///    its owner's ([`rules::may_change_key`]);
/// 4. a restrained key changes only itself ([`rules::may_manage_other_key`]);
/// 5. an edited expiry meets the organization's policy, edited limits need
///    [`rules::may_change_limits`];
/// 6. the key as it will be is within the caller's own power
///    ([`Principal::may_grant`]): a new secret is a new credential too.
pub fn may_write_key(facts: &KeyWriteFacts, write: KeyWrite<'_>) -> Result<(), Refusal> {
    let caller = KeyState::acting(facts.caller.as_ref(), facts.now)?;
    if !caller.may_manage_keys() {
        return Err(Refusal::Forbidden);
    }
    let key = &facts.key;
    let admin = match key.scope.org {
        Some(org) => caller.decide(facts.caller_role, Target::org(org), Action::Administer),
        None => Decision::Invisible,
    };
    if !rules::may_see_key(caller, key, admin) {
        return Err(Refusal::KeyNotFound);
    }
    match write {
        KeyWrite::Rotate => {
            rules::may_rotate_key(caller, key)?;
            rules::may_manage_other_key(caller, key)?;
            within_caller(caller, key.mode, key.scope.clone(), key.expires_at)
        }
        KeyWrite::Delete => {
            may_reach_owner(facts, caller)?;
            rules::may_manage_other_key(caller, key)
        }
        KeyWrite::Edit(edit) => {
            may_reach_owner(facts, caller)?;
            rules::may_manage_other_key(caller, key)?;
            let expires_at = edit.expires_at.unwrap_or(key.expires_at);
            if let (Some(policy), Some(_)) = (facts.policy, edit.expires_at) {
                policy.check(expires_at, facts.now).map_err(Refusal::ExpiryPolicy)?;
            }
            if edit.limits {
                rules::may_change_limits(caller, facts.caller_role, key, admin)?;
            }
            let apps = edit.apps.clone().unwrap_or_else(|| key.scope.apps.clone());
            within_caller(
                caller,
                edit.mode.unwrap_or(key.mode),
                Scope { org: key.scope.org, apps },
                expires_at,
            )
        }
    }
}

/// Whether the calling key (`caller`, as it stands now) may create a key
/// of `grant` in `org`, where it acts with `role` (`None`: not a member, or
/// blocked there) under the organization's `policy`: a live, unrestrained
/// key of mode `all` ([`Principal::may_mint`]), a member there, handing
/// out nothing beyond itself, within the policy (reported first).
pub fn may_create_key(
    caller: Option<&KeyState>,
    role: Option<Role>,
    grant: &Grant<'_>,
    policy: ExpiryPolicy,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let caller = KeyState::acting(caller, now)?;
    if !caller.may_manage_keys() {
        return Err(Refusal::Forbidden);
    }
    if !caller.may_mint() {
        return Err(Refusal::RestrainedKey);
    }
    let org = grant.scope.org.ok_or(Refusal::Invisible)?;
    rules::key_management_role(caller, org, role)?;
    policy.check(grant.expires_at, now).map_err(Refusal::ExpiryPolicy)?;
    if caller.may_grant(grant) { Ok(()) } else { Err(Refusal::Forbidden) }
}

/// A scoped key is changed only by a member there who outranks its owner,
/// or by its owner.
fn may_reach_owner(facts: &KeyWriteFacts, caller: &Principal) -> Result<(), Refusal> {
    let Some(org) = facts.key.scope.org else {
        return Ok(());
    };
    let caller_role = rules::key_management_role(caller, org, facts.caller_role)?;
    let owner_role = if facts.key.user_id == caller.user_id { Some(caller_role) } else { facts.owner_role };
    rules::may_change_key(caller, caller_role, &facts.key, owner_role)
}

fn within_caller(
    caller: &Principal,
    mode: Mode,
    scope: Scope,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), Refusal> {
    if caller.may_grant(&Grant { mode, scope: &scope, expires_at }) {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::rules::PolicyViolation;

    const ORG: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const ME: Uuid = Uuid::from_u128(10);
    const YOU: Uuid = Uuid::from_u128(11);

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").expect("time").with_timezone(&Utc)
    }

    fn principal(key_id: i64, user_id: Uuid, mode: Mode, org: Option<Uuid>) -> Principal {
        Principal {
            key_id,
            user_id,
            mode,
            scope: Scope { org, apps: vec![] },
            expires_at: None,
            limited: false,
            retiring: false,
        }
    }

    /// An admin's `all` key changing a read member's key in ORG.
    fn facts() -> KeyWriteFacts {
        KeyWriteFacts {
            caller: Some(KeyState { principal: principal(1, ME, Mode::All, Some(ORG)), enabled: true }),
            caller_role: Some(Role::Admin),
            key: principal(2, YOU, Mode::Read, Some(ORG)),
            owner_role: Some(Role::Read),
            policy: Some(ExpiryPolicy::default()),
            now: now(),
        }
    }

    fn edit(change: impl FnOnce(&mut KeyEdit)) -> KeyEdit {
        let mut edit = KeyEdit::default();
        change(&mut edit);
        edit
    }

    /// The rule, the facts, the edit (or another write), what must come of it.
    type Row = (&'static str, KeyWriteFacts, KeyEdit, Option<KeyWrite<'static>>, Result<(), Refusal>);

    #[test]
    fn each_rule_of_a_key_write_decides_over_the_facts_it_names() {
        let days = |n| Some(Some(now() + chrono::Duration::days(n)));
        let rows: Vec<Row> = vec![
            ("an admin edits a lesser member's key", facts(), KeyEdit::default(), None, Ok(())),
            (
                "a deleted calling key writes nothing",
                KeyWriteFacts { caller: None, ..facts() },
                KeyEdit::default(),
                None,
                Err(Refusal::CallerRevoked),
            ),
            (
                "a disabled calling key writes nothing",
                KeyWriteFacts { caller: facts().caller.map(|c| KeyState { enabled: false, ..c }), ..facts() },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::CallerRevoked),
            ),
            (
                "an expired calling key writes nothing",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.expires_at = Some(now());
                        c
                    }),
                    ..facts()
                },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::CallerRevoked),
            ),
            (
                "only an all key manages keys",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.mode = Mode::Write;
                        c
                    }),
                    ..facts()
                },
                KeyEdit::default(),
                None,
                Err(Refusal::Forbidden),
            ),
            (
                "a caller demoted below admin no longer sees another's key",
                KeyWriteFacts { caller_role: Some(Role::Write), ..facts() },
                KeyEdit::default(),
                None,
                Err(Refusal::KeyNotFound),
            ),
            (
                "a caller blocked or removed there sees nothing",
                KeyWriteFacts { caller_role: None, ..facts() },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::KeyNotFound),
            ),
            (
                "a peer's key is out of reach",
                KeyWriteFacts { owner_role: Some(Role::Admin), ..facts() },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::Outranked),
            ),
            (
                "only the owner rotates",
                facts(),
                KeyEdit::default(),
                Some(KeyWrite::Rotate),
                Err(Refusal::NotTheOwner),
            ),
            (
                "a key of another organization is invisible",
                KeyWriteFacts { key: principal(2, YOU, Mode::Read, Some(OTHER)), ..facts() },
                KeyEdit::default(),
                None,
                Err(Refusal::KeyNotFound),
            ),
            (
                "an expiry past the policy as it stands is refused",
                KeyWriteFacts {
                    policy: Some(ExpiryPolicy { require_expiration: true, max_days: Some(30) }),
                    ..facts()
                },
                edit(|e| e.expires_at = days(31)),
                None,
                Err(Refusal::ExpiryPolicy(PolicyViolation::ExceedsMaxDays(30))),
            ),
            (
                "removing the expiry where it is required is refused",
                KeyWriteFacts {
                    policy: Some(ExpiryPolicy { require_expiration: true, max_days: None }),
                    ..facts()
                },
                edit(|e| e.expires_at = Some(None)),
                None,
                Err(Refusal::ExpiryPolicy(PolicyViolation::ExpirationRequired)),
            ),
            (
                "an edit leaving the expiry alone is not judged by the policy",
                KeyWriteFacts {
                    policy: Some(ExpiryPolicy { require_expiration: true, max_days: None }),
                    ..facts()
                },
                edit(|e| e.mode = Some(Mode::Write)),
                None,
                Ok(()),
            ),
            (
                "an administrator changes a lesser member's limits",
                facts(),
                edit(|e| e.limits = true),
                None,
                Ok(()),
            ),
            (
                "limits need an administrator, even on one's own other key",
                KeyWriteFacts {
                    caller_role: Some(Role::Write),
                    key: principal(2, ME, Mode::Read, Some(ORG)),
                    ..facts()
                },
                edit(|e| e.limits = true),
                None,
                Err(Refusal::LimitsNeedAdministrator),
            ),
            (
                "no key changes its own limits",
                KeyWriteFacts {
                    key: principal(1, ME, Mode::All, Some(ORG)),
                    owner_role: Some(Role::Admin),
                    ..facts()
                },
                edit(|e| e.limits = true),
                None,
                Err(Refusal::OwnLimits),
            ),
            (
                "an unscoped key's limits are the operator's",
                KeyWriteFacts {
                    caller: Some(KeyState { principal: principal(1, ME, Mode::All, None), enabled: true }),
                    key: principal(3, ME, Mode::Read, None),
                    policy: None,
                    ..facts()
                },
                edit(|e| e.limits = true),
                None,
                Err(Refusal::UnscopedLimits),
            ),
            (
                "a restrained key changes no other key of its owner",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.limited = true;
                        c
                    }),
                    key: principal(2, ME, Mode::Read, Some(ORG)),
                    ..facts()
                },
                edit(|e| e.mode = Some(Mode::Write)),
                None,
                Err(Refusal::RestrainedKey),
            ),
            (
                "a restrained key deletes no other key of its owner",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.limited = true;
                        c
                    }),
                    key: principal(2, ME, Mode::All, Some(ORG)),
                    ..facts()
                },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::RestrainedKey),
            ),
            (
                "a restrained key administers nothing: another member's keys are out of its sight",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.limited = true;
                        c
                    }),
                    ..facts()
                },
                KeyEdit::default(),
                Some(KeyWrite::Delete),
                Err(Refusal::KeyNotFound),
            ),
            (
                "nothing outlives the caller",
                KeyWriteFacts {
                    caller: facts().caller.map(|mut c| {
                        c.principal.expires_at = Some(now() + chrono::Duration::days(5));
                        c
                    }),
                    ..facts()
                },
                edit(|e| e.expires_at = days(6)),
                None,
                Err(Refusal::Forbidden),
            ),
        ];
        for (rule, facts, edit, write, expected) in rows {
            let write = write.unwrap_or(KeyWrite::Edit(&edit));
            assert_eq!(may_write_key(&facts, write), expected, "{rule}");
        }
    }

    #[test]
    fn an_owner_rotates_a_key_only_within_its_calling_key() {
        let mut own = facts();
        own.key = principal(2, ME, Mode::Read, Some(ORG));
        assert_eq!(may_write_key(&own, KeyWrite::Rotate), Ok(()));
        own.key.expires_at = None;
        if let Some(caller) = &mut own.caller {
            caller.principal.expires_at = Some(now() + chrono::Duration::days(1));
        }
        assert_eq!(may_write_key(&own, KeyWrite::Rotate), Err(Refusal::Forbidden), "a never-expiring secret");
    }

    #[test]
    fn a_previous_secret_answers_until_its_grace_period_ends() {
        assert!(secret_answers(None, now()));
        assert!(secret_answers(Some(now() + chrono::Duration::milliseconds(1)), now()));
        assert!(!secret_answers(Some(now()), now()), "the end is exclusive");
    }

    #[test]
    fn liveness_reads_expiry_before_enabled() {
        let past = Some(now() - chrono::Duration::seconds(1));
        assert_eq!(Liveness::of(false, past, now()), Liveness::Expired);
        assert_eq!(Liveness::of(false, None, now()), Liveness::Disabled);
        assert_eq!(Liveness::of(true, Some(now()), now()), Liveness::Expired, "an expiry is exclusive");
        assert_eq!(Liveness::of(true, None, now()), Liveness::Live);
    }
}
