//! What a live key may spend, decided on every use: each request takes one
//! from every rate limit of its key and `cost` (1 by default) of its
//! credits, or is refused — `RATE_LIMITED` before `USAGE_EXCEEDED` — having
//! taken nothing. A request that then fails (any 4xx or 5xx) hands back what
//! it took ([`Charge::refund`], called by [`crate::server::observe`]): a refused
//! request consumes nothing.
//!
//! Nothing is spent that was not leased first: credits from the database,
//! durably ([`KeyStore::lease_credits`]); rate-limit windows from
//! [`RateWindows`]: PostgreSQL's table, shared by every replica, or this
//! process's memory ([`LocalWindows`], in the store crate) on SQLite, which
//! one process serves.
//! Leases are blocks ([`keygate_core::limits::lease_size`]), so the common
//! path touches no database: a key's numbers sit behind a short `std`
//! mutex, and only a request that finds its lease short waits for the next
//! one (one lease at a time per key). A lease that comes back empty is
//! trusted for [`DRY_FOR`], then asked again. Leases idle for
//! [`IDLE_RETURN`] are handed back, and every lease at shutdown, so a
//! balance does not sit on one replica while another refuses.
//!
//! [`KeyStore::lease_credits`]: keygate_store::KeyStore::lease_credits

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keygate_core::limits::{Balance, LimitReport, RateLimit, Refused, Shortfall, Window};
use keygate_store::{ApiKeyRecord, KeyCredits, LocalWindows, RateWindows, Store, StoreError};
use uuid::Uuid;

use crate::admission::authenticated::Authenticated;

/// How long an empty lease is believed before the source is asked again.
pub const DRY_FOR: Duration = Duration::from_secs(1);
/// Leases unused for this long are handed back.
pub const IDLE_RETURN: Duration = Duration::from_secs(2);
/// Keys unused for this long are forgotten (their leases handed back first).
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The time limits and refills are reckoned in: the system's, shifted by an
/// offset that tests move to cross a window or a refill.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.0.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every server sharing it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(millis, Ordering::Relaxed);
    }
}

/// What a use of a key came to.
#[derive(Debug)]
pub enum Outcome {
    Admitted(Charge),
    /// A rate limit's window is spent; the report is of that limit.
    RateLimited(LimitReport),
    /// The credits cannot cover the cost; what is left of them.
    UsageExceeded {
        remaining: u64,
    },
}

/// Whose budget: a key's own, or what its organization's keys share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Key(i64),
    Org(Uuid),
}

impl Subject {
    /// The subject's name where rate-limit windows are kept.
    fn name(self) -> String {
        match self {
            Self::Key(id) => format!("key:{id}"),
            Self::Org(id) => format!("org:{id}"),
        }
    }
}

/// What an admitted request took, until it is refunded or kept.
#[derive(Debug, Default)]
pub struct Charge {
    parts: Vec<Part>,
    /// The limit with the least left after this request, if any.
    pub ratelimit: Option<LimitReport>,
    /// Credits left after this request; `None`: unlimited.
    pub credits_remaining: Option<u64>,
}

/// What a request took from one budget.
#[derive(Debug)]
struct Part {
    budget: Arc<Budget>,
    /// Each rate limit taken from: its name and window.
    windows: Vec<(String, i64)>,
    credits: u64,
    /// The balance (generation, period) of the credit lease taken from.
    credit_lease: Option<Balance>,
}

impl Part {
    fn refund(self) {
        let mut state = self.budget.lock();
        for (name, start) in &self.windows {
            if let Some(window) =
                state.windows.iter_mut().find(|w| w.limit.name == *name && w.start_ms == *start)
            {
                window.left += 1;
            }
        }
        if let (Some(credits), Some(lease)) = (state.credits.as_mut(), self.credit_lease)
            && credits.from.generation == lease.generation
            && credits.from.period_ms == lease.period_ms
        {
            credits.left += self.credits;
        }
    }
}

impl Charge {
    /// Whether the request took nothing and has nothing to report (a key
    /// without limits).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.ratelimit.is_none() && self.credits_remaining.is_none()
    }

    /// Credits the request spent.
    pub fn credits(&self) -> u64 {
        self.parts.iter().map(|part| part.credits).sum()
    }

    /// Hands back what the request took (it failed after admission).
    pub fn refund(self) {
        self.parts.into_iter().for_each(Part::refund);
    }
}

#[derive(Debug)]
struct Budget {
    subject: Subject,
    /// One lease at a time per budget.
    gate: tokio::sync::Mutex<()>,
    state: Mutex<BudgetState>,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_lease(&self) -> bool {
        let state = self.lock();
        state.windows.iter().any(|w| w.left > 0) || state.credits.as_ref().is_some_and(|c| c.left > 0)
    }
}

#[derive(Debug, Default)]
struct BudgetState {
    windows: Vec<WindowLease>,
    credits: Option<CreditLeaseState>,
    last_used: Option<Instant>,
}

#[derive(Debug)]
struct WindowLease {
    limit: RateLimit,
    start_ms: i64,
    /// Leased and not spent.
    left: u64,
    /// What the window had left unleased after the last lease.
    unleased: u64,
    /// The last lease came back empty: refuse without asking until then.
    dry_until: Option<Instant>,
}

impl WindowLease {
    fn new(limit: RateLimit, start_ms: i64) -> Self {
        Self { unleased: limit.limit, limit, start_ms, left: 0, dry_until: None }
    }

    /// The window this lease belongs to.
    fn window(&self) -> Window {
        Window {
            start_ms: self.start_ms,
            reset_ms: self.start_ms.saturating_add(self.limit.duration_ms as i64),
        }
    }
}

#[derive(Debug)]
struct CreditLeaseState {
    /// The balance (generation, period) the lease was taken from.
    from: Balance,
    left: u64,
    unleased: u64,
    /// Until when a shortfall of at least this many credits is refused
    /// without asking the store: it just came back empty. A smaller one
    /// may still be had.
    dry_until: Option<(Instant, u64)>,
}

/// What one request asks of one budget.
struct Ask<'a> {
    budget: Arc<Budget>,
    limits: &'a [RateLimit],
    credits: Option<&'a KeyCredits>,
    cost: u64,
}

/// See the module's documentation.
#[derive(Clone)]
pub struct Quotas(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    windows: Arc<dyn RateWindows>,
    clock: Clock,
    budgets: Mutex<HashMap<Subject, Arc<Budget>>>,
}

impl Quotas {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        let windows = store.rate_windows().unwrap_or_else(|| Arc::new(LocalWindows::default()));
        Self(Arc::new(Inner { store, windows, clock, budgets: Mutex::default() }))
    }

    /// Takes one from each rate limit of the key and of its organization,
    /// and `cost` of the key's credits, or nothing (see the module's
    /// documentation). An error only when a lease could not be taken (the
    /// database is unavailable).
    pub async fn charge(&self, key: &Authenticated, cost: u64) -> Result<Outcome, StoreError> {
        let record = &key.key;
        let org_limits = match record.org_id {
            Some(org) if !key.org_ratelimits.is_empty() => Some((org, &key.org_ratelimits[..])),
            _ => None,
        };
        if record.ratelimits.is_empty() && record.credits.is_none() && org_limits.is_none() {
            return Ok(Outcome::Admitted(Charge::default()));
        }
        let now = self.0.clock.now();
        let mut asks = vec![Ask {
            budget: self.budget(Subject::Key(record.id)),
            limits: &record.ratelimits,
            credits: record.credits.as_ref(),
            cost,
        }];
        if let Some((org, limits)) = org_limits {
            asks.push(Ask { budget: self.budget(Subject::Org(org)), limits, credits: None, cost: 0 });
        }
        // Each round leases for at most one budget; one more round decides.
        let mut round = 0;
        loop {
            let (index, short) = match take_all(&asks, now) {
                Ok(charge) => return Ok(Outcome::Admitted(charge)),
                Err(short) => short,
            };
            let ask = &asks[index];
            if let Some(refused) = dry(ask, &short, now) {
                return Ok(refused);
            }
            if round == asks.len() {
                return Ok(refusal(ask, &short, now));
            }
            let _gate = ask.budget.gate.lock().await;
            // Another request may have leased meanwhile.
            match take_all(&asks, now) {
                Ok(charge) => return Ok(Outcome::Admitted(charge)),
                Err((again, short)) if again == index => self.lease(ask, record, &short, now).await?,
                // Another budget is short now: the next round sees to it.
                Err(_) => {}
            }
            round += 1;
        }
    }

    fn budget(&self, subject: Subject) -> Arc<Budget> {
        let mut budgets = self.0.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        budgets
            .entry(subject)
            .or_insert_with(|| {
                Arc::new(Budget { subject, gate: tokio::sync::Mutex::default(), state: Mutex::default() })
            })
            .clone()
    }

    /// Leases what `short` lacks of `ask`'s budget; its gate is held.
    async fn lease(
        &self,
        ask: &Ask<'_>,
        key: &ApiKeyRecord,
        short: &Shortfall,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let budget = &ask.budget;
        let subject = budget.subject.name();
        for &index in &short.windows {
            let (limit, window) = {
                let state = budget.lock();
                let window = &state.windows[index];
                (window.limit.clone(), window.window())
            };
            let (granted, unleased) =
                self.0.windows.lease(&subject, &limit.name, window, limit.limit, 1).await?;
            let mut state = budget.lock();
            if let Some(window) = state.windows.get_mut(index).filter(|w| w.start_ms == window.start_ms) {
                window.left += granted;
                window.unleased = unleased;
                window.dry_until = (granted == 0).then(|| Instant::now() + DRY_FOR);
            }
        }
        if short.credits > 0 {
            let leased = self.0.store.lease_credits(key.id, short.credits, now).await?;
            let mut state = budget.lock();
            state.credits = Some(match leased {
                Some(lease) => {
                    let mut credits = state.credits.take().unwrap_or(CreditLeaseState {
                        from: lease.balance,
                        left: 0,
                        unleased: 0,
                        dry_until: None,
                    });
                    if credits.from.generation != lease.balance.generation
                        || credits.from.period_ms != lease.balance.period_ms
                    {
                        credits.left = 0;
                    }
                    credits.from = lease.balance;
                    credits.left += lease.granted;
                    credits.unleased = lease.balance.remaining.max(0) as u64;
                    credits.dry_until =
                        (lease.granted == 0).then(|| (Instant::now() + DRY_FOR, short.credits));
                    credits
                }
                // Unlimited (or gone) since the key was read: admit until
                // the key is read again, with its new generation.
                None => CreditLeaseState {
                    from: ask
                        .credits
                        .map_or(Balance { remaining: 0, period_ms: None, generation: 0 }, |c| c.balance),
                    left: u64::MAX / 4,
                    unleased: 0,
                    dry_until: None,
                },
            });
        }
        Ok(())
    }

    /// Hands back leases unused for `idle` (all of them with zero), and
    /// forgets budgets unused for [`FORGET_AFTER`].
    pub async fn return_idle(&self, idle: Duration) {
        let budgets: Vec<Arc<Budget>> = {
            let mut budgets = self.0.budgets.lock().unwrap_or_else(PoisonError::into_inner);
            // A budget in use by a request in flight lives on through its
            // `Arc`; forgetting it here only forgets what it knew.
            budgets.retain(|_, budget| {
                budget.lock().last_used.is_some_and(|at| at.elapsed() < FORGET_AFTER) || budget.has_lease()
            });
            budgets.values().cloned().collect()
        };
        for budget in budgets {
            let Ok(_gate) = budget.gate.try_lock() else { continue };
            let (windows, credits) = {
                let mut state = budget.lock();
                if state.last_used.is_some_and(|at| at.elapsed() < idle) {
                    continue;
                }
                let windows: Vec<(String, i64, u64)> = state
                    .windows
                    .iter_mut()
                    .filter(|w| w.left > 0)
                    .map(|w| (w.limit.name.clone(), w.start_ms, std::mem::take(&mut w.left)))
                    .collect();
                let credits = state
                    .credits
                    .as_mut()
                    .filter(|c| c.left > 0)
                    .map(|c| (c.from, std::mem::take(&mut c.left)));
                (windows, credits)
            };
            let subject = budget.subject.name();
            for (name, start, amount) in windows {
                if let Err(error) = self.0.windows.give_back(&subject, &name, start, amount).await {
                    tracing::debug!(%error, subject, "cannot hand back a rate-limit lease");
                }
            }
            if let (Some((from, amount)), Subject::Key(key_id)) = (credits, budget.subject)
                && let Err(error) = self.0.store.return_credits(key_id, amount, from).await
            {
                // Not spent, not returned: the balance is short by at most one lease.
                tracing::warn!(%error, key_id, amount, "cannot hand back unused credits");
            }
        }
    }

    /// Hands back idle leases every second until told to stop, then every
    /// lease.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.return_idle(IDLE_RETURN).await,
                _ = stop.changed() => break,
            }
        }
        self.return_idle(Duration::ZERO).await;
    }

    /// Credits of `key` left as this replica knows them: the balance not
    /// leased, plus its own unspent lease. `None`: unlimited.
    pub fn credits_remaining(&self, key: &ApiKeyRecord) -> Option<u64> {
        let credits = key.credits.as_ref()?;
        let stored = credits.balance.at(credits.refill.as_ref(), self.0.clock.now());
        let budget =
            self.0.budgets.lock().unwrap_or_else(PoisonError::into_inner).get(&Subject::Key(key.id)).cloned();
        let leased = budget
            .and_then(|b| {
                b.lock()
                    .credits
                    .as_ref()
                    .filter(|c| {
                        c.from.generation == stored.generation && c.from.period_ms == stored.period_ms
                    })
                    .map(|c| c.left)
            })
            .unwrap_or(0);
        Some(stored.remaining.max(0) as u64 + leased)
    }
}

/// Takes what the request asks of every budget, or nothing: the index of
/// the first budget short, and what it lacks.
fn take_all(asks: &[Ask<'_>], now: DateTime<Utc>) -> Result<Charge, (usize, Shortfall)> {
    let mut charge = Charge::default();
    for (index, ask) in asks.iter().enumerate() {
        match take(ask, now, &mut charge) {
            Ok(part) => charge.parts.push(part),
            Err(short) => {
                charge.refund();
                return Err((index, short));
            }
        }
    }
    Ok(charge)
}

/// Takes what the request needs from one budget's leases, noting what
/// it reports in `charge`, or says what is short.
fn take(ask: &Ask<'_>, now: DateTime<Utc>, charge: &mut Charge) -> Result<Part, Shortfall> {
    let mut state = ask.budget.lock();
    align(&mut state, ask, now);
    let at_hand = ask.credits.map(|_| state.credits.as_ref().map(|credits| credits.left));
    let short = Shortfall::of(state.windows.iter().map(|w| w.left), at_hand, ask.cost);
    if !short.is_empty() {
        return Err(short);
    }
    state.last_used = Some(Instant::now());
    let mut part = Part { budget: ask.budget.clone(), windows: Vec::new(), credits: 0, credit_lease: None };
    for window in &mut state.windows {
        window.left -= 1;
        part.windows.push((window.limit.name.clone(), window.start_ms));
        let report = report(window, ask.budget.subject, now);
        if charge.ratelimit.as_ref().is_none_or(|r| report.remaining < r.remaining) {
            charge.ratelimit = Some(report);
        }
    }
    if let Some(credits) = state.credits.as_mut() {
        credits.left -= ask.cost;
        part.credits = ask.cost;
        part.credit_lease = Some(credits.from);
        charge.credits_remaining = Some(credits.unleased + credits.left);
    } else if let Some(KeyCredits { balance, refill }) = ask.credits {
        charge.credits_remaining = Some(balance.at(refill.as_ref(), now).remaining.max(0) as u64);
    }
    Ok(part)
}

/// Brings a budget's leases in line with what is asked now: the current
/// limits and windows, the credits' generation and refill period.
fn align(state: &mut BudgetState, ask: &Ask<'_>, now: DateTime<Utc>) {
    let stale = state.windows.len() != ask.limits.len()
        || state.windows.iter().zip(ask.limits).any(|(w, limit)| w.limit != *limit);
    if stale {
        state.windows = ask.limits.iter().map(|limit| WindowLease::new(limit.clone(), i64::MIN)).collect();
    }
    for window in &mut state.windows {
        let current = window.limit.window(now).start_ms;
        if window.start_ms != current {
            // A window that has passed leaves nothing to spend or hand back.
            *window = WindowLease::new(window.limit.clone(), current);
        }
    }
    match ask.credits {
        None => state.credits = None,
        Some(KeyCredits { balance, refill }) => {
            let current = balance.at(refill.as_ref(), now);
            // Set anew, or a refill period began: the old lease is void. A
            // request authenticated before the change (an older generation)
            // spends from the new lease rather than void it: voided, its
            // credits, already taken from the balance, would be lost.
            if let Some(credits) = &state.credits
                && (credits.from.generation < balance.generation
                    || credits.from.period_ms.unwrap_or(i64::MIN) < current.period_ms.unwrap_or(i64::MIN))
            {
                state.credits = None;
            }
        }
    }
}

/// The refusal a shortfall comes to when the leases it lacks are known to
/// be dry.
fn dry(ask: &Ask<'_>, short: &Shortfall, now: DateTime<Utc>) -> Option<Outcome> {
    let state = ask.budget.lock();
    let dry_now = |until: Option<Instant>| until.is_some_and(|until| Instant::now() < until);
    for &index in &short.windows {
        if let Some(window) = state.windows.get(index)
            && dry_now(window.dry_until)
        {
            return Some(Outcome::RateLimited(report(window, ask.budget.subject, now)));
        }
    }
    let credits = state.credits.as_ref().filter(|_| short.credits > 0)?;
    let (until, asked) = credits.dry_until?;
    (short.credits >= asked && dry_now(Some(until)))
        .then(|| Outcome::UsageExceeded { remaining: credits.unleased + credits.left })
}

/// The refusal for what is still short after leasing.
fn refusal(ask: &Ask<'_>, short: &Shortfall, now: DateTime<Utc>) -> Outcome {
    let state = ask.budget.lock();
    if let Some(Refused::RateLimit(index)) = short.refused_by()
        && let Some(window) = state.windows.get(index)
    {
        return Outcome::RateLimited(report(window, ask.budget.subject, now));
    }
    let remaining = state.credits.as_ref().map_or(0, |c| c.unleased + c.left);
    Outcome::UsageExceeded { remaining }
}

fn report(window: &WindowLease, subject: Subject, now: DateTime<Utc>) -> LimitReport {
    let reset_ms = window.window().reset_ms;
    LimitReport {
        shared: matches!(subject, Subject::Org(_)),
        reset_seconds: (reset_ms - now.timestamp_millis()).max(1).unsigned_abs().div_ceil(1000),
        name: window.limit.name.clone(),
        limit: window.limit.limit,
        remaining: window.unleased + window.left,
        duration_ms: window.limit.duration_ms,
        reset_ms,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_read_before_credits_were_set_spends_the_new_lease_and_never_voids_it() {
        let budget = Arc::new(Budget {
            subject: Subject::Key(1),
            gate: tokio::sync::Mutex::default(),
            state: Mutex::default(),
        });
        let credits = |generation| KeyCredits {
            balance: Balance { remaining: 5, period_ms: None, generation },
            refill: None,
        };
        let (old, new) = (credits(1), credits(2));
        let ask = |credits| Ask { budget: budget.clone(), limits: &[], credits: Some(credits), cost: 1 };
        let now = Utc::now();
        budget.lock().credits =
            Some(CreditLeaseState { from: new.balance, left: 5, unleased: 0, dry_until: None });
        // A request authenticated before the change: the new lease stays.
        align(&mut budget.lock(), &ask(&old), now);
        assert_eq!(budget.lock().credits.as_ref().map(|c| c.left), Some(5));
        let mut charge = Charge::default();
        let part = take(&ask(&old), now, &mut charge).expect("taken from the new lease");
        assert_eq!((part.credits, budget.lock().credits.as_ref().map(|c| c.left)), (1, Some(4)));
        // A lease of an older generation is void for a request that knows the new one.
        budget.lock().credits =
            Some(CreditLeaseState { from: old.balance, left: 5, unleased: 0, dry_until: None });
        align(&mut budget.lock(), &ask(&new), now);
        assert!(budget.lock().credits.is_none());
    }
}
