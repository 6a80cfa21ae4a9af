//! The metrics registry: Prometheus text format, through the `metrics`
//! facade and `metrics-exporter-prometheus` (no HTTP server of its own;
//! `GET /metrics` is [`crate::server::metrics`]).
//!
//! One recorder per process, installed by the first [`install`] (a test
//! process starts many servers; they share it, so counters are process-wide).
//! Everything counted on a request path goes through a handle registered
//! once ([`Metrics`], [`HttpMetrics`]): an increment is an atomic add, with
//! no label formatting and no registry lookup. What describes a server's
//! own state (its key cache's subscription, its pools) is read at scrape
//! time and appended to the rendered text, so it costs nothing per request.
//!
//! Labels hold fixed words only: a route template, a method, a status, a
//! verdict or error code. Never a key, a preview, a token, an email or a
//! raw path.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds of the latency histogram, in seconds.
const SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the writer's batch size histogram.
const BATCH_SIZES: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];

/// The verdicts of `POST /verify`, each with a counter.
const VERDICTS: [&str; 7] =
    ["VALID", "NOT_FOUND", "EXPIRED", "DISABLED", "FORBIDDEN", "RATE_LIMITED", "USAGE_EXCEEDED"];
/// Why a key's limits refused a request (on any endpoint), each with a counter.
const REFUSALS: [&str; 3] = ["RATE_LIMITED", "USAGE_EXCEEDED", "DISABLED"];
/// The kinds of key cache invalidation.
pub const INVALIDATIONS: [&str; 5] = ["key", "member", "organization", "app", "flush"];

/// The process's recorder and the handles every request path uses.
pub struct Metrics {
    prometheus: PrometheusHandle,
    pub http: HttpMetrics,
    verdicts: [Counter; VERDICTS.len()],
    refusals: [Counter; REFUSALS.len()],
    pub cache_hit: Counter,
    pub cache_miss: Counter,
    /// A digest the cache knows to be unknown: answered without the database.
    pub cache_unknown: Counter,
    invalidations: [Counter; INVALIDATIONS.len()],
    pub access_log_dropped: Counter,
    /// Memory, CPU time, file descriptors: read at each scrape.
    process: metrics_process::Collector,
}

static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();

/// Installs the process's recorder, once; later calls return the same.
/// `None` when another recorder was installed first (then only the
/// scrape-time gauges are served).
pub fn install() -> Option<&'static Metrics> {
    METRICS
        .get_or_init(|| match build() {
            Ok(prometheus) => Some(Metrics::new(prometheus)),
            Err(error) => {
                tracing::warn!(%error, "cannot install the metrics recorder; /metrics will be incomplete");
                None
            }
        })
        .as_ref()
}

/// The installed metrics, if [`install`] ran: one atomic load.
#[inline]
pub fn get() -> Option<&'static Metrics> {
    METRICS.get().and_then(Option::as_ref)
}

fn build() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Full("keygate_writer_batch_size".into()), &BATCH_SIZES)?
        .install_recorder()?;
    // Histograms keep raw samples until drained: drain them even when
    // nobody scrapes.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("keygate-metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread");
    }
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    metrics_process::Collector::default().describe();
    describe_gauge!(
        "keygate_build_info",
        "Always 1: the version and the commit this binary was built from, as labels"
    );
    metrics::gauge!("keygate_build_info", "version" => crate::telemetry::VERSION, "commit" => crate::telemetry::COMMIT).set(1);
    describe_counter!(
        "keygate_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "keygate_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (until the response head), by method and route template"
    );
    describe_counter!(
        "keygate_verifications_total",
        "POST /verify outcomes: the verdict code, or the error code of a refused call"
    );
    describe_counter!(
        "keygate_key_cache_lookups_total",
        "Key cache lookups: hit, miss (read from the database) or unknown (a known-unknown digest)"
    );
    describe_counter!(
        "keygate_limit_refusals_total",
        "Requests refused by their key's limits, on every endpoint: RATE_LIMITED, USAGE_EXCEEDED or DISABLED"
    );
    describe_counter!("keygate_key_cache_invalidations_total", "Key cache invalidations, by kind of change");
    describe_counter!(
        "keygate_access_log_dropped_total",
        "Access log lines dropped because the writer fell behind"
    );
    describe_histogram!(
        "keygate_writer_batch_size",
        "Writes committed together by the database writer, per batch"
    );
}

impl Metrics {
    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.process.collect();
        self.prometheus.render()
    }

    fn new(prometheus: PrometheusHandle) -> Self {
        let lookup =
            |result: &'static str| metrics::counter!("keygate_key_cache_lookups_total", "result" => result);
        Self {
            prometheus,
            http: HttpMetrics::default(),
            verdicts: VERDICTS.map(|code| metrics::counter!("keygate_verifications_total", "code" => code)),
            refusals: REFUSALS.map(|code| metrics::counter!("keygate_limit_refusals_total", "code" => code)),
            cache_hit: lookup("hit"),
            cache_miss: lookup("miss"),
            cache_unknown: lookup("unknown"),
            invalidations: INVALIDATIONS
                .map(|kind| metrics::counter!("keygate_key_cache_invalidations_total", "kind" => kind)),
            access_log_dropped: metrics::counter!("keygate_access_log_dropped_total"),
            process: metrics_process::Collector::default(),
        }
    }

    /// Counts one outcome of `POST /verify`: a verdict, or an error code
    /// (always a fixed word of the code base).
    pub fn verification(&self, code: &'static str) {
        match VERDICTS.iter().position(|&v| v == code) {
            Some(index) => self.verdicts[index].increment(1),
            None => metrics::counter!("keygate_verifications_total", "code" => code).increment(1),
        }
    }

    /// Counts one request a key's limits refused, on any endpoint; `code`
    /// is one of [`REFUSALS`].
    pub fn limit_refusal(&self, code: &'static str) {
        if let Some(index) = REFUSALS.iter().position(|&r| r == code) {
            self.refusals[index].increment(1);
        }
    }

    /// Counts one invalidation of the key cache; `kind` is one of [`INVALIDATIONS`].
    pub fn invalidation(&self, kind: &'static str) {
        if let Some(index) = INVALIDATIONS.iter().position(|&k| k == kind) {
            self.invalidations[index].increment(1);
        }
    }
}

/// The request counter and latency histogram of each (method, route,
/// status), registered on first use and then found with two read locks.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>,
}

struct RouteMetrics {
    route: Box<str>,
    /// (method, status) → requests.
    requests: RwLock<Vec<(Method, u16, Counter)>>,
    /// method → latency.
    durations: RwLock<Vec<(Method, Histogram)>>,
}

impl HttpMetrics {
    /// Records one answered request. `route` is the matched route template
    /// (never a raw path), or `None` for a request no route matched.
    pub fn record(&self, method: &Method, route: Option<&str>, status: StatusCode, latency: Duration) {
        let route = route.unwrap_or(UNMATCHED);
        let found = self.routes.read().unwrap_or_else(PoisonError::into_inner).get(route).cloned();
        let series = match found {
            Some(series) => series,
            None => self
                .routes
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(route.into())
                .or_insert_with(|| {
                    Arc::new(RouteMetrics {
                        route: route.into(),
                        requests: RwLock::default(),
                        durations: RwLock::default(),
                    })
                })
                .clone(),
        };
        let method = method_label(method);
        series.request(method, status.as_u16());
        series.duration(method, latency.as_secs_f64());
    }
}

impl RouteMetrics {
    fn request(&self, method: &Method, status: u16) {
        let requests = self.requests.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, counter)) = requests.iter().find(|(m, s, _)| *s == status && m == method) {
            counter.increment(1);
            return;
        }
        drop(requests);
        let mut requests = self.requests.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, counter)) = requests.iter().find(|(m, s, _)| *s == status && m == method) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "keygate_http_requests_total",
            "method" => method.as_str().to_owned(),
            "route" => self.route.to_string(),
            "status" => status.to_string(),
        );
        counter.increment(1);
        requests.push((method.clone(), status, counter));
    }

    fn duration(&self, method: &Method, seconds: f64) {
        let durations = self.durations.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = durations.iter().find(|(m, _)| m == method) {
            histogram.record(seconds);
            return;
        }
        drop(durations);
        let mut durations = self.durations.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = durations.iter().find(|(m, _)| m == method) {
            histogram.record(seconds);
            return;
        }
        let histogram = metrics::histogram!(
            "keygate_http_request_duration_seconds",
            "method" => method.as_str().to_owned(),
            "route" => self.route.to_string(),
        );
        histogram.record(seconds);
        durations.push((method.clone(), histogram));
    }
}

/// A method as a label: the standard ones, and `OTHER` for any extension
/// method, so that a client cannot mint label values.
fn method_label(method: &Method) -> &Method {
    static OTHER: OnceLock<Method> = OnceLock::new();
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    if STANDARD.contains(method) {
        method
    } else {
        OTHER.get_or_init(|| Method::from_bytes(b"OTHER").unwrap_or(Method::GET))
    }
}
