//! `GET /apikey/:id/usage`: requests, credits spent and refusals per day.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use keygate_store::DailyUse;
use keygate_store::Store;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::key::{KeyPath, ManagedKey};
use crate::api::{ReadErrors, Timestamp};
use crate::http::error::ApiResult;
use crate::http::extract::{Params, int_in_range};

/// The longest usage history one request returns.
const MAX_USAGE_DAYS: i64 = 90;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    days: Option<String>,
}

impl IntoParams for UsageQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::api::schema::{integer, query};
        vec![query(
            "days",
            false,
            integer(1, MAX_USAGE_DAYS),
            "How many days, today included: 1–90, default 30",
        )]
    }
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DayView {
    #[schema(value_type = String, format = Date, example = "2024-02-12")]
    date: chrono::NaiveDate,
    requests: i64,
    /// Requests authenticated with the key but refused (403).
    denied: i64,
    /// Credits the admitted requests spent.
    credits: i64,
    /// Requests the key's limits refused, by reason.
    rate_limited: i64,
    usage_exceeded: i64,
    disabled: i64,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct UsageView {
    /// One entry per day, oldest first, days without requests included.
    data: Vec<DayView>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Timestamp>,
}

#[utoipa::path(
    get,
    path = "/apikey/{id_or_key}/usage",
    tag = "apikey",
    params(KeyPath, UsageQuery),
    responses(
        (status = 200, description = "Requests per UTC day (may lag by a second)", body = UsageView),
        ReadErrors,
    ),
)]
pub async fn usage(
    State(store): State<Arc<dyn Store>>,
    Params(query): Params<UsageQuery>,
    ManagedKey { key, .. }: ManagedKey,
) -> ApiResult<Json<UsageView>> {
    let days = int_in_range(query.days.as_deref(), "days", 1..=MAX_USAGE_DAYS, "invalid_days")?.unwrap_or(30);
    let today = Utc::now().date_naive();
    let first = today - chrono::Duration::days(days - 1);
    let recorded = store.key_usage(key.id, first).await?;
    let data = first
        .iter_days()
        .take_while(|d| *d <= today)
        .map(|date| {
            let day = recorded.iter().find(|u| u.date == date).copied().unwrap_or(DailyUse::zero(date));
            DayView {
                date,
                requests: day.requests,
                denied: day.denied,
                credits: day.credits,
                rate_limited: day.rate_limited,
                usage_exceeded: day.usage_exceeded,
                disabled: day.disabled,
            }
        })
        .collect();
    Ok(Json(UsageView { data, last_used_at: key.last_used_at.map(Timestamp) }))
}
