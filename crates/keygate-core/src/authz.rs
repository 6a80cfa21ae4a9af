//! The authorization model, decided in one place.
//!
//! A request may perform an [`Action`] only if the key's [`Mode`] permits it,
//! the key owner's [`Role`] in the organization concerned permits it, and the
//! organization (and app, for app-limited keys) lies inside the key's
//! [`Scope`]. What lies outside the scope, or in an organization the owner
//! does not belong to, is [`Decision::Invisible`] (answered as 404, so that
//! nothing can be probed); what is visible but not permitted is
//! [`Decision::Forbidden`] (403).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::AppId;

/// R read data · W modify data · U upload a bundle · A administer · O own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write,
    Upload,
    Administer,
    Own,
}

impl Action {
    pub const ALL: [Action; 5] =
        [Action::Read, Action::Write, Action::Upload, Action::Administer, Action::Own];

    /// The word an API or a rules file names it by.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Upload => "upload",
            Action::Administer => "admin",
            Action::Own => "own",
        }
    }

    /// What a request of this HTTP method needs where no rule says more:
    /// reading for `GET`, `HEAD` and `OPTIONS`, writing for any other.
    pub fn for_method(method: &str) -> Action {
        if matches!(method, "GET" | "HEAD" | "OPTIONS") { Action::Read } else { Action::Write }
    }

    /// The action named `s` ([`Action::as_str`]).
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A write of an app or of its bundles. What each needs of its caller on
/// the app is stated once, here: the handler's early answer and the store's
/// decision in the write's own transaction both read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppWrite {
    Create,
    Rename,
    Delete,
    Upload,
    DeleteBundle,
}

impl AppWrite {
    /// The action it needs: [`Action::Upload`] to add a bundle,
    /// [`Action::Write`] for the rest.
    pub const fn action(self) -> Action {
        match self {
            AppWrite::Upload => Action::Upload,
            AppWrite::Create | AppWrite::Rename | AppWrite::Delete | AppWrite::DeleteBundle => Action::Write,
        }
    }
}

/// A set of actions: what a mode or a role permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    const fn of(actions: &[Action]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < actions.len() {
            bits |= actions[i].bit();
            i += 1;
        }
        Self(bits)
    }

    pub const fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub const fn is_subset_of(self, other: Actions) -> bool {
        self.0 & !other.0 == 0
    }
}

use Action::{Administer as A, Own as O, Read as R, Upload as U, Write as W};

/// What a key may do, whoever holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Read,
    Write,
    Upload,
    All,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Read, Mode::Write, Mode::Upload, Mode::All];

    pub const fn actions(self) -> Actions {
        match self {
            Mode::Read => Actions::of(&[R]),
            Mode::Write => Actions::of(&[R, W]),
            Mode::Upload => Actions::of(&[R, W, U]),
            Mode::All => Actions::of(&[R, W, U, A, O]),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Upload => "upload",
            Mode::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What a member may do in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Read,
    Upload,
    Write,
    Admin,
    SuperAdmin,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Read, Role::Upload, Role::Write, Role::Admin, Role::SuperAdmin];

    pub const fn actions(self) -> Actions {
        match self {
            Role::Read => Actions::of(&[R]),
            Role::Upload => Actions::of(&[R, U]),
            Role::Write => Actions::of(&[R, U, W]),
            Role::Admin => Actions::of(&[R, U, W, A]),
            Role::SuperAdmin => Actions::of(&[R, U, W, A, O]),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Upload => "upload",
            Role::Write => "write",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a member with this role may hand out `other`.
    pub const fn covers(self, other: Role) -> bool {
        other.actions().is_subset_of(self.actions())
    }

    /// Whether this role ranks strictly above `other`: roles are ordered by
    /// inclusion, `read` < `upload` < `write` < `admin` < `super_admin`.
    pub const fn outranks(self, other: Role) -> bool {
        self.covers(other) && !other.covers(self)
    }
}

/// Where a key may act: one organization or all of its owner's, and a set of
/// apps or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// `None`: every organization the owner belongs to (CLI-issued keys only).
    pub org: Option<Uuid>,
    /// Empty: every app of the organization.
    pub apps: Vec<AppId>,
}

impl Scope {
    pub fn contains_org(&self, org: Uuid) -> bool {
        self.org.is_none_or(|own| own == org)
    }

    pub fn contains_app(&self, app: &AppId) -> bool {
        self.apps.is_empty() || self.apps.contains(app)
    }

    pub fn is_app_limited(&self) -> bool {
        !self.apps.is_empty()
    }

    /// The subset rule: `inner` reaches nothing that `self` does not.
    pub fn covers(&self, inner: &Scope) -> bool {
        let orgs = match (self.org, inner.org) {
            (None, _) => true,
            (Some(own), Some(other)) => own == other,
            (Some(_), None) => false,
        };
        let apps = !self.is_app_limited()
            || (inner.is_app_limited() && inner.apps.iter().all(|a| self.apps.contains(a)));
        orgs && apps
    }
}

/// What a request acts on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub org: Uuid,
    /// `None` for organization-level resources.
    pub app: Option<&'a AppId>,
}

impl<'a> Target<'a> {
    pub fn org(org: Uuid) -> Self {
        Self { org, app: None }
    }

    pub fn app(org: Uuid, app: &'a AppId) -> Self {
        Self { org, app: Some(app) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Inside the key's scope but not permitted: 403.
    Forbidden,
    /// Outside the key's scope, or the owner is not a member: 404.
    Invisible,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// The authenticated key behind a request: whose it is and what it may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: i64,
    pub user_id: Uuid,
    pub mode: Mode,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the key has rate limits or credits of its own.
    pub limited: bool,
    /// Presented by its previous secret, inside a rotation's grace period:
    /// it keeps acting, but manages no keys and administers nothing, so a
    /// secret on its way out never outlives itself.
    pub retiring: bool,
}

/// What a key management request asks to hand out.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub mode: Mode,
    pub scope: &'a Scope,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// The one decision: mode ∩ role ∩ scope. `role` is the owner's role in
    /// `target.org`, `None` when the owner is not a member.
    pub fn decide(&self, role: Option<Role>, target: Target<'_>, action: Action) -> Decision {
        if !self.scope.contains_org(target.org) {
            return Decision::Invisible;
        }
        let Some(role) = role else {
            return Decision::Invisible;
        };
        // Administering reaches other members and their keys: only a key
        // free to mint one may, or its restraints would not bind it.
        if matches!(action, Action::Administer | Action::Own) && !self.may_mint() {
            return Decision::Forbidden;
        }
        match target.app {
            Some(app) if !self.scope.contains_app(app) => return Decision::Invisible,
            // An app-limited key only reads at organization level: creating
            // apps or administering the organization would escape its apps.
            None if self.scope.is_app_limited() && action != Action::Read => {
                return Decision::Forbidden;
            }
            _ => {}
        }
        if self.mode.actions().contains(action) && role.actions().contains(action) {
            Decision::Allow
        } else {
            Decision::Forbidden
        }
    }

    /// Key management (listing, creating, changing, deleting keys) needs a
    /// key of mode `all`, whatever the role.
    pub fn may_manage_keys(&self) -> bool {
        self.mode == Mode::All && !self.retiring
    }

    /// Whether this key may create keys: only one that nothing restrains
    /// (no rate limits or credits of its own, no app limits), or its
    /// children would escape its restraints.
    pub fn may_mint(&self) -> bool {
        self.may_manage_keys() && !self.limited && !self.scope.is_app_limited()
    }

    /// Nobody creates or changes a key into more than they have: its mode,
    /// organization and apps inside the caller's, and, when the caller
    /// expires, an expiry no later than the caller's.
    pub fn may_grant(&self, grant: &Grant<'_>) -> bool {
        let mode = grant.mode.actions().is_subset_of(self.mode.actions());
        let expiry = match (self.expires_at, grant.expires_at) {
            (None, _) => true,
            (Some(own), Some(new)) => new <= own,
            (Some(_), None) => false,
        };
        mode && expiry && self.scope.covers(grant.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(mode: Mode, scope: Scope) -> Principal {
        Principal {
            key_id: 1,
            user_id: Uuid::nil(),
            mode,
            scope,
            expires_at: None,
            limited: false,
            retiring: false,
        }
    }

    fn app(s: &str) -> AppId {
        AppId::parse(s).expect("valid app id")
    }

    #[test]
    fn modes_and_roles_are_ordered_by_inclusion() {
        for pair in Mode::ALL.windows(2) {
            assert!(pair[0].actions().is_subset_of(pair[1].actions()));
        }
        for pair in Role::ALL.windows(2) {
            assert!(pair[0].actions().is_subset_of(pair[1].actions()));
            assert!(pair[1].covers(pair[0]) && !pair[0].covers(pair[1]));
            assert!(pair[1].outranks(pair[0]) && !pair[0].outranks(pair[1]));
        }
        for role in Role::ALL {
            assert!(!role.outranks(role), "nobody outranks their equal");
        }
    }

    #[test]
    fn an_upload_member_uploads_bundles_and_changes_no_app() {
        let target = app("com.acme.app");
        let org = Uuid::from_u128(7);
        let key = principal(Mode::All, Scope { org: Some(org), apps: vec![] });
        let all =
            [AppWrite::Create, AppWrite::Rename, AppWrite::Delete, AppWrite::Upload, AppWrite::DeleteBundle];
        for write in all {
            let decide =
                |role| key.decide(Some(role), Target::app(org, &target), write.action()).is_allowed();
            assert_eq!(decide(Role::Upload), write == AppWrite::Upload, "{write:?} by an upload member");
            assert!(decide(Role::Write), "{write:?} by a write member");
            assert!(!decide(Role::Read), "{write:?} by a read member");
        }
    }

    #[test]
    fn only_a_key_free_to_mint_administers_or_owns() {
        let org = Uuid::from_u128(1);
        let free = principal(Mode::All, Scope { org: Some(org), apps: vec![] });
        let target = Target::org(org);
        for restrained in [
            Principal { limited: true, ..free.clone() },
            Principal { retiring: true, ..free.clone() },
            principal(Mode::All, Scope { org: Some(org), apps: vec![app("com.example.a")] }),
        ] {
            for action in [Action::Administer, Action::Own] {
                assert_eq!(
                    restrained.decide(Some(Role::SuperAdmin), target, action),
                    Decision::Forbidden,
                    "{restrained:?}"
                );
            }
        }
        let limited = Principal { limited: true, ..free.clone() };
        assert_eq!(
            limited.decide(Some(Role::SuperAdmin), target, Action::Write),
            Decision::Allow,
            "it still acts"
        );
        assert_eq!(free.decide(Some(Role::SuperAdmin), target, Action::Own), Decision::Allow);
        assert!(!Principal { retiring: true, ..free }.may_manage_keys(), "a secret in its grace period");
    }

    #[test]
    fn only_an_unrestrained_all_key_mints_keys() {
        let org = Uuid::from_u128(1);
        let free = principal(Mode::All, Scope { org: Some(org), apps: vec![] });
        assert!(free.may_mint());
        assert!(!principal(Mode::Write, Scope { org: Some(org), apps: vec![] }).may_mint());
        assert!(!Principal { limited: true, ..free.clone() }.may_mint(), "rate limits or credits");
        let app_limited = principal(Mode::All, Scope { org: Some(org), apps: vec![app("com.example.a")] });
        assert!(!app_limited.may_mint(), "limited to apps");
    }

    #[test]
    fn names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(Mode::parse(mode.as_str()), Some(mode));
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Mode::parse("superuser"), None);
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn the_decision_intersects_mode_role_and_scope() {
        let org = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let upload = principal(Mode::Upload, Scope { org: Some(org), apps: vec![] });
        let target = Target::org(org);
        assert_eq!(upload.decide(Some(Role::Admin), target, Action::Upload), Decision::Allow);
        assert_eq!(upload.decide(Some(Role::Read), target, Action::Upload), Decision::Forbidden);
        assert_eq!(upload.decide(Some(Role::Admin), target, Action::Administer), Decision::Forbidden);
        assert_eq!(upload.decide(None, target, Action::Read), Decision::Invisible);
        assert_eq!(upload.decide(Some(Role::Admin), Target::org(other), Action::Read), Decision::Invisible);
    }

    #[test]
    fn app_limited_keys_see_only_their_apps() {
        let org = Uuid::from_u128(1);
        let mine = app("com.example.mine");
        let theirs = app("com.example.theirs");
        let key = principal(Mode::All, Scope { org: Some(org), apps: vec![mine.clone()] });
        let role = Some(Role::SuperAdmin);
        assert_eq!(key.decide(role, Target::app(org, &mine), Action::Write), Decision::Allow);
        assert_eq!(key.decide(role, Target::app(org, &theirs), Action::Read), Decision::Invisible);
        assert_eq!(key.decide(role, Target::org(org), Action::Read), Decision::Allow);
        assert_eq!(key.decide(role, Target::org(org), Action::Administer), Decision::Forbidden);
    }

    #[test]
    fn grants_never_exceed_the_grantor() {
        let org = Uuid::from_u128(1);
        let a = app("com.example.a");
        let b = app("com.example.b");
        let scoped = Scope { org: Some(org), apps: vec![a.clone()] };
        let mut caller = principal(Mode::All, scoped.clone());
        let narrower = Scope { org: Some(org), apps: vec![a.clone()] };
        let wider = Scope { org: Some(org), apps: vec![] };
        let elsewhere = Scope { org: Some(org), apps: vec![b] };
        let grant = |scope, expires_at| Grant { mode: Mode::Read, scope, expires_at };
        assert!(caller.may_grant(&grant(&narrower, None)));
        assert!(!caller.may_grant(&grant(&wider, None)));
        assert!(!caller.may_grant(&grant(&elsewhere, None)));
        let unscoped = Scope::default();
        assert!(!caller.may_grant(&grant(&unscoped, None)));

        let soon = Utc::now() + chrono::Duration::days(1);
        caller.expires_at = Some(soon);
        assert!(!caller.may_grant(&grant(&narrower, None)));
        assert!(caller.may_grant(&grant(&narrower, Some(soon))));
        assert!(!caller.may_grant(&grant(&narrower, Some(soon + chrono::Duration::seconds(1)))));

        let reader = principal(Mode::Read, Scope::default());
        assert!(!reader.may_grant(&Grant { mode: Mode::All, scope: &narrower, expires_at: None }));
    }
}
