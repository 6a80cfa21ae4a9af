//! `GET /metrics`: the registry's text ([`crate::telemetry::metrics`]),
//! then this server's own gauges, read at scrape time; on the main listener
//! or on a listener of its own (`--metrics-listen`).
//!
//! Policy: on the main listener, which faces clients, a scrape comes from a
//! loopback client (as `--trusted-proxy` resolves it: through a proxy, the
//! client it names, not the proxy) or presents `--metrics-token` as a bearer
//! token; anything else is refused. On `--metrics-listen`, the operator
//! chose who can reach the address: every scrape is answered.

use std::fmt::Write as _;

use std::net::IpAddr;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::admission::Admission;
use crate::admission::verification::{Credential, guarded, strip_bearer};
use crate::http::client_address::ClientAddress;
use crate::http::error::ApiError;
use crate::state::{MetricsAccess, VerifierToken};
use crate::telemetry::metrics::{self, CONTENT_TYPE_TEXT};

/// The metrics of the process, then this server's own gauges.
pub fn render(admission: &Admission) -> String {
    let mut text = metrics::get().map(metrics::Metrics::render).unwrap_or_default();
    if let Some(cache) = admission.authenticator.cache() {
        gauge(
            &mut text,
            "keygate_key_cache_trusted",
            "Whether this replica's key cache is trusted now: its change subscription is live (1) or not (0)",
            &[(vec![], u8::from(cache.trusted()).into())],
        );
    }
    let pools = admission.store.pool_use();
    if !pools.is_empty() {
        let connections = pools
            .iter()
            .flat_map(|p| {
                [
                    (vec![("pool", p.pool), ("state", "idle")], f64::from(p.idle)),
                    (vec![("pool", p.pool), ("state", "in_use")], f64::from(p.size.saturating_sub(p.idle))),
                ]
            })
            .collect::<Vec<_>>();
        gauge(
            &mut text,
            "keygate_db_pool_connections",
            "Open database connections, idle or in use",
            &connections,
        );
        let max = pools.iter().map(|p| (vec![("pool", p.pool)], f64::from(p.max))).collect::<Vec<_>>();
        gauge(&mut text, "keygate_db_pool_max_connections", "The most connections a pool may open", &max);
    }
    text
}

/// Appends a gauge family; label values are fixed words of the code base.
fn gauge(text: &mut String, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} gauge");
    for (labels, value) in samples {
        text.push_str(name);
        if !labels.is_empty() {
            let labels = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",");
            let _ = write!(text, "{{{labels}}}");
        }
        let _ = writeln!(text, " {value}");
    }
    text.push('\n');
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (
            status = 200,
            description = "Metrics in the Prometheus text exposition format (version 0.0.4)",
            content_type = "text/plain",
            body = String
        ),
        (
            status = 403,
            description = "Neither a loopback client nor presenting --metrics-token (metrics_forbidden)",
            body = crate::http::error::ErrorBody
        ),
    ),
    security((), ("metrics_token" = []))
)]
pub async fn metrics(
    State(admission): State<Admission>,
    State(access): State<MetricsAccess>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
) -> Response {
    let presented = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(strip_bearer);
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "metrics_forbidden",
            "GET /metrics on this listener is for loopback clients: scrape from this machine, present \
             --metrics-token as a bearer token, or serve it on --metrics-listen",
        )
    };
    // A token presented and wrong is a failed authentication, throttled
    // like a wrong key or verifier token.
    let checked = guarded(&admission, client, async {
        Ok(match (may_scrape(client, presented, access.token.as_deref()), presented.is_some()) {
            (true, _) => Credential::Accepted(()),
            (false, true) => Credential::Refused(forbidden()),
            (false, false) => return Err(forbidden()),
        })
    });
    if let Err(refused) = checked.await {
        return refused.into_response();
    }
    scrape(State(admission)).await
}

/// `GET /metrics` on a listener of its own.
async fn scrape(State(admission): State<Admission>) -> Response {
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], render(&admission)).into_response()
}

/// Whether a scrape on the main listener is answered: from a loopback
/// client, or presenting the configured token.
fn may_scrape(client: Option<IpAddr>, presented: Option<&str>, token: Option<&VerifierToken>) -> bool {
    let local = client.is_some_and(|ip| ip.to_canonical().is_loopback());
    let token = token.is_some_and(|token| presented.is_some_and(|p| token.matches(p)));
    local || token
}

/// The router of a listener of its own (`--metrics-listen`): `/metrics` only.
pub fn router(admission: Admission) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
        .with_state(admission)
}
