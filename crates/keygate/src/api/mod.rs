//! HTTP handlers, one module per resource, and the JSON views they answer with.

pub mod apikey;
pub mod app;
pub mod bundle;
pub mod health;
pub mod organization;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// An RFC 3339 UTC timestamp such as `2024-02-12T00:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// `{"data": [...]}`, the shape of every list.
#[derive(Debug, Serialize)]
pub struct Data<T> {
    pub data: Vec<T>,
}

/// `{"success": true}`.
#[derive(Debug, Serialize)]
pub struct Success {
    pub success: bool,
}

pub const SUCCESS: Success = Success { success: true };
