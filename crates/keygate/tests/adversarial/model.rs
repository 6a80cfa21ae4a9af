//! A model-based property: random sequences of operations by random
//! principals, sent over real HTTP to a real keygate (a fresh one per case),
//! each checked against a model written from the rules of keys, members,
//! invitations and blocks — not from keygate's code.
//!
//! The operations: create, change, rotate and delete a key; report a key
//! as leaked (revocation); set a member's role, remove a member; issue,
//! redeem and withdraw an invitation; block and unblock a key. The rules
//! the model holds them to, beyond each one's own:
//! - a key with rate limits or credits of its own, limited to apps or not
//!   of mode `all` is *restrained*: it creates no keys and no invitations,
//!   and changes or rotates no key but itself (within its own bounds);
//! - revoking a key deletes every key it created, transitively, through
//!   keys deleted in between and through the invitations it issued;
//! - an invitation is a credential made by the key it was issued with: it
//!   stands only while its inviter could still issue it and that key still
//!   exists, is enabled, is not blocked in the invitation's organization
//!   and is not restrained; a new account's first key is that key's child
//!   and expires no later than it;
//! - an invitation is withdrawn by its issuer, or by an admin whose role is
//!   strictly above the issuer's current one (any admin once the issuer
//!   has left);
//! - a key is rotated only by a key of its own user that sees it and could
//!   have created it; an unscoped key blocked in an organization sees
//!   nothing there, its owner's keys scoped to it included.
//!
//! After every step it checks that:
//! - the HTTP outcome (2xx or refused) is the model's decision;
//! - the memberships of each organization (who, with which role) are the
//!   model's;
//! - the keys (owner, mode, organization, apps, expiry, rate limits,
//!   credits, enabled, which key created them) are the model's, none more;
//! - the keys that act in each organization, and which of them are blocked
//!   there, are the model's;
//! - the pending invitations of each organization (to whom, as what, by
//!   whom and with which key) are the model's.
//!
//! So no principal ever holds a key or membership with more power, wider
//! scope, later expiry or looser limits than the rules grant, whatever the
//! order of operations; and nothing the rules allow is refused.
//!
//! The universe is small so that principals meet: `Acme` (its owner and
//! four members at random roles), a second tenant with its own organization,
//! two addresses with no account yet, two apps, three expiries (days ahead,
//! so that time never flips a decision), and every key made so far as a
//! possible actor or target. Each case opens with a few keys of Acme, most
//! of them restrained, and an invitation issued with one of them; actors
//! are most often any key (a deleted one included), else the latest, a
//! restrained one or one of the owner's, who restrains, disables, blocks
//! or revokes the keys pending invitations were issued with.
//! `KEYGATE_MODEL_CASES` (default 64 on SQLite, 32 on PostgreSQL, where a
//! fresh database takes half a second) and `KEYGATE_MODEL_STEPS` (default
//! 40: each case runs two thirds of that to all of it, its opening
//! included) make the run larger; `KEYGATE_MODEL_VERBOSE` also prints why
//! the model refused what it refused, and what the allowed steps reached
//! that the rules of restraint, lineage and invitations decide. A failure
//! shrinks to a short sequence and prints it, step by step, with each key
//! described.
//!
//! A second test replays, through the same model and checks, the attacks
//! the outside reviews found, each as a fixed sequence of these operations
//! with the decision the rules give each step.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Account, Reply, TestApp, spawn_app_with};

// ---------------------------------------------------------------------------
// The rules' vocabulary, restated here rather than imported, so that the
// model does not share the system's definitions.

/// R read, W write, U upload, A administer, O own.
const R: u8 = 1;
const W: u8 = 2;
const U: u8 = 4;
const A: u8 = 8;
const O: u8 = 16;

/// Roles, lowest to highest (the derived order is the rules' order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Read,
    Upload,
    Write,
    Admin,
    SuperAdmin,
}

const ROLES: [Role; 5] = [Role::Read, Role::Upload, Role::Write, Role::Admin, Role::SuperAdmin];

impl Role {
    fn actions(self) -> u8 {
        match self {
            Role::Read => R,
            Role::Upload => R | U,
            Role::Write => R | U | W,
            Role::Admin => R | U | W | A,
            Role::SuperAdmin => R | U | W | A | O,
        }
    }

    fn administers(self) -> bool {
        self.actions() & A != 0
    }

    fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Upload => "upload",
            Role::Write => "write",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    fn core(self) -> keygate_core::Role {
        keygate_core::Role::parse(self.name()).expect("the same role names")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
    Upload,
    All,
}

impl Mode {
    fn actions(self) -> u8 {
        match self {
            Mode::Read => R,
            Mode::Write => R | W,
            Mode::Upload => R | W | U,
            Mode::All => R | W | U | A | O,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Upload => "upload",
            Mode::All => "all",
        }
    }

    /// Whether a key of this mode reaches nothing `other` does not.
    fn within(self, other: Mode) -> bool {
        self.actions() & !other.actions() == 0
    }
}

/// The two apps a key may be limited to, as bits: 0 is "every app".
const APPS: [&str; 2] = ["com.example.a", "com.example.b"];

fn app_ids(apps: u8) -> Vec<&'static str> {
    APPS.iter().enumerate().filter(|(i, _)| apps & (1 << i) != 0).map(|(_, a)| *a).collect()
}

/// Whether a key limited to `inner` (0: every app) stays inside `outer`.
fn apps_within(inner: u8, outer: u8) -> bool {
    outer == 0 || (inner != 0 && inner & !outer == 0)
}

const ORG_NAMES: [&str; 2] = ["Acme", "Other"];
const ACME: usize = 0;
const OTHER: usize = 1;
/// As an operation's organization: the acting key's own (the one it is
/// scoped to, else Acme if its owner belongs there, else Other).
const ACTORS: usize = 2;

/// The people of every case: the owner of Acme, its four members, the
/// other tenant, and two addresses nobody has an account for yet.
const PEOPLE: [(&str, &str); 8] = [
    ("owner", "owner@example.com"),
    ("alice", "alice@example.com"),
    ("bob", "bob@example.com"),
    ("carol", "carol@example.com"),
    ("dave", "dave@example.com"),
    ("tina", "tina@example.com"),
    ("newcomer", "newcomer@example.com"),
    ("stranger", "stranger@example.com"),
];
const OWNER: usize = 0;
const TINA: usize = 5;

// ---------------------------------------------------------------------------
// Operations, as generated.

/// What a new key may spend.
#[derive(Clone, Copy, Debug)]
enum Restraint {
    Unlimited,
    Credits,
    RateLimit,
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Mode(Mode),
    Apps(u8),
    /// An index into the expiries, or `None`: never expires.
    Expiry(Option<u8>),
    Name,
    ToggleEnabled,
    ToggleRateLimit,
    ToggleCredits,
}

/// A key (`k0`, `k1`, … in the order they were made: `k0`–`k5` are the
/// owner's, alice's, bob's, carol's, dave's and tina's unscoped keys) or an
/// invitation (`i0`, … in the order they were issued), modulo how many
/// there are.
type Pick = usize;

/// Among which keys a target is picked.
#[derive(Clone, Copy, Debug)]
enum Among {
    /// Every key made so far.
    All,
    /// The keys of the actor's owner.
    Own,
    /// The keys scoped to the actor's organization ([`ACTORS`]).
    Org,
    /// The keys that created keys.
    Parents,
    /// The keys pending invitations were issued with.
    Issuers,
    /// Those of them the actor sees, other than itself.
    SeenIssuers,
    /// The keys the actor sees, other than itself.
    Visible,
    /// The keys of the actor's owner it sees, other than itself.
    Siblings,
}

/// Among which keys an actor is picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum By {
    /// Every key made so far.
    Any,
    /// The key made last.
    Latest,
    /// The restrained keys of mode `all` still alive: those the rules of
    /// restraint (rather than of key management) refuse.
    Restrained,
    /// The owner's keys of mode `all` still alive: Acme's super_admin, who
    /// reaches its other members' keys (limits, blocks, invitations).
    Owner,
}

/// `actor`, `target` and `with` pick among every key made so far (a
/// deleted one included: it must be refused), an actor as `by` says (among
/// every key if there is none such: `Latest` makes chains of keys), a
/// target as `among` says (for a restrained actor: among the other keys it
/// sees, for a rotation its owner's), `with` with `true` among the
/// invitee's keys; `org` is [`ACME`], [`OTHER`] or [`ACTORS`]; `person`
/// picks among [`PEOPLE`]; `invite` among the invitations issued so far.
/// An `Unblock` with `of_blocked` takes the `target`-th block there is (in
/// whichever organization), if any; a `Redeem` with `pending` takes the
/// `invite`-th invitation neither used nor withdrawn, if any; a `Revoke`
/// with `of_parents` takes the `target`-th key that created keys or issued
/// invitations, if any; a `Withdraw` names the invitation's organization,
/// or with `elsewhere` the actor's.
#[derive(Clone, Debug)]
enum Op {
    CreateKey { actor: Pick, by: By, org: usize, mode: Mode, apps: u8, expiry: Option<u8>, limit: Restraint },
    UpdateKey { actor: Pick, by: By, target: Pick, among: Among, change: Change },
    RotateKey { actor: Pick, by: By, target: Pick, among: Among },
    DeleteKey { actor: Pick, target: Pick, among: Among },
    Revoke { target: Pick, of_parents: bool },
    SetRole { actor: Pick, org: usize, person: usize, role: Role },
    RemoveMember { actor: Pick, org: usize, person: usize },
    Invite { actor: Pick, by: By, org: usize, person: usize, role: Role },
    Redeem { invite: Pick, pending: bool, with: Option<(Pick, bool)> },
    Withdraw { actor: Pick, by: By, invite: Pick, elsewhere: bool },
    Block { actor: Pick, by: By, org: usize, target: Pick, among: Among },
    Unblock { actor: Pick, org: usize, target: Pick, of_blocked: bool },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::CreateKey { .. } => "create key",
            Op::UpdateKey { .. } => "update key",
            Op::RotateKey { .. } => "rotate key",
            Op::DeleteKey { .. } => "delete key",
            Op::Revoke { .. } => "revoke",
            Op::SetRole { .. } => "set role",
            Op::RemoveMember { .. } => "remove member",
            Op::Invite { .. } => "invite",
            Op::Redeem { .. } => "redeem",
            Op::Withdraw { .. } => "withdraw invite",
            Op::Block { .. } => "block",
            Op::Unblock { .. } => "unblock",
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    /// The roles of alice, bob, carol and dave in Acme.
    roles: [Role; 4],
    ops: Vec<Op>,
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(ROLES.to_vec())
}

/// Below the owner, most often high enough to administer.
fn invited_role() -> impl Strategy<Value = Role> {
    prop_oneof![2 => Just(Role::Admin), 2 => Just(Role::Write), 1 => Just(Role::Read), 1 => role()]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![3 => Just(Mode::All), 1 => Just(Mode::Read), 1 => Just(Mode::Write), 1 => Just(Mode::Upload)]
}

fn apps() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0u8), 1 => 1..4u8]
}

fn expiry() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![2 => Just(None), 1 => (0..3u8).prop_map(Some)]
}

fn org() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(ACTORS), 2 => Just(ACME), 1 => Just(OTHER)]
}

fn person() -> impl Strategy<Value = usize> {
    0..PEOPLE.len()
}

fn limit() -> impl Strategy<Value = Restraint> {
    prop_oneof![Just(Restraint::Unlimited), Just(Restraint::Credits), Just(Restraint::RateLimit)]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        mode().prop_map(Change::Mode),
        apps().prop_map(Change::Apps),
        expiry().prop_map(Change::Expiry),
        Just(Change::Name),
        Just(Change::ToggleEnabled),
        Just(Change::ToggleRateLimit),
        Just(Change::ToggleCredits),
    ]
}

/// Any key or invitation made so far (modulo how many there are).
fn pick() -> impl Strategy<Value = Pick> {
    0..64usize
}

/// Most often any key, often the latest (chains of keys), sometimes the
/// owner's (so that Acme has keys, restrained ones among them).
fn creator() -> impl Strategy<Value = By> {
    prop_oneof![3 => Just(By::Any), 3 => Just(By::Latest), 4 => Just(By::Owner), 1 => Just(By::Restrained)]
}

/// An inviting key: often the latest or the owner's (keys scoped to an
/// organization, whose limits an admin may change), or a restrained one.
fn inviter() -> impl Strategy<Value = By> {
    prop_oneof![3 => Just(By::Any), 2 => Just(By::Latest), 3 => Just(By::Owner), 1 => Just(By::Restrained)]
}

/// A change that would void the invitations a key issued, or undo that.
fn voiding_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::ToggleEnabled),
        Just(Change::ToggleCredits),
        Just(Change::ToggleRateLimit),
        mode().prop_map(Change::Mode),
        apps().prop_map(Change::Apps),
    ]
}

/// Most often one of the unscoped keys, the only ones a block applies to.
fn unscoped_pick() -> impl Strategy<Value = Pick> {
    prop_oneof![3 => 0..6usize, 1 => pick()]
}

/// Most often any key; else the latest, a restrained one or the owner's.
fn by() -> impl Strategy<Value = By> {
    prop_oneof![5 => Just(By::Any), 1 => Just(By::Latest), 3 => Just(By::Restrained), 2 => Just(By::Owner)]
}

/// Most often someone who is not a member of Acme.
fn invitee() -> impl Strategy<Value = usize> {
    prop_oneof![2 => person(), 1 => TINA..PEOPLE.len()]
}

fn among() -> impl Strategy<Value = Among> {
    prop_oneof![
        Just(Among::All),
        Just(Among::Own),
        Just(Among::Org),
        Just(Among::Parents),
        Just(Among::Issuers),
        Just(Among::Visible),
        Just(Among::Siblings)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (pick(), creator(), org(), mode(), apps(), expiry(), limit()).prop_map(
            |(actor, by, org, mode, apps, expiry, limit)| Op::CreateKey {
                actor,
                by,
                org,
                mode,
                apps,
                expiry,
                limit
            }
        ),
        5 => (pick(), by(), pick(), among(), change())
            .prop_map(|(actor, by, target, among, change)| Op::UpdateKey { actor, by, target, among, change }),
        // Acme's owner restrains, disables or narrows the keys invitations
        // were issued with.
        2 => (pick(), pick(), voiding_change()).prop_map(|(actor, target, change)| Op::UpdateKey {
            actor,
            by: By::Owner,
            target,
            among: Among::SeenIssuers,
            change
        }),
        2 => (pick(), by(), pick(), among())
            .prop_map(|(actor, by, target, among)| Op::RotateKey { actor, by, target, among }),
        2 => (pick(), pick(), among()).prop_map(|(actor, target, among)| Op::DeleteKey { actor, target, among }),
        2 => (pick(), prop::bool::weighted(0.8)).prop_map(|(target, of_parents)| Op::Revoke { target, of_parents }),
        3 => (pick(), org(), person(), role())
            .prop_map(|(actor, org, person, role)| Op::SetRole { actor, org, person, role }),
        2 => (pick(), org(), person()).prop_map(|(actor, org, person)| Op::RemoveMember { actor, org, person }),
        5 => (pick(), inviter(), org(), invitee(), invited_role())
            .prop_map(|(actor, by, org, person, role)| Op::Invite { actor, by, org, person, role }),
        5 => (pick(), prop::bool::weighted(0.75), prop::option::weighted(0.6, (pick(), any::<bool>())))
            .prop_map(|(invite, pending, with)| Op::Redeem { invite, pending, with }),
        2 => (pick(), by(), pick(), prop::bool::weighted(0.2))
            .prop_map(|(actor, by, invite, elsewhere)| Op::Withdraw { actor, by, invite, elsewhere }),
        2 => (pick(), by(), org(), unscoped_pick())
            .prop_map(|(actor, by, org, target)| Op::Block { actor, by, org, target, among: Among::All }),
        // Acme's owner blocks the keys invitations were issued with.
        2 => (pick(), pick()).prop_map(|(actor, target)| Op::Block {
            actor,
            by: By::Owner,
            org: ACME,
            target,
            among: Among::Issuers
        }),
        2 => (pick(), org(), unscoped_pick(), prop::bool::weighted(0.75)).prop_map(
            |(actor, org, target, of_blocked)| Op::Unblock { actor, org, target, of_blocked }
        ),
    ]
}

/// What each case begins with: keys of Acme made by the owner, alice or
/// bob (with their unscoped keys `k0`–`k2`), most of them restrained, then
/// one without limits and, most often, an invitation issued with it: so
/// that restrained keys act, and invitations issued with keys scoped to an
/// organization (whose limits an admin may change) are pending, from the
/// start.
fn opening() -> impl Strategy<Value = Vec<Op>> {
    let key = |actor, apps, expiry, limit| Op::CreateKey {
        actor,
        by: By::Any,
        org: ACME,
        mode: Mode::All,
        apps,
        expiry,
        limit,
    };
    let restrained =
        (0..3usize, apps(), expiry(), limit()).prop_map(move |(a, apps, e, l)| key(a, apps, e, l));
    // Most often expiring, so that the first key its invitation makes does.
    let plain = (0..3usize, prop::option::weighted(0.6, 0..3u8))
        .prop_map(move |(a, e)| key(a, 0, e, Restraint::Unlimited));
    let invite = (TINA..PEOPLE.len(), invited_role()).prop_map(|(person, role)| Op::Invite {
        actor: 0,
        by: By::Latest,
        org: ACME,
        person,
        role,
    });
    (prop::collection::vec(restrained, 0..=2), plain, prop::option::weighted(0.8, invite)).prop_map(
        |(mut ops, plain, invite)| {
            ops.push(plain);
            ops.extend(invite);
            ops
        },
    )
}

fn case(steps: usize) -> impl Strategy<Value = Case> {
    let roles = (
        prop::sample::select(vec![Role::Admin, Role::SuperAdmin]),
        prop::sample::select(vec![Role::Admin, Role::Write]),
        role(),
        role(),
    );
    // The opening counts among the steps.
    let (fewest, most) = ((steps * 2 / 3).saturating_sub(4).max(1), steps.saturating_sub(4).max(1));
    (roles, opening(), prop::collection::vec(op(), fewest..=most)).prop_map(|((a, b, c, d), opening, ops)| {
        Case { roles: [a, b, c, d], ops: opening.into_iter().chain(ops).collect() }
    })
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug)]
struct Person {
    name: &'static str,
    email: &'static str,
    /// The account's id, once there is one.
    user: Option<Uuid>,
}

#[derive(Clone, Debug)]
struct Key {
    id: i64,
    secret: String,
    owner: usize,
    mode: Mode,
    org: Option<usize>,
    apps: u8,
    expires_at: Option<DateTime<Utc>>,
    /// The `limit` of its one rate limit (named `default`), if any.
    ratelimit: Option<u64>,
    credits: bool,
    enabled: bool,
    created_by: Option<usize>,
    alive: bool,
}

impl Key {
    fn limited(&self) -> bool {
        self.ratelimit.is_some() || self.credits
    }

    /// Rate limits or credits of its own, app limits, or a mode other than
    /// `all`: such a key creates no keys and no invitations, changes and
    /// rotates no key but itself, and the invitations it issued are void.
    fn restrained(&self) -> bool {
        self.limited() || self.apps != 0 || self.mode != Mode::All
    }
}

#[derive(Clone, Debug)]
struct Invite {
    id: i64,
    code: String,
    org: usize,
    person: usize,
    role: Role,
    inviter: usize,
    /// The key it was issued with.
    key: usize,
    /// The first key it made, if it made one.
    made: Option<usize>,
    used: bool,
    withdrawn: bool,
}

/// Why the model refuses.
type Refusal = String;

fn refuse<T>(why: &str) -> Result<T, Refusal> {
    Err(why.to_owned())
}

/// What a redemption does when the model allows it.
enum Redemption {
    NewAccount,
    Join,
}

struct Model {
    people: Vec<Person>,
    orgs: [Uuid; 2],
    members: [BTreeMap<usize, Role>; 2],
    keys: Vec<Key>,
    invites: Vec<Invite>,
    /// (organization, key) pairs.
    blocks: BTreeSet<(usize, usize)>,
    /// Expiries are this plus 10, 20 or 30 days.
    base: DateTime<Utc>,
    /// Makes each rate limit set distinct.
    counter: u64,
    /// What the allowed steps reached that the new rules decide, counted.
    reached: BTreeMap<&'static str, u64>,
}

impl Model {
    fn expiry(&self, index: Option<u8>) -> Option<DateTime<Utc>> {
        index.map(|i| self.base + Duration::days(10 * (i64::from(i) + 1)))
    }

    fn role(&self, org: usize, person: usize) -> Option<Role> {
        self.members[org].get(&person).copied()
    }

    fn super_admins(&self, org: usize) -> usize {
        self.members[org].values().filter(|r| **r == Role::SuperAdmin).count()
    }

    fn person_of(&self, user: Uuid) -> Option<usize> {
        self.people.iter().position(|p| p.user == Some(user))
    }

    /// The key authenticates: it exists and is enabled (no expiry is ever
    /// in the past here).
    fn usable(&self, k: usize) -> Result<&Key, Refusal> {
        let key = &self.keys[k];
        if !key.alive {
            return refuse("the calling key does not exist");
        }
        if !key.enabled {
            return refuse("the calling key is disabled");
        }
        Ok(key)
    }

    /// Key management needs a usable key of mode `all`.
    fn key_manager(&self, k: usize) -> Result<&Key, Refusal> {
        let key = self.usable(k)?;
        if key.mode != Mode::All {
            return refuse("key management needs a key of mode all");
        }
        Ok(key)
    }

    /// The owner's role in `org` as key `k` acts there: `None` when the org
    /// is outside the key's scope, the owner is not a member, or the key
    /// is blocked there.
    fn acting_role(&self, k: usize, org: usize) -> Option<Role> {
        let key = &self.keys[k];
        if key.org.is_some_and(|own| own != org) {
            return None;
        }
        if key.org.is_none() && self.blocks.contains(&(org, k)) {
            return None;
        }
        self.role(org, key.owner)
    }

    /// The administer right in `org` through key `k`: mode `all`, not
    /// limited to apps, and a role of admin or above; the role.
    fn admin_role(&self, k: usize, org: usize) -> Result<Role, Refusal> {
        let key = self.usable(k)?;
        let Some(role) = self.acting_role(k, org) else {
            return refuse("the organization is outside the key's view");
        };
        if key.mode != Mode::All {
            return refuse("administering needs a key of mode all");
        }
        if key.apps != 0 {
            return refuse("an app-limited key does not administer an organization");
        }
        if key.limited() {
            return refuse("a key with rate limits or credits administers nothing");
        }
        if !role.administers() {
            return refuse("administering needs the role admin or above");
        }
        Ok(role)
    }

    /// Whether `target` lies inside the scope of `caller` (organization and
    /// apps); an unscoped key's scope is every organization its owner
    /// belongs to, where it is not blocked.
    fn inside_scope(&self, caller: usize, target: usize) -> bool {
        let (c, t) = (&self.keys[caller], &self.keys[target]);
        let orgs = match (c.org, t.org) {
            (None, None) => true,
            (None, Some(org)) => self.acting_role(caller, org).is_some(),
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
        };
        orgs && apps_within(t.apps, c.apps)
    }

    fn visible(&self, caller: usize, target: usize) -> bool {
        let t = &self.keys[target];
        (t.owner == self.keys[caller].owner && self.inside_scope(caller, target))
            || t.org.is_some_and(|org| self.admin_role(caller, org).is_ok())
    }

    /// For a key scoped to an organization and owned by someone else, the
    /// caller's role there is strictly above the owner's.
    fn outranks_owner(&self, caller: usize, target: usize) -> Result<(), Refusal> {
        let t = &self.keys[target];
        let Some(org) = t.org else {
            return Ok(());
        };
        if t.owner == self.keys[caller].owner {
            return Ok(());
        }
        let Some(mine) = self.acting_role(caller, org) else {
            return refuse("the key's organization is outside the caller's view");
        };
        match self.role(org, t.owner) {
            Some(theirs) if mine > theirs => Ok(()),
            Some(_) => refuse("the key's owner is a peer or a superior"),
            // No rank to protect (never happens: leaving deletes such keys).
            None => Ok(()),
        }
    }

    /// Whether a key of this mode, apps and expiry stays within the calling
    /// key `caller`: its mode inside the caller's, its apps inside the
    /// caller's (if the caller is app-limited), and, if the caller expires,
    /// an expiry no later.
    fn within_caller(
        &self,
        caller: usize,
        mode: Mode,
        apps: u8,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), Refusal> {
        let c = &self.keys[caller];
        if !mode.within(c.mode) {
            return refuse("a mode wider than the calling key's");
        }
        if !apps_within(apps, c.apps) {
            return refuse("apps outside the calling key's");
        }
        if let Some(own) = c.expires_at
            && expires_at.is_none_or(|at| at > own)
        {
            return refuse("an expiry later than the calling key's");
        }
        Ok(())
    }

    fn may_create(
        &self,
        k: usize,
        org: usize,
        mode: Mode,
        apps: u8,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), Refusal> {
        let key = self.key_manager(k)?;
        if key.restrained() {
            return refuse("a key with limits or app limits creates no keys");
        }
        if self.acting_role(k, org).is_none() {
            return refuse("the organization is outside the key's scope, or the caller is not a member");
        }
        self.within_caller(k, mode, apps, expires_at)
    }

    fn may_update(&self, k: usize, t: usize, change: Change) -> Result<(), Refusal> {
        self.key_manager(k)?;
        let target = &self.keys[t];
        if !target.alive {
            return refuse("no such key");
        }
        if !self.visible(k, t) {
            return refuse("the key is not visible to the caller");
        }
        self.outranks_owner(k, t)?;
        if k != t && self.keys[k].restrained() {
            return refuse("a restrained key changes no key but itself");
        }
        let (mut mode, mut apps, mut expires_at) = (target.mode, target.apps, target.expires_at);
        match change {
            Change::Mode(m) => mode = m,
            Change::Apps(a) => apps = a,
            Change::Expiry(e) => expires_at = self.expiry(e),
            _ => {}
        }
        self.within_caller(k, mode, apps, expires_at)?;
        if matches!(change, Change::ToggleEnabled | Change::ToggleRateLimit | Change::ToggleCredits) {
            if k == t {
                return refuse("a key changes no limits of its own");
            }
            let Some(org) = target.org else {
                return refuse("the limits of an unscoped key are the operator's");
            };
            let role = self.admin_role(k, org)?;
            if target.owner == self.keys[k].owner && role != Role::SuperAdmin {
                return refuse("limits on one's own keys change only from the owning role");
            }
        }
        Ok(())
    }

    /// A new secret for a key: only the key's own user's, only one the
    /// caller could have created, and by a restrained key only its own.
    fn may_rotate(&self, k: usize, t: usize) -> Result<(), Refusal> {
        self.key_manager(k)?;
        let target = &self.keys[t];
        if !target.alive {
            return refuse("no such key");
        }
        if !self.visible(k, t) {
            return refuse("the key is not visible to the caller");
        }
        if target.owner != self.keys[k].owner {
            return refuse("only the key's own user rotates it");
        }
        if k != t && self.keys[k].restrained() {
            return refuse("a restrained key rotates no key but itself");
        }
        self.within_caller(k, target.mode, target.apps, target.expires_at)
    }

    fn may_delete(&self, k: usize, t: usize) -> Result<(), Refusal> {
        self.key_manager(k)?;
        if !self.keys[t].alive {
            return refuse("no such key");
        }
        if !self.visible(k, t) {
            return refuse("the key is not visible to the caller");
        }
        self.outranks_owner(k, t)?;
        if k != t && self.keys[k].restrained() {
            return refuse("a restrained key deletes no key but itself");
        }
        Ok(())
    }

    fn may_set_role(&self, k: usize, org: usize, person: usize, role: Role) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        let Some(current) = self.role(org, person) else {
            return refuse("not a member (newcomers are invited)");
        };
        if role > mine {
            return refuse("a role above the caller's own");
        }
        if person != self.keys[k].owner && mine <= current {
            return refuse("the member is a peer or a superior");
        }
        if current == Role::SuperAdmin && role != Role::SuperAdmin && self.super_admins(org) <= 1 {
            return refuse("the last super_admin");
        }
        Ok(())
    }

    fn may_remove(&self, k: usize, org: usize, person: usize) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        let Some(current) = self.role(org, person) else {
            return refuse("not a member");
        };
        if person != self.keys[k].owner && mine <= current {
            return refuse("the member is a peer or a superior");
        }
        if current == Role::SuperAdmin && self.super_admins(org) <= 1 {
            return refuse("the last super_admin");
        }
        Ok(())
    }

    fn may_invite(&self, k: usize, org: usize, person: usize, role: Role) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        if self.keys[k].restrained() {
            return refuse("a restrained key creates no invitations");
        }
        if role >= mine {
            return refuse("an invitation's role must be strictly below the inviter's");
        }
        if self.role(org, person).is_some() {
            return refuse("already a member");
        }
        Ok(())
    }

    /// Withdrawing invitation `i` from `org`: an administrator there, its
    /// issuer or one whose role is strictly above the issuer's now.
    fn may_withdraw(&self, k: usize, org: usize, i: usize) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        let invite = &self.invites[i];
        if invite.org != org {
            return refuse("not an invitation of that organization");
        }
        if invite.used || invite.withdrawn {
            return refuse("the invitation is not pending");
        }
        if invite.inviter == self.keys[k].owner {
            return Ok(());
        }
        match self.role(org, invite.inviter) {
            Some(theirs) if mine <= theirs => refuse("the issuer is a peer or a superior"),
            // An issuer who left is outranked by every administrator.
            _ => Ok(()),
        }
    }

    fn may_redeem(&self, i: usize, with: Option<usize>) -> Result<Redemption, Refusal> {
        let invite = &self.invites[i];
        if invite.used {
            return refuse("the invitation was used");
        }
        if invite.withdrawn {
            return refuse("the invitation was withdrawn");
        }
        match self.role(invite.org, invite.inviter) {
            Some(inviter) if inviter.administers() && inviter > invite.role => {}
            _ => return refuse("void: the inviter could no longer issue it"),
        }
        // A credential the issuing key made: void unless that key still
        // could make one (no expiry is ever in the past here).
        let issuing = &self.keys[invite.key];
        if !issuing.alive {
            return refuse("void: its issuing key was deleted or revoked");
        }
        if !issuing.enabled {
            return refuse("void: its issuing key is disabled");
        }
        if self.blocks.contains(&(invite.org, invite.key)) {
            return refuse("void: its issuing key is blocked there");
        }
        if issuing.restrained() {
            return refuse("void: its issuing key is restrained now");
        }
        if self.people[invite.person].user.is_none() {
            return match with {
                None => Ok(Redemption::NewAccount),
                Some(_) => refuse("a new account's invitation is redeemed without a key"),
            };
        }
        let Some(k) = with else {
            return refuse("an existing account's invitation needs one of its keys");
        };
        let key = self.usable(k)?;
        if key.owner != invite.person {
            return refuse("not the invitee's key");
        }
        if key.mode != Mode::All {
            return refuse("the invitee's key is not of mode all");
        }
        if key.restrained() {
            return refuse("a restrained key speaks for nobody");
        }
        if self.role(invite.org, invite.person).is_some() {
            return refuse("already a member");
        }
        Ok(Redemption::Join)
    }

    fn may_block(&self, k: usize, org: usize, t: usize) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        if k == t {
            return refuse("a key does not block itself");
        }
        let target = &self.keys[t];
        if !target.alive {
            return refuse("no such key");
        }
        if target.org.is_some() {
            return refuse("only unscoped keys are blocked");
        }
        let Some(theirs) = self.role(org, target.owner) else {
            return refuse("the key's owner is not a member");
        };
        if target.owner != self.keys[k].owner && mine <= theirs {
            return refuse("the key's owner is a peer or a superior");
        }
        Ok(())
    }

    fn may_unblock(&self, k: usize, org: usize, t: usize) -> Result<(), Refusal> {
        let mine = self.admin_role(k, org)?;
        if !self.keys[t].alive || !self.blocks.contains(&(org, t)) {
            return refuse("the key is not blocked there");
        }
        let target = &self.keys[t];
        if target.owner == self.keys[k].owner {
            return refuse("never by the key's owner");
        }
        match self.role(org, target.owner) {
            Some(theirs) if mine <= theirs => refuse("the key's owner is a peer or a superior"),
            // A former member has no rank there any more.
            _ => Ok(()),
        }
    }

    /// An operation's organization, [`ACTORS`] resolved for key `k`.
    fn org_for(&self, k: usize, org: usize) -> usize {
        match (org, self.keys[k].org) {
            (ACTORS, Some(own)) => own,
            (ACTORS, None) if self.members[ACME].contains_key(&self.keys[k].owner) => ACME,
            (ACTORS, None) => OTHER,
            (org, _) => org,
        }
    }

    /// The keys `among` names for the actor `k`.
    fn targets(&self, k: usize, among: Among) -> Vec<usize> {
        let (owner, org) = (self.keys[k].owner, self.org_for(k, ACTORS));
        let seen = |t: usize| t != k && self.keys[t].alive && self.visible(k, t);
        (0..self.keys.len())
            .filter(|t| match among {
                Among::All => true,
                Among::Own => self.keys[*t].owner == owner,
                Among::Org => self.keys[*t].org == Some(org),
                Among::Parents => self.keys.iter().any(|c| c.created_by == Some(*t)),
                Among::Issuers => self.issued_pending(*t),
                Among::SeenIssuers => self.issued_pending(*t) && seen(*t),
                Among::Visible => seen(*t),
                Among::Siblings => self.keys[*t].owner == owner && seen(*t),
            })
            .collect()
    }

    /// The `pick`-th key among those `among` names for the actor `k` (among
    /// all of them when there is none).
    fn target_for(&self, k: usize, pick: Pick, among: Among) -> usize {
        let keys = self.targets(k, among);
        match keys.is_empty() {
            true => pick % self.keys.len(),
            false => keys[pick % keys.len()],
        }
    }

    /// Whether key `t` issued an invitation still pending.
    fn issued_pending(&self, t: usize) -> bool {
        self.invites.iter().any(|i| i.key == t && !i.used && !i.withdrawn)
    }

    /// The keys `by` names (none for `Any`).
    fn actors(&self, by: By) -> Vec<usize> {
        let live = |k: &usize| self.keys[*k].alive && self.keys[*k].mode == Mode::All;
        match by {
            By::Any => Vec::new(),
            By::Latest => vec![self.keys.len() - 1],
            By::Restrained => {
                (0..self.keys.len()).filter(|k| live(k) && self.keys[*k].restrained()).collect()
            }
            By::Owner => (0..self.keys.len()).filter(|k| live(k) && self.keys[*k].owner == OWNER).collect(),
        }
    }

    /// The `pick`-th key among those `by` names (among all of them when
    /// there is none).
    fn actor_for(&self, pick: Pick, by: By) -> usize {
        let keys = self.actors(by);
        match keys.is_empty() {
            true => pick % self.keys.len(),
            false => keys[pick % keys.len()],
        }
    }

    /// As [`Model::actor_for`], but among the keys `by` names, one with a
    /// target `among` (if any has one).
    fn actor_with_target(&self, pick: Pick, by: By, among: Among) -> usize {
        let keys: Vec<usize> =
            self.actors(by).into_iter().filter(|k| !self.targets(*k, among).is_empty()).collect();
        match keys.is_empty() {
            true => self.actor_for(pick, by),
            false => keys[pick % keys.len()],
        }
    }

    fn note(&mut self, what: &'static str) {
        *self.reached.entry(what).or_default() += 1;
    }

    fn kill(&mut self, k: usize) {
        self.keys[k].alive = false;
        self.blocks.retain(|(_, key)| *key != k);
    }

    /// The key and every key it created, transitively (through keys since
    /// deleted too: each key records which key created it).
    fn lineage(&self, root: usize) -> Vec<usize> {
        let mut lineage = vec![root];
        let mut next = 0;
        while next < lineage.len() {
            let parent = lineage[next];
            for (k, key) in self.keys.iter().enumerate() {
                if key.created_by == Some(parent) && !lineage.contains(&k) {
                    lineage.push(k);
                }
            }
            next += 1;
        }
        lineage
    }

    fn describe(&self, k: usize) -> String {
        let key = &self.keys[k];
        let mut out = format!("k{k}({}", self.people[key.owner].name);
        match key.org {
            Some(org) => write!(out, " {}", ORG_NAMES[org]),
            None => write!(out, " unscoped"),
        }
        .expect("write to a string");
        write!(out, " {}", key.mode.name()).expect("write to a string");
        if key.apps != 0 {
            write!(out, " apps={}", app_ids(key.apps).join("+")).expect("write to a string");
        }
        if let Some(at) = key.expires_at {
            write!(out, " exp+{}d", (at - self.base).num_days()).expect("write to a string");
        }
        if key.ratelimit.is_some() {
            out.push_str(" ratelimited");
        }
        if key.credits {
            out.push_str(" credits");
        }
        if !key.enabled {
            out.push_str(" disabled");
        }
        if !key.alive {
            out.push_str(" deleted");
        }
        out.push(')');
        out
    }

    fn label_of_id(&self, id: i64) -> String {
        match self.keys.iter().position(|k| k.id == id) {
            Some(k) => format!("k{k}"),
            None => format!("#{id}"),
        }
    }

    fn person_label(&self, user: Uuid) -> String {
        match self.person_of(user) {
            Some(p) => self.people[p].name.to_owned(),
            None => format!("unknown user {user}"),
        }
    }

    fn org_label(&self, org: Uuid) -> String {
        match self.orgs.iter().position(|o| *o == org) {
            Some(i) => ORG_NAMES[i].to_owned(),
            None => format!("unknown org {org}"),
        }
    }

    /// The state as the model has it, in the shape [`observe`] reads it.
    fn expected(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        for org in [ACME, OTHER] {
            for (person, role) in &self.members[org] {
                state.insert(
                    format!("member {} {}", ORG_NAMES[org], self.people[*person].name),
                    role.name().to_owned(),
                );
            }
        }
        for (k, key) in self.keys.iter().enumerate().filter(|(_, key)| key.alive) {
            let view = KeyView {
                owner: self.people[key.owner].name.to_owned(),
                mode: key.mode.name().to_owned(),
                org: key.org.map(|org| ORG_NAMES[org].to_owned()),
                apps: app_ids(key.apps).into_iter().map(str::to_owned).collect(),
                expires_at: key.expires_at,
                ratelimits: key
                    .ratelimit
                    .map(|limit| ("default".to_owned(), limit, 60_000))
                    .into_iter()
                    .collect(),
                credits: key.credits,
                enabled: key.enabled,
                created_by: key.created_by.map(|c| format!("k{c}")),
            };
            state.insert(format!("key {}", self.label_of_id(key.id)), format!("{view:?}"));
            for org in [ACME, OTHER] {
                let acting = match key.org {
                    Some(own) => own == org,
                    None => self.members[org].contains_key(&key.owner),
                };
                if acting {
                    let blocked = self.blocks.contains(&(org, k));
                    state.insert(format!("acting in {} k{k}", ORG_NAMES[org]), format!("blocked={blocked}"));
                }
            }
        }
        for invite in self.invites.iter().filter(|i| !i.used && !i.withdrawn) {
            state.insert(
                format!("invite {} #{}", ORG_NAMES[invite.org], invite.id),
                format!(
                    "{} as {} by {} with k{}",
                    self.people[invite.person].email,
                    invite.role.name(),
                    self.people[invite.inviter].name,
                    invite.key
                ),
            );
        }
        state
    }
}

/// A key as compared: everything that says what it can do.
#[derive(Debug, PartialEq, Eq)]
struct KeyView {
    owner: String,
    mode: String,
    org: Option<String>,
    apps: BTreeSet<String>,
    expires_at: Option<DateTime<Utc>>,
    ratelimits: Vec<(String, u64, u64)>,
    credits: bool,
    enabled: bool,
    created_by: Option<String>,
}

/// The state as the system has it, read from its store.
async fn observe(app: &TestApp, model: &Model) -> BTreeMap<String, String> {
    let store = &app.store;
    let mut state = BTreeMap::new();
    let mut records = BTreeMap::new();
    for org in [ACME, OTHER] {
        let org_id = model.orgs[org];
        for member in store.members(org_id).await.expect("members") {
            state.insert(
                format!("member {} {}", ORG_NAMES[org], model.person_label(member.user_id)),
                member.role.as_str().to_owned(),
            );
        }
        for key in store.keys_of_org(org_id).await.expect("keys of org") {
            records.insert(key.id, key);
        }
        for acting in store.keys_acting_in(org_id).await.expect("keys acting") {
            state.insert(
                format!("acting in {} {}", ORG_NAMES[org], model.label_of_id(acting.key.id)),
                format!("blocked={}", acting.blocked),
            );
        }
        for invite in store.pending_invites(org_id, Utc::now()).await.expect("invites") {
            let issuer = invite.created_by.map_or_else(|| "nobody".to_owned(), |u| model.person_label(u));
            let key = invite.created_by_key_id.map_or_else(|| "no key".to_owned(), |k| model.label_of_id(k));
            state.insert(
                format!("invite {} #{}", ORG_NAMES[org], invite.id),
                format!("{} as {} by {issuer} with {key}", invite.email, invite.role.as_str()),
            );
        }
    }
    for user in model.people.iter().filter_map(|p| p.user) {
        for key in store.keys_of_user(user).await.expect("keys of user") {
            records.insert(key.id, key);
        }
    }
    for (id, key) in records {
        let view = KeyView {
            owner: model.person_label(key.user_id),
            mode: key.mode.as_str().to_owned(),
            org: key.org_id.map(|org| model.org_label(org)),
            apps: key.limited_to_apps.iter().map(|a| a.as_str().to_owned()).collect(),
            expires_at: key.expires_at,
            ratelimits: key.ratelimits.iter().map(|l| (l.name.clone(), l.limit, l.duration_ms)).collect(),
            credits: key.credits.is_some(),
            enabled: key.enabled,
            created_by: key.created_by_key_id.map(|c| model.label_of_id(c)),
        };
        state.insert(format!("key {}", model.label_of_id(id)), format!("{view:?}"));
    }
    state
}

/// The lines on which the system's state and the model's differ.
fn diff(system: &BTreeMap<String, String>, model: &BTreeMap<String, String>) -> Vec<String> {
    let names: BTreeSet<&String> = system.keys().chain(model.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| match (system.get(name), model.get(name)) {
            (Some(s), Some(m)) if s == m => None,
            (Some(s), Some(m)) => Some(format!("{name}:\n      system: {s}\n      model:  {m}")),
            (Some(s), None) => Some(format!("{name}: the system has it ({s}); the model has not")),
            (None, Some(m)) => Some(format!("{name}: the model has it ({m}); the system has not")),
            (None, None) => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running a case.

#[derive(Debug, Default)]
struct Totals {
    cases: u64,
    steps: u64,
    skipped: u64,
    allowed: u64,
    refused: u64,
    by_kind: BTreeMap<&'static str, (u64, u64)>,
    reasons: BTreeMap<String, u64>,
    reached: BTreeMap<&'static str, u64>,
}

/// One step's request, ready to send.
struct Request {
    method: Method,
    path: String,
    key: Option<String>,
    body: Option<Value>,
    /// How the trace shows it.
    shown: String,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn setup(roles: [Role; 4]) -> (TestApp, Model) {
    // No throttle of failed authentications: refused steps are many.
    let app = spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let mut people: Vec<Person> =
        PEOPLE.iter().map(|(name, email)| Person { name, email, user: None }).collect();
    let mut accounts: Vec<(usize, Account, Option<Role>)> = vec![(OWNER, app.owner.clone(), None)];
    for (i, role) in roles.iter().enumerate() {
        let account = app.member(PEOPLE[i + 1].1, role.core()).await;
        accounts.push((i + 1, account, Some(*role)));
    }
    let tina = app.tenant(PEOPLE[TINA].1).await;
    let orgs =
        [Uuid::parse_str(&app.owner.org_id).expect("uuid"), Uuid::parse_str(&tina.org_id).expect("uuid")];
    accounts.push((TINA, tina, None));
    let mut members = [BTreeMap::new(), BTreeMap::new()];
    members[ACME].insert(OWNER, Role::SuperAdmin);
    members[OTHER].insert(TINA, Role::SuperAdmin);
    let mut keys = Vec::new();
    for (person, account, role) in accounts {
        people[person].user = Some(Uuid::parse_str(&account.user_id).expect("uuid"));
        if let Some(role) = role {
            members[ACME].insert(person, role);
        }
        keys.push(Key {
            id: account.key_id,
            secret: account.key,
            owner: person,
            mode: Mode::All,
            org: None,
            apps: 0,
            expires_at: None,
            ratelimit: None,
            credits: false,
            enabled: true,
            created_by: None,
            alive: true,
        });
    }
    let base = Utc::now().trunc_subsecs(0);
    let model = Model {
        people,
        orgs,
        members,
        keys,
        invites: Vec::new(),
        blocks: BTreeSet::new(),
        base,
        counter: 0,
        reached: BTreeMap::new(),
    };
    (app, model)
}

/// What an operation the model allows does to it, completed by the system's
/// answer (ids and secrets).
enum Effect {
    NewKey { actor: usize, org: usize, mode: Mode, apps: u8, expiry: Option<DateTime<Utc>>, limit: Restraint },
    Update { target: usize, change: Change, ratelimit: u64 },
    Rotate { target: usize },
    Delete { target: usize },
    Revoke { target: usize },
    SetRole { org: usize, person: usize, role: Role },
    Remove { org: usize, person: usize },
    Invite { org: usize, person: usize, role: Role, inviter: usize, key: usize },
    Redeem { invite: usize, how: Redemption },
    Withdraw { invite: usize, by_issuer: bool },
    Block { org: usize, target: usize },
    Unblock { org: usize, target: usize },
}

impl Model {
    /// The request for `op`, the model's decision, and its effect; `None`
    /// when the op has nothing to act on yet.
    fn plan(&mut self, op: &Op) -> Option<(Request, Result<Effect, Refusal>)> {
        let count = self.keys.len();
        let key_at = |pick: &Pick| pick % count;
        Some(match op {
            Op::CreateKey { actor: a, by, org, mode, apps, expiry, limit } => {
                let k = self.actor_for(*a, *by);
                let org = &self.org_for(k, *org);
                let expires_at = self.expiry(*expiry);
                let mut body = json!({ "org_id": self.orgs[*org], "mode": mode.name() });
                if *apps != 0 {
                    body["limited_to_apps"] = json!(app_ids(*apps));
                }
                if let Some(at) = expires_at {
                    body["expires_at"] = json!(rfc3339(at));
                }
                match limit {
                    Restraint::Unlimited => {}
                    Restraint::Credits => body["credits"] = json!({ "remaining": 1000 }),
                    Restraint::RateLimit => {
                        body["ratelimit"] = json!({ "limit": 1000, "duration_ms": 60_000 })
                    }
                }
                let shown = format!("{} POST /apikey {} (org {})", self.describe(k), body, ORG_NAMES[*org]);
                let decision = self.may_create(k, *org, *mode, *apps, expires_at).map(|()| Effect::NewKey {
                    actor: k,
                    org: *org,
                    mode: *mode,
                    apps: *apps,
                    expiry: expires_at,
                    limit: *limit,
                });
                let key = Some(self.keys[k].secret.clone());
                (
                    Request { method: Method::POST, path: "/apikey".into(), key, body: Some(body), shown },
                    decision,
                )
            }
            Op::UpdateKey { actor: a, by, target, among, change } => {
                let among = if *by == By::Restrained { Among::Visible } else { *among };
                let k = self.actor_with_target(*a, *by, among);
                let t = self.target_for(k, *target, among);
                self.counter += 1;
                let ratelimit = 1000 + self.counter;
                let current = &self.keys[t];
                let body = match change {
                    Change::Mode(m) => json!({ "mode": m.name() }),
                    Change::Apps(apps) => json!({ "limited_to_apps": app_ids(*apps) }),
                    Change::Expiry(e) => json!({ "expires_at": self.expiry(*e).map(rfc3339) }),
                    Change::Name => json!({ "name": format!("renamed {}", self.counter) }),
                    Change::ToggleEnabled => json!({ "enabled": !current.enabled }),
                    Change::ToggleRateLimit => match current.ratelimit {
                        Some(_) => json!({ "ratelimit": null }),
                        None => json!({ "ratelimit": { "limit": ratelimit, "duration_ms": 60_000 } }),
                    },
                    Change::ToggleCredits => match current.credits {
                        true => json!({ "credits": null }),
                        false => json!({ "credits": { "remaining": 1000 } }),
                    },
                };
                let shown = format!(
                    "{} PUT /apikey/{} {} (target {})",
                    self.describe(k),
                    current.id,
                    body,
                    self.describe(t)
                );
                let path = format!("/apikey/{}", current.id);
                let decision = self.may_update(k, t, *change).map(|()| Effect::Update {
                    target: t,
                    change: *change,
                    ratelimit,
                });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::PUT, path, key, body: Some(body), shown }, decision)
            }
            Op::RotateKey { actor: a, by, target, among } => {
                let among = if *by == By::Restrained { Among::Siblings } else { *among };
                let k = self.actor_with_target(*a, *by, among);
                let t = self.target_for(k, *target, among);
                let path = format!("/apikey/{}/rotate", self.keys[t].id);
                let shown = format!("{} POST {path} (target {})", self.describe(k), self.describe(t));
                let decision = self.may_rotate(k, t).map(|()| Effect::Rotate { target: t });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::POST, path, key, body: None, shown }, decision)
            }
            Op::DeleteKey { actor: a, target, among } => {
                let k = key_at(a);
                let t = self.target_for(k, *target, *among);
                let path = format!("/apikey/{}", self.keys[t].id);
                let shown = format!("{} DELETE {path} (target {})", self.describe(k), self.describe(t));
                let decision = self.may_delete(k, t).map(|()| Effect::Delete { target: t });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::DELETE, path, key, body: None, shown }, decision)
            }
            Op::Revoke { target, of_parents } => {
                let parents: Vec<usize> = (0..count)
                    .filter(|k| {
                        self.keys.iter().any(|c| c.created_by == Some(*k))
                            || self.invites.iter().any(|i| i.key == *k)
                    })
                    .collect();
                let t = match (of_parents, parents.is_empty()) {
                    (true, false) => parents[target % parents.len()],
                    _ => key_at(target),
                };
                let body = json!({ "key": self.keys[t].secret });
                let shown =
                    format!("(no key) POST /apikey/revoke {{\"key\": secret of {}}}", self.describe(t));
                let decision = Ok(Effect::Revoke { target: t });
                (
                    Request {
                        method: Method::POST,
                        path: "/apikey/revoke".into(),
                        key: None,
                        body: Some(body),
                        shown,
                    },
                    decision,
                )
            }
            Op::SetRole { actor: a, org, person, role } => {
                let k = key_at(a);
                let org = &self.org_for(k, *org);
                let body = json!({ "org_id": self.orgs[*org], "email": self.people[*person].email, "role": role.name() });
                let shown = format!(
                    "{} POST /organization/members {} (org {})",
                    self.describe(k),
                    body,
                    ORG_NAMES[*org]
                );
                let decision = self.may_set_role(k, *org, *person, *role).map(|()| Effect::SetRole {
                    org: *org,
                    person: *person,
                    role: *role,
                });
                let key = Some(self.keys[k].secret.clone());
                (
                    Request {
                        method: Method::POST,
                        path: "/organization/members".into(),
                        key,
                        body: Some(body),
                        shown,
                    },
                    decision,
                )
            }
            Op::RemoveMember { actor: a, org, person } => {
                let k = key_at(a);
                let org = &self.org_for(k, *org);
                let user = self.people[*person].user.unwrap_or_else(Uuid::new_v4);
                let path = format!("/organization/members?org_id={}&user_id={user}", self.orgs[*org]);
                let shown = format!(
                    "{} DELETE /organization/members (org {}, user {})",
                    self.describe(k),
                    ORG_NAMES[*org],
                    self.people[*person].name
                );
                let decision =
                    self.may_remove(k, *org, *person).map(|()| Effect::Remove { org: *org, person: *person });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::DELETE, path, key, body: None, shown }, decision)
            }
            Op::Invite { actor: a, by, org, person, role } => {
                let k = self.actor_for(*a, *by);
                let org = &self.org_for(k, *org);
                let body = json!({ "org_id": self.orgs[*org], "email": self.people[*person].email, "role": role.name() });
                let shown = format!(
                    "{} POST /organization/invites {} (org {})",
                    self.describe(k),
                    body,
                    ORG_NAMES[*org]
                );
                let inviter = self.keys[k].owner;
                let decision = self.may_invite(k, *org, *person, *role).map(|()| Effect::Invite {
                    org: *org,
                    person: *person,
                    role: *role,
                    inviter,
                    key: k,
                });
                let key = Some(self.keys[k].secret.clone());
                (
                    Request {
                        method: Method::POST,
                        path: "/organization/invites".into(),
                        key,
                        body: Some(body),
                        shown,
                    },
                    decision,
                )
            }
            Op::Redeem { invite, pending, with } => {
                if self.invites.is_empty() {
                    return None;
                }
                let open: Vec<usize> = match pending {
                    true => (0..self.invites.len())
                        .filter(|i| !self.invites[*i].used && !self.invites[*i].withdrawn)
                        .collect(),
                    false => Vec::new(),
                };
                let i = match open.is_empty() {
                    true => invite % self.invites.len(),
                    false => open[invite % open.len()],
                };
                let invitee = self.invites[i].person;
                let with = with.map(|(pick, own)| {
                    let theirs: Vec<usize> = (0..count).filter(|k| self.keys[*k].owner == invitee).collect();
                    match (own, theirs.is_empty()) {
                        (true, false) => theirs[pick % theirs.len()],
                        _ => key_at(&pick),
                    }
                });
                let inv = &self.invites[i];
                let shown = format!(
                    "{} POST /invites/redeem {{code of invitation i{i}: {} to {} as {} by {} with {}{}}}",
                    with.map_or_else(|| "(no key)".to_owned(), |k| self.describe(k)),
                    ORG_NAMES[inv.org],
                    self.people[inv.person].email,
                    inv.role.name(),
                    self.people[inv.inviter].name,
                    self.describe(inv.key),
                    match (inv.used, inv.withdrawn) {
                        (true, _) => ", used",
                        (_, true) => ", withdrawn",
                        _ => "",
                    }
                );
                let body = json!({ "code": inv.code });
                let decision = self.may_redeem(i, with).map(|how| Effect::Redeem { invite: i, how });
                let key = with.map(|k| self.keys[k].secret.clone());
                (
                    Request {
                        method: Method::POST,
                        path: "/invites/redeem".into(),
                        key,
                        body: Some(body),
                        shown,
                    },
                    decision,
                )
            }
            Op::Withdraw { actor: a, by, invite, elsewhere } => {
                if self.invites.is_empty() {
                    return None;
                }
                let k = self.actor_for(*a, *by);
                let i = invite % self.invites.len();
                let org = match elsewhere {
                    true => self.org_for(k, ACTORS),
                    false => self.invites[i].org,
                };
                let inv = &self.invites[i];
                let path = format!("/organization/invites?org_id={}&id={}", self.orgs[org], inv.id);
                let shown = format!(
                    "{} DELETE /organization/invites (org {}, invitation i{i}: {} to {} as {} by {} with k{}{})",
                    self.describe(k),
                    ORG_NAMES[org],
                    ORG_NAMES[inv.org],
                    self.people[inv.person].email,
                    inv.role.name(),
                    self.people[inv.inviter].name,
                    inv.key,
                    match (inv.used, inv.withdrawn) {
                        (true, _) => ", used",
                        (_, true) => ", withdrawn",
                        _ => "",
                    }
                );
                let by_issuer = self.keys[k].owner == self.invites[i].inviter;
                let decision =
                    self.may_withdraw(k, org, i).map(|()| Effect::Withdraw { invite: i, by_issuer });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::DELETE, path, key, body: None, shown }, decision)
            }
            Op::Block { actor: a, by, org, target, among } => {
                let k = self.actor_for(*a, *by);
                let org = &self.org_for(k, *org);
                let t = self.target_for(k, *target, *among);
                let body = json!({ "org_id": self.orgs[*org], "key_id": self.keys[t].id });
                let shown = format!(
                    "{} POST /organization/keys/block (org {}, target {})",
                    self.describe(k),
                    ORG_NAMES[*org],
                    self.describe(t)
                );
                let decision = self.may_block(k, *org, t).map(|()| Effect::Block { org: *org, target: t });
                let key = Some(self.keys[k].secret.clone());
                (
                    Request {
                        method: Method::POST,
                        path: "/organization/keys/block".into(),
                        key,
                        body: Some(body),
                        shown,
                    },
                    decision,
                )
            }
            Op::Unblock { actor: a, org, target, of_blocked } => {
                let k = key_at(a);
                let blocks: Vec<(usize, usize)> = self.blocks.iter().copied().collect();
                let (org, t) = match (of_blocked, blocks.is_empty()) {
                    (true, false) => blocks[target % blocks.len()],
                    _ => (self.org_for(k, *org), key_at(target)),
                };
                let org = &org;
                let path =
                    format!("/organization/keys/block?org_id={}&key_id={}", self.orgs[*org], self.keys[t].id);
                let shown = format!(
                    "{} DELETE /organization/keys/block (org {}, target {})",
                    self.describe(k),
                    ORG_NAMES[*org],
                    self.describe(t)
                );
                let decision =
                    self.may_unblock(k, *org, t).map(|()| Effect::Unblock { org: *org, target: t });
                let key = Some(self.keys[k].secret.clone());
                (Request { method: Method::DELETE, path, key, body: None, shown }, decision)
            }
        })
    }

    /// Applies an allowed operation's effect, with what the system answered.
    fn apply(&mut self, effect: Effect, body: &Value) -> Result<(), String> {
        match effect {
            Effect::NewKey { actor, org, mode, apps, expiry, limit } => {
                let apikey = &body["apikey"];
                let id = apikey["id"].as_i64().ok_or("no apikey.id in the answer")?;
                let secret = apikey["key"].as_str().ok_or("no apikey.key in the answer")?.to_owned();
                self.keys.push(Key {
                    id,
                    secret,
                    owner: self.keys[actor].owner,
                    mode,
                    org: Some(org),
                    apps,
                    expires_at: expiry,
                    ratelimit: matches!(limit, Restraint::RateLimit).then_some(1000),
                    credits: matches!(limit, Restraint::Credits),
                    enabled: true,
                    created_by: Some(actor),
                    alive: true,
                });
            }
            Effect::Update { target, change, ratelimit } => {
                let base = self.base;
                let key = &mut self.keys[target];
                match change {
                    Change::Mode(m) => key.mode = m,
                    Change::Apps(apps) => key.apps = apps,
                    Change::Expiry(e) => {
                        key.expires_at = e.map(|i| base + Duration::days(10 * (i64::from(i) + 1)))
                    }
                    Change::Name => {}
                    Change::ToggleEnabled => key.enabled = !key.enabled,
                    Change::ToggleRateLimit => {
                        key.ratelimit = match key.ratelimit {
                            Some(_) => None,
                            None => Some(ratelimit),
                        }
                    }
                    Change::ToggleCredits => key.credits = !key.credits,
                }
            }
            Effect::Rotate { target } => {
                if self.issued_pending(target) {
                    self.note("rotate: a key with an invitation pending");
                }
                let secret = body["apikey"]["key"].as_str().ok_or("no apikey.key in the answer")?;
                self.keys[target].secret = secret.to_owned();
            }
            Effect::Delete { target } => self.kill(target),
            Effect::Revoke { target } => {
                if self.keys[target].alive {
                    let lineage = self.lineage(target);
                    for k in &lineage {
                        if !self.keys[*k].alive || *k == target {
                            continue;
                        }
                        if self.invites.iter().any(|i| i.made == Some(*k)) {
                            self.note("revoke: a first key, with the key its invitation was issued with");
                        }
                        // Whether a key between it and the revoked one is gone.
                        let mut up = self.keys[*k].created_by;
                        while let Some(parent) = up.filter(|p| *p != target) {
                            if !self.keys[parent].alive {
                                self.note("revoke: a descendant, through a key deleted in between");
                                break;
                            }
                            up = self.keys[parent].created_by;
                        }
                    }
                    for k in lineage {
                        self.kill(k);
                    }
                }
            }
            Effect::SetRole { org, person, role } => {
                self.members[org].insert(person, role);
            }
            Effect::Remove { org, person } => {
                self.members[org].remove(&person);
                let gone: Vec<usize> = (0..self.keys.len())
                    .filter(|k| self.keys[*k].owner == person && self.keys[*k].org == Some(org))
                    .collect();
                for k in gone {
                    self.kill(k);
                }
            }
            Effect::Invite { org, person, role, inviter, key } => {
                let invite = &body["invite"];
                let id = invite["id"].as_i64().ok_or("no invite.id in the answer")?;
                let code = invite["code"].as_str().ok_or("no invite.code in the answer")?.to_owned();
                self.invites.push(Invite {
                    id,
                    code,
                    org,
                    person,
                    role,
                    inviter,
                    key,
                    made: None,
                    used: false,
                    withdrawn: false,
                });
            }
            Effect::Withdraw { invite, by_issuer } => {
                self.invites[invite].withdrawn = true;
                self.note(
                    match (by_issuer, self.role(self.invites[invite].org, self.invites[invite].inviter)) {
                        (true, _) => "withdraw: by its issuer",
                        (false, Some(_)) => "withdraw: from above its issuer",
                        (false, None) => "withdraw: its issuer gone",
                    },
                );
            }
            Effect::Redeem { invite, how } => {
                let (org, person, role, issuing) = {
                    let inv = &mut self.invites[invite];
                    inv.used = true;
                    (inv.org, inv.person, inv.role, inv.key)
                };
                self.members[org].insert(person, role);
                if let Redemption::NewAccount = how {
                    let user = body["user_id"].as_str().and_then(|u| Uuid::parse_str(u).ok());
                    self.people[person].user = Some(user.ok_or("no user_id in the answer")?);
                    let id = body["key_id"].as_i64().ok_or("no key_id in the answer")?;
                    let secret = body["key"].as_str().ok_or("no key in the answer")?.to_owned();
                    // The issuing key's child, expiring no later than it (no
                    // organization here has an expiry policy).
                    let expires_at = self.keys[issuing].expires_at;
                    self.note(match expires_at {
                        Some(_) => "redeem: a first key, expiring with its issuing key",
                        None => "redeem: a first key, never expiring as its issuing key",
                    });
                    self.invites[invite].made = Some(self.keys.len());
                    self.keys.push(Key {
                        id,
                        secret,
                        owner: person,
                        mode: Mode::All,
                        org: Some(org),
                        apps: 0,
                        expires_at,
                        ratelimit: None,
                        credits: false,
                        enabled: true,
                        created_by: Some(issuing),
                        alive: true,
                    });
                }
            }
            Effect::Block { org, target } => {
                self.blocks.insert((org, target));
            }
            Effect::Unblock { org, target } => {
                self.blocks.remove(&(org, target));
            }
        }
        Ok(())
    }
}

/// What a case counted.
#[derive(Default)]
struct Counts {
    steps: u64,
    skipped: u64,
    allowed: u64,
    refused: u64,
    by_kind: BTreeMap<&'static str, (u64, u64)>,
    reasons: BTreeMap<String, u64>,
    reached: BTreeMap<&'static str, u64>,
}

/// The threads dropping the databases of finished cases.
static TEARDOWNS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(Vec::new());

/// Waits until every finished case's database is dropped.
fn finish_teardowns() {
    let pending: Vec<_> = TEARDOWNS.lock().expect("teardowns").drain(..).collect();
    for teardown in pending {
        teardown.join().expect("a database dropped");
    }
}

/// Runs `case` against a fresh keygate; `expected`, if not empty, is
/// whether the rules allow each step (a scenario written by hand).
async fn run_case(case: &Case, expected: &[bool]) -> Result<Counts, String> {
    let (app, mut model) = setup(case.roles).await;
    let mut counts = Counts::default();
    let mut trace = format!(
        "Acme: owner super_admin, alice {}, bob {}, carol {}, dave {}; Other: tina super_admin\n\
         keys: k0 owner, k1 alice, k2 bob, k3 carol, k4 dave, k5 tina (unscoped, all)\n",
        case.roles[0].name(),
        case.roles[1].name(),
        case.roles[2].name(),
        case.roles[3].name()
    );
    let outcome = async {
        // The starting state already agrees.
        let differences = diff(&observe(&app, &model).await, &model.expected());
        if !differences.is_empty() {
            return Err(format!("before any step:\n    {}", differences.join("\n    ")));
        }
        for (n, op) in case.ops.iter().enumerate() {
            let Some((request, decision)) = model.plan(op) else {
                writeln!(trace, "{n:>3}. (skipped: no invitation to act on yet)").expect("write to a string");
                counts.skipped += 1;
                continue;
            };
            let reply: Reply =
                app.call(request.method, &request.path, request.key.as_deref(), request.body).await;
            let success = (200..300).contains(&reply.status);
            if let Some(allowed) = expected.get(n)
                && *allowed != decision.is_ok()
            {
                writeln!(trace, "{n:>3}. {} -> {}", request.shown, reply.status).expect("write to a string");
                return Err(format!(
                    "step {n}: the scenario expects the rules to {} it; the model decided {:?}",
                    if *allowed { "allow" } else { "refuse" },
                    decision.as_ref().map(|_| ())
                ));
            }
            if let Err(why) = &decision {
                *counts.reasons.entry(format!("{}: {why}", op.kind())).or_default() += 1;
            }
            let verdict = match &decision {
                Ok(_) => "model: allowed".to_owned(),
                Err(why) => format!("model: refused, {why}"),
            };
            writeln!(trace, "{n:>3}. {} -> {} ({verdict})", request.shown, reply.status)
                .expect("write to a string");
            counts.steps += 1;
            let tally = counts.by_kind.entry(op.kind()).or_default();
            if success {
                counts.allowed += 1;
                tally.0 += 1;
            } else {
                counts.refused += 1;
                tally.1 += 1;
            }
            match (decision, success) {
                (Ok(effect), true) => model.apply(effect, &reply.body)?,
                (Err(_), false) => {}
                (Ok(_), false) => {
                    return Err(format!(
                        "step {n}: the system REFUSES what the rules allow: {} {}",
                        reply.status, reply.body
                    ));
                }
                (Err(why), true) => {
                    return Err(format!(
                        "step {n}: the system GRANTS what the rules refuse ({why}): {} {}",
                        reply.status, reply.body
                    ));
                }
            }
            let differences = diff(&observe(&app, &model).await, &model.expected());
            if !differences.is_empty() {
                return Err(format!(
                    "after step {n}, the state differs from the model's:\n    {}",
                    differences.join("\n    ")
                ));
            }
        }
        Ok(())
    }
    .await;
    counts.reached = std::mem::take(&mut model.reached);
    app.store.close().await;
    // Dropping the database (PostgreSQL: `DROP DATABASE`) while the next
    // case starts.
    let teardown = std::thread::spawn(move || drop(app));
    TEARDOWNS.lock().expect("teardowns").push(teardown);
    match outcome {
        Ok(()) => Ok(counts),
        Err(failure) => Err(format!("{failure}\n\nthe sequence:\n{trace}")),
    }
}

/// Drops every step of a failing case whose removal still fails, last to
/// first (proptest's shrinking, bounded in time, may leave some): the
/// shortest sequence found, and how it fails.
fn minimize(mut case: Case) -> (Case, String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut failure = match runtime.block_on(run_case(&case, &[])) {
        Ok(_) => return (case, "the failing case passed when run again (flaky?)".to_owned()),
        Err(failure) => failure,
    };
    for step in (0..case.ops.len()).rev() {
        let mut shorter = case.clone();
        shorter.ops.remove(step);
        if let Err(still) = runtime.block_on(run_case(&shorter, &[])) {
            (case, failure) = (shorter, still);
        }
    }
    (case, failure)
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name}: a whole number, not {value:?}")),
        Err(_) => default,
    }
}

#[test]
fn no_principal_ever_holds_more_than_the_rules_grant() {
    // A fresh PostgreSQL database takes about half a second to make.
    let postgres = keygate_testkit::postgres_base().is_some();
    let cases = env_number("KEYGATE_MODEL_CASES", if postgres { 32 } else { 64 });
    let steps = env_number("KEYGATE_MODEL_STEPS", 40);
    let config = Config {
        cases: u32::try_from(cases).expect("a case count that fits in u32"),
        // No regression files: this module is the only file of the test.
        failure_persistence: None,
        // Each shrinking step is a fresh keygate: bounded in time, then
        // finished by `minimize`.
        max_shrink_iters: 2_000,
        max_shrink_time: 45_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let totals = RefCell::new(Totals::default());
    let started = std::time::Instant::now();
    let result = runner.run(&case(steps), |case| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(format!("a runtime: {e}")))?;
        let counts = runtime.block_on(run_case(&case, &[])).map_err(TestCaseError::fail)?;
        let mut totals = totals.borrow_mut();
        totals.cases += 1;
        totals.steps += counts.steps;
        totals.skipped += counts.skipped;
        totals.allowed += counts.allowed;
        totals.refused += counts.refused;
        for (why, n) in counts.reasons {
            *totals.reasons.entry(why).or_default() += n;
        }
        for (what, n) in counts.reached {
            *totals.reached.entry(what).or_default() += n;
        }
        for (kind, (allowed, refused)) in counts.by_kind {
            let tally = totals.by_kind.entry(kind).or_default();
            tally.0 += allowed;
            tally.1 += refused;
        }
        Ok(())
    });
    finish_teardowns();
    let totals = totals.into_inner();
    let backend = if postgres { "PostgreSQL" } else { "SQLite" };
    println!(
        "model ({backend}): {} cases passed, {} steps ({} skipped: nothing to act on), {} allowed, {} refused, in {:.1?}",
        totals.cases,
        totals.steps,
        totals.skipped,
        totals.allowed,
        totals.refused,
        started.elapsed()
    );
    for (kind, (allowed, refused)) in &totals.by_kind {
        println!("    {kind:<14} {allowed:>5} allowed {refused:>5} refused");
    }
    if std::env::var_os("KEYGATE_MODEL_VERBOSE").is_some() {
        println!("    why the model refused:");
        for (why, n) in &totals.reasons {
            println!("      {n:>5} {why}");
        }
        println!("    what the allowed steps reached:");
        for (what, n) in &totals.reached {
            println!("      {n:>5} {what}");
        }
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(_, case)) => {
            let (case, failure) = minimize(case);
            finish_teardowns();
            panic!("the system and the model disagree ({} steps):\n{failure}", case.ops.len());
        }
        Err(abort) => panic!("{abort}"),
    }
}

/// The attacks the outside reviews found, each as a sequence of operations
/// of the property above with the decision the rules give each step: the
/// op mix expresses every one of their classes, the model refuses them, and
/// the system must agree step by step and state by state. The second
/// review's: restrained keys reaching other keys or issuing invitations,
/// invitations outliving the key they were issued with, first keys escaping
/// their issuing key's lineage or expiry, and invitations withdrawn by a
/// peer of their issuer.
#[test]
fn the_reviews_attacks_are_sequences_the_model_refuses() {
    use Op::*;
    let roles = [Role::Admin, Role::Admin, Role::Write, Role::Read];
    let mint = |actor: Pick, mode: Mode, apps: u8, expiry: Option<u8>, limit: Restraint| CreateKey {
        actor,
        by: By::Any,
        org: ACME,
        mode,
        apps,
        expiry,
        limit,
    };
    let plain = |actor: Pick, org: usize| CreateKey {
        actor,
        by: By::Any,
        org,
        mode: Mode::All,
        apps: 0,
        expiry: None,
        limit: Restraint::Unlimited,
    };
    let update = |actor: Pick, target: Pick, change: Change| UpdateKey {
        actor,
        by: By::Any,
        target,
        among: Among::All,
        change,
    };
    let rotate = |actor: Pick, target: Pick| RotateKey { actor, by: By::Any, target, among: Among::All };
    let invite =
        |actor: Pick, org: usize, person: usize, role: Role| Invite { actor, by: By::Any, org, person, role };
    let withdraw = |actor: Pick, invite: Pick| Withdraw { actor, by: By::Any, invite, elsewhere: false };
    // Keys: k0 owner, k1 alice (admin), k2 bob (admin), k3 carol (write),
    // k4 dave (read), k5 tina (Other's super_admin); then k6, … as made.
    let scenarios: Vec<(&str, Vec<(Op, bool)>)> = vec![
        (
            "an admin invites the owner's address and redeems it for a key of the owner's",
            vec![
                (invite(1, ACME, OWNER, Role::Write), false),
                (invite(5, OTHER, OWNER, Role::Admin), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (Redeem { invite: 0, pending: false, with: Some((5, false)) }, false),
                (Redeem { invite: 0, pending: false, with: Some((0, false)) }, true),
                (Redeem { invite: 0, pending: false, with: Some((0, false)) }, false),
            ],
        ),
        (
            "an admin blocks the owner's key, or a peer's",
            vec![
                (Block { actor: 1, by: By::Any, org: ACME, target: 0, among: Among::All }, false),
                (Block { actor: 1, by: By::Any, org: ACME, target: 2, among: Among::All }, false),
                (Block { actor: 1, by: By::Any, org: ACME, target: 1, among: Among::All }, false),
                (Block { actor: 1, by: By::Any, org: ACME, target: 3, among: Among::All }, true),
                (Unblock { actor: 3, org: ACME, target: 3, of_blocked: false }, false),
                (Unblock { actor: 2, org: ACME, target: 3, of_blocked: false }, true),
                (plain(0, ACME), true),
                (Block { actor: 0, by: By::Any, org: ACME, target: 6, among: Among::All }, false),
            ],
        ),
        (
            "a key with credits, a rate limit or app limits mints a key without them",
            vec![
                (mint(0, Mode::All, 0, None, Restraint::Credits), true),
                (plain(6, ACME), false),
                (mint(0, Mode::All, 0, None, Restraint::RateLimit), true),
                (mint(7, Mode::Read, 0, None, Restraint::Credits), false),
                (mint(0, Mode::All, 1, None, Restraint::Unlimited), true),
                (mint(8, Mode::All, 1, None, Restraint::Unlimited), false),
                (update(8, 8, Change::Apps(0)), false),
                (update(8, 8, Change::Apps(3)), false),
                (mint(0, Mode::Read, 0, None, Restraint::Unlimited), true),
                (plain(9, ACME), false),
                (update(9, 9, Change::Mode(Mode::All)), false),
            ],
        ),
        (
            "a removed or demoted admin's earlier invitation",
            vec![
                (invite(1, ACME, 6, Role::Write), true),
                (invite(2, ACME, 7, Role::Write), true),
                (RemoveMember { actor: 0, org: ACME, person: 1 }, true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (SetRole { actor: 0, org: ACME, person: 2, role: Role::Write }, true),
                (Redeem { invite: 1, pending: false, with: None }, false),
                (SetRole { actor: 0, org: ACME, person: 2, role: Role::Admin }, true),
                (Redeem { invite: 1, pending: false, with: None }, true),
            ],
        ),
        (
            "a member changes or deletes a peer's or a superior's keys or role",
            vec![
                (plain(2, ACME), true),
                (plain(0, ACME), true),
                (plain(3, ACME), true),
                (update(1, 6, Change::Mode(Mode::Read)), false),
                (update(1, 6, Change::ToggleEnabled), false),
                (DeleteKey { actor: 1, target: 6, among: Among::All }, false),
                (update(1, 7, Change::Expiry(Some(0))), false),
                (DeleteKey { actor: 1, target: 7, among: Among::All }, false),
                (SetRole { actor: 1, org: ACME, person: 2, role: Role::Write }, false),
                (SetRole { actor: 1, org: ACME, person: OWNER, role: Role::Admin }, false),
                (RemoveMember { actor: 1, org: ACME, person: OWNER }, false),
                (RemoveMember { actor: 1, org: ACME, person: 2 }, false),
                (SetRole { actor: 1, org: ACME, person: 3, role: Role::SuperAdmin }, false),
                (SetRole { actor: 3, org: ACME, person: 4, role: Role::Upload }, false),
                (update(1, 8, Change::ToggleEnabled), true),
                (DeleteKey { actor: 1, target: 8, among: Among::All }, true),
                (SetRole { actor: 1, org: ACME, person: 3, role: Role::Admin }, true),
                (SetRole { actor: 1, org: ACME, person: 1, role: Role::Write }, true),
                (SetRole { actor: 0, org: ACME, person: OWNER, role: Role::Admin }, false),
            ],
        ),
        (
            "a key loosens its own limits or pushes back its own expiry",
            vec![
                (mint(0, Mode::All, 0, Some(0), Restraint::Credits), true),
                (update(6, 6, Change::ToggleCredits), false),
                (update(6, 6, Change::Expiry(Some(2))), false),
                (update(6, 6, Change::Expiry(None)), false),
                (mint(0, Mode::All, 0, Some(0), Restraint::Unlimited), true),
                (update(7, 7, Change::Expiry(Some(1))), false),
                (update(7, 6, Change::ToggleCredits), true),
                (update(7, 6, Change::Expiry(Some(1))), false),
                (update(0, 7, Change::Expiry(Some(2))), true),
                (mint(3, Mode::All, 0, None, Restraint::RateLimit), true),
                (plain(3, ACME), true),
                (update(9, 8, Change::ToggleRateLimit), false),
                (update(0, 8, Change::ToggleRateLimit), true),
            ],
        ),
        (
            "a key expiring earlier mints one expiring later",
            vec![
                (mint(0, Mode::All, 0, Some(0), Restraint::Unlimited), true),
                (mint(6, Mode::All, 0, Some(2), Restraint::Unlimited), false),
                (plain(6, ACME), false),
                (mint(6, Mode::Write, 2, Some(0), Restraint::Unlimited), true),
                (update(6, 7, Change::Expiry(None)), false),
            ],
        ),
        (
            "a leaked key is revoked with every key it created, transitively",
            vec![
                (plain(1, ACME), true),
                (plain(6, ACME), true),
                (plain(7, ACME), true),
                (Revoke { target: 1, of_parents: false }, true),
            ],
        ),
        (
            "a block outlives its key's owner leaving and coming back",
            vec![
                (Block { actor: 1, by: By::Any, org: ACME, target: 4, among: Among::All }, true),
                (RemoveMember { actor: 0, org: ACME, person: 4 }, true),
                (invite(2, ACME, 4, Role::Read), true),
                (Redeem { invite: 0, pending: false, with: Some((4, false)) }, true),
                (plain(4, ACME), false),
                (Unblock { actor: 3, org: ACME, target: 4, of_blocked: false }, false),
                (Unblock { actor: 2, org: ACME, target: 4, of_blocked: false }, true),
                (plain(4, ACME), true),
            ],
        ),
        (
            "a leaked key is revoked with every key it created, through keys deleted since",
            vec![
                (plain(1, ACME), true),
                (plain(6, ACME), true),
                (DeleteKey { actor: 1, target: 6, among: Among::All }, true),
                (Revoke { target: 1, of_parents: false }, true),
            ],
        ),
        (
            "a restrained key invites, or changes or rotates another key than itself",
            vec![
                (mint(1, Mode::All, 0, None, Restraint::Credits), true),
                (invite(6, ACME, 6, Role::Write), false),
                (plain(1, ACME), true),
                (update(6, 7, Change::Name), false),
                (update(6, 7, Change::Mode(Mode::Read)), false),
                (rotate(6, 7), false),
                (rotate(6, 6), true),
                (update(6, 6, Change::Name), true),
                (update(6, 6, Change::Expiry(Some(0))), true),
                (DeleteKey { actor: 6, target: 7, among: Among::All }, false),
                (mint(1, Mode::All, 1, None, Restraint::Unlimited), true),
                (mint(1, Mode::All, 1, None, Restraint::Unlimited), true),
                (invite(8, ACME, 6, Role::Write), false),
                (update(8, 9, Change::Name), false),
                (rotate(8, 9), false),
                (rotate(8, 8), true),
                (rotate(1, 9), true),
                (plain(3, ACME), true),
                (rotate(1, 10), false),
                (rotate(10, 1), false),
            ],
        ),
        (
            "an invitation whose issuing key was given limits, disabled, narrowed or rotated since",
            vec![
                (plain(1, ACME), true),
                (invite(6, ACME, 6, Role::Write), true),
                (update(0, 6, Change::ToggleCredits), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (update(0, 6, Change::ToggleCredits), true),
                (update(0, 6, Change::ToggleRateLimit), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (update(0, 6, Change::ToggleRateLimit), true),
                (update(0, 6, Change::ToggleEnabled), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (update(0, 6, Change::ToggleEnabled), true),
                (update(6, 6, Change::Mode(Mode::Write)), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (update(0, 6, Change::Mode(Mode::All)), true),
                (update(6, 6, Change::Apps(1)), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (update(0, 6, Change::Apps(0)), true),
                (rotate(6, 6), true),
                (Redeem { invite: 0, pending: false, with: None }, true),
            ],
        ),
        (
            "an invitation whose issuing key was deleted, revoked or blocked since",
            vec![
                (plain(1, ACME), true),
                (invite(6, ACME, 6, Role::Write), true),
                (DeleteKey { actor: 1, target: 6, among: Among::All }, true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (plain(2, ACME), true),
                (invite(7, ACME, 7, Role::Read), true),
                (Revoke { target: 7, of_parents: false }, true),
                (Redeem { invite: 1, pending: false, with: None }, false),
                (invite(1, ACME, 6, Role::Write), true),
                (Block { actor: 0, by: By::Any, org: ACME, target: 1, among: Among::All }, true),
                (Redeem { invite: 2, pending: false, with: None }, false),
                (Unblock { actor: 0, org: ACME, target: 1, of_blocked: false }, true),
                (Redeem { invite: 2, pending: false, with: None }, true),
                (invite(2, ACME, TINA, Role::Read), true),
                (Block { actor: 0, by: By::Any, org: ACME, target: 2, among: Among::All }, true),
                (Redeem { invite: 3, pending: false, with: Some((5, false)) }, false),
                (Unblock { actor: 0, org: ACME, target: 2, of_blocked: false }, true),
                (Redeem { invite: 3, pending: false, with: Some((5, false)) }, true),
            ],
        ),
        (
            "a block in one organization voids only that organization's invitations",
            vec![
                (invite(1, ACME, TINA, Role::Read), true),
                (Redeem { invite: 0, pending: false, with: Some((5, false)) }, true),
                (invite(5, OTHER, 6, Role::Admin), true),
                (Block { actor: 0, by: By::Any, org: ACME, target: 5, among: Among::All }, true),
                (invite(5, OTHER, 7, Role::Write), true),
                (Redeem { invite: 1, pending: false, with: None }, true),
                (Redeem { invite: 2, pending: false, with: None }, true),
            ],
        ),
        (
            "a first key outlives or escapes the key its invitation was issued with",
            vec![
                (mint(1, Mode::All, 0, Some(1), Restraint::Unlimited), true),
                (invite(6, ACME, 6, Role::Write), true),
                (update(6, 6, Change::Expiry(Some(0))), true),
                (Redeem { invite: 0, pending: false, with: None }, true),
                (mint(7, Mode::All, 0, None, Restraint::Unlimited), false),
                (mint(7, Mode::All, 0, Some(0), Restraint::Unlimited), true),
                (update(7, 7, Change::Expiry(Some(2))), false),
                (Revoke { target: 6, of_parents: false }, true),
                (invite(1, ACME, 7, Role::Write), true),
                (Redeem { invite: 1, pending: false, with: None }, true),
                (plain(9, ACME), true),
                (Revoke { target: 1, of_parents: false }, true),
            ],
        ),
        (
            "a key blocked in an organization changes, rotates or deletes its owner's keys there",
            vec![
                (plain(1, ACME), true),
                (Block { actor: 0, by: By::Any, org: ACME, target: 1, among: Among::All }, true),
                (update(1, 6, Change::Name), false),
                (DeleteKey { actor: 1, target: 6, among: Among::All }, false),
                (rotate(1, 6), false),
                (Unblock { actor: 0, org: ACME, target: 1, of_blocked: false }, true),
                (rotate(1, 6), true),
            ],
        ),
        (
            "an invitation withdrawn by a peer of its issuer",
            vec![
                (invite(1, ACME, 6, Role::Write), true),
                (withdraw(2, 0), false),
                (withdraw(3, 0), false),
                (withdraw(5, 0), false),
                (withdraw(0, 0), true),
                (Redeem { invite: 0, pending: false, with: None }, false),
                (invite(1, ACME, 7, Role::Read), true),
                (withdraw(1, 1), true),
                (invite(2, ACME, 6, Role::Read), true),
                (SetRole { actor: 0, org: ACME, person: 3, role: Role::Admin }, true),
                (withdraw(3, 2), false),
                (SetRole { actor: 0, org: ACME, person: 2, role: Role::Write }, true),
                (withdraw(3, 2), true),
                (invite(1, ACME, 7, Role::Write), true),
                (RemoveMember { actor: 0, org: ACME, person: 1 }, true),
                (withdraw(3, 3), true),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (name, steps) in scenarios {
        let (ops, expected): (Vec<Op>, Vec<bool>) = steps.into_iter().unzip();
        let case = Case { roles, ops };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        if let Err(failure) = runtime.block_on(run_case(&case, &expected)) {
            failures.push(format!("{name}:\n{failure}"));
        }
    }
    finish_teardowns();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
