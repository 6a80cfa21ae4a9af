//! The access log, off the request path: a request hands a few plain values
//! ([`Entry`]) to a bounded queue without waiting, and a thread of its own
//! formats them and writes them to stderr, in batches, at most
//! [`FLUSH_EVERY`] after they were answered. When the queue is full the line
//! is dropped and counted (`keygate_access_log_dropped_total`, and a line
//! saying how many were dropped).
//!
//! A line: `2025-01-01T12:00:00.000001Z  INFO keygate::access: served
//! method=GET path=/apikey/ak_[redacted] route=/apikey/{id_or_key}
//! status=200 ms=0.412 client=127.0.0.1`, or with `--log-format json` the
//! same as an object, in the shape of the rest of the JSON log:
//! `{"timestamp":"…","level":"INFO","message":"served","method":"GET",
//! "path":"…","route":"…","status":200,"ms":0.412,"client":"127.0.0.1",
//! "target":"keygate::access"}`. The path is masked by [`redact`]
//! (on the writer's thread) and never has its query; `route` is the matched
//! route template, or `unmatched`. For `/auth` (forward authentication)
//! the path is the route: the protected API's paths are not keygate's to
//! log.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method, StatusCode};

use crate::http::redact::redact;
use crate::telemetry::LogFormat;

/// Lines waiting at most; beyond, lines are dropped.
pub const CAPACITY: usize = 16 * 1024;
/// How often the writer wakes to write what came in.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// What a request leaves for its line; formatted later, on the writer's thread.
pub struct Entry {
    pub at: SystemTime,
    pub method: Method,
    /// The path, copied out of the request, or `None` when it is the route
    /// template itself (no copy). Nothing of the request itself (its `Uri`,
    /// a header value) is kept past the response: a piece of it would keep
    /// hyper's read buffer alive, and cost each request a fresh one.
    pub path: Option<Box<str>>,
    pub route: Option<MatchedPath>,
    pub status: StatusCode,
    pub latency: Duration,
    pub client: Client,
}

/// Where the line's client address comes from, read on the writer's thread.
pub enum Client {
    /// The peer is the client.
    Peer(Option<SocketAddr>),
    /// A trusted proxy's header: a copy of the last value it had, if any.
    Forwarded(Option<HeaderValue>),
}

/// The request side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AccessLog {
    sender: SyncSender<Entry>,
    shared: Arc<Shared>,
}

struct Shared {
    dropped: AtomicU64,
    stop: AtomicBool,
    clients: crate::http::client_address::ClientAddressPolicy,
    format: LogFormat,
}

/// The writer thread; [`Writer::finish`] writes what is left and stops it.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Starts the writer thread; `clients` says where client addresses come from.
    pub fn start(
        clients: crate::http::client_address::ClientAddressPolicy,
        format: LogFormat,
    ) -> std::io::Result<(Self, Writer)> {
        let (sender, receiver) = sync_channel(CAPACITY);
        let shared =
            Arc::new(Shared { dropped: AtomicU64::new(0), stop: AtomicBool::new(false), clients, format });
        let thread = std::thread::Builder::new().name("keygate-access-log".into()).spawn({
            let shared = shared.clone();
            move || write_lines(receiver, &shared, &mut crate::telemetry::log_writer::stderr())
        })?;
        Ok((Self { sender, shared: shared.clone() }, Writer { shared, thread: Some(thread) }))
    }

    /// Where the client address of a request from `peer` comes from; only a
    /// header value is copied here, parsed on the writer's thread.
    pub fn client(&self, peer: Option<SocketAddr>, headers: &axum::http::HeaderMap) -> Client {
        match self.shared.clients.header_for(peer.map(|p| p.ip())) {
            Some(header) => Client::Forwarded(
                headers
                    .get_all(header)
                    .iter()
                    .next_back()
                    .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()),
            ),
            None => Client::Peer(peer),
        }
    }

    /// Queues a line, or drops it if the writer is behind.
    pub fn send(&self, entry: Entry) {
        match self.sender.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(metrics) = crate::telemetry::metrics::get() {
                    metrics.access_log_dropped.increment(1);
                }
            }
        }
    }
}

impl Writer {
    /// Writes every line queued so far, then stops the thread.
    pub async fn finish(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn write_lines(receiver: Receiver<Entry>, shared: &Shared, out: &mut impl Write) {
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut clock = Clock::default();
    let mut reported = 0;
    loop {
        // Read the flag first: whatever was queued before it was set is
        // drained below.
        let stopping = shared.stop.load(Ordering::SeqCst);
        let mut disconnected = false;
        loop {
            match receiver.try_recv() {
                Ok(entry) => {
                    match shared.format {
                        LogFormat::Text => format_line(&mut buffer, &mut clock, &entry),
                        LogFormat::Json => format_json(&mut buffer, &mut clock, &entry),
                    }
                    if buffer.len() >= 60 * 1024 {
                        let _ = out.write_all(&buffer);
                        buffer.clear();
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped != reported {
            let message = format!("{} access log lines dropped: the writer fell behind", dropped - reported);
            match shared.format {
                LogFormat::Text => {
                    clock.write(&mut buffer, SystemTime::now());
                    let _ = writeln!(buffer, "  WARN keygate::access: {message}");
                }
                LogFormat::Json => {
                    buffer.extend_from_slice(b"{\"timestamp\":\"");
                    clock.write(&mut buffer, SystemTime::now());
                    let _ = writeln!(
                        buffer,
                        "\",\"level\":\"WARN\",\"message\":\"{message}\",\"target\":\"keygate::access\"}}"
                    );
                }
            }
            reported = dropped;
        }
        if !buffer.is_empty() {
            let _ = out.write_all(&buffer);
            let _ = out.flush();
            buffer.clear();
        }
        if stopping || disconnected {
            return;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

/// One line, in the shape of the rest of the log.
pub fn format_line(buffer: &mut Vec<u8>, clock: &mut Clock, entry: &Entry) {
    let client = entry.client.address();
    let micros = entry.latency.as_micros();
    clock.write(buffer, entry.at);
    buffer.extend_from_slice(b"  INFO keygate::access: served method=");
    buffer.extend_from_slice(entry.method.as_str().as_bytes());
    buffer.extend_from_slice(b" path=");
    let route = entry.route.as_ref().map_or(crate::telemetry::metrics::UNMATCHED, MatchedPath::as_str);
    match &entry.path {
        Some(path) => buffer.extend_from_slice(redact(path).as_bytes()),
        None => buffer.extend_from_slice(route.as_bytes()),
    }
    buffer.extend_from_slice(b" route=");
    buffer.extend_from_slice(route.as_bytes());
    let _ = write!(buffer, " status={} ms={}.{:03}", entry.status.as_u16(), micros / 1000, micros % 1000);
    match client {
        Some(ip) => {
            let _ = write!(buffer, " client={ip}");
        }
        None => buffer.extend_from_slice(b" client=-"),
    }
    buffer.push(b'\n');
}

/// One JSON object, in the shape of the rest of the JSON log.
pub fn format_json(buffer: &mut Vec<u8>, clock: &mut Clock, entry: &Entry) {
    let route = entry.route.as_ref().map_or(crate::telemetry::metrics::UNMATCHED, MatchedPath::as_str);
    let path = entry.path.as_deref().map_or(std::borrow::Cow::Borrowed(route), redact);
    let micros = entry.latency.as_micros();
    buffer.extend_from_slice(b"{\"timestamp\":\"");
    clock.write(buffer, entry.at);
    let _ = write!(buffer, "\",\"level\":\"INFO\",\"message\":\"served\",\"method\":");
    let _ = serde_json::to_writer(&mut *buffer, entry.method.as_str());
    buffer.extend_from_slice(b",\"path\":");
    let _ = serde_json::to_writer(&mut *buffer, path.as_ref());
    buffer.extend_from_slice(b",\"route\":");
    let _ = serde_json::to_writer(&mut *buffer, route);
    let _ = write!(
        buffer,
        ",\"status\":{},\"ms\":{}.{:03},\"client\":",
        entry.status.as_u16(),
        micros / 1000,
        micros % 1000
    );
    match entry.client.address() {
        Some(ip) => {
            let _ = write!(buffer, "\"{ip}\"");
        }
        None => buffer.extend_from_slice(b"null"),
    }
    buffer.extend_from_slice(b",\"target\":\"keygate::access\"}\n");
}

impl Client {
    fn address(&self) -> Option<std::net::IpAddr> {
        match self {
            Client::Forwarded(value) => {
                value.as_ref().and_then(crate::http::client_address::address_from_header_value)
            }
            Client::Peer(peer) => peer.map(|peer| peer.ip()),
        }
    }
}

/// RFC 3339 timestamps in UTC with microseconds; the date and time up to
/// the second are formatted once per second, not once per line.
#[derive(Default)]
pub struct Clock {
    second: Option<u64>,
    prefix: String,
}

impl Clock {
    fn write(&mut self, buffer: &mut Vec<u8>, at: SystemTime) {
        let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(second);
            self.prefix =
                chrono::DateTime::<chrono::Utc>::from(whole).format("%Y-%m-%dT%H:%M:%S").to_string();
            self.second = Some(second);
        }
        buffer.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(buffer, ".{:06}Z", since_epoch.subsec_micros());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            at: SystemTime::UNIX_EPOCH,
            method: Method::GET,
            path: Some(path.into()),
            route: None,
            status: StatusCode::OK,
            latency: Duration::from_micros(412),
            client: Client::Peer(Some("127.0.0.1:4711".parse().expect("address"))),
        }
    }

    #[test]
    fn a_line_masks_keys_in_its_path() {
        let mut buffer = Vec::new();
        format_line(&mut buffer, &mut Clock::default(), &entry("/apikey/ak_secret123/rotate"));
        let line = String::from_utf8(buffer).expect("utf-8");
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000000Z  INFO keygate::access: served method=GET \
             path=/apikey/ak_[redacted]/rotate route=unmatched status=200 ms=0.412 client=127.0.0.1\n"
        );
    }

    #[test]
    fn a_json_line_is_one_object_with_the_same_fields() {
        let mut buffer = Vec::new();
        format_json(&mut buffer, &mut Clock::default(), &entry("/apikey/ak_secret123/\"rotate"));
        let line = String::from_utf8(buffer).expect("utf-8");
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1, "{line}");
        let object: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(
            object,
            serde_json::json!({
                "timestamp": "1970-01-01T00:00:00.000000Z", "level": "INFO", "message": "served",
                "method": "GET", "path": "/apikey/ak_[redacted]/\"rotate", "route": "unmatched",
                "status": 200, "ms": 0.412, "client": "127.0.0.1", "target": "keygate::access",
            })
        );
    }

    #[tokio::test]
    async fn a_path_that_is_its_route_is_written_from_the_route() {
        let mut livez = entry("/unused");
        livez.path = None;
        livez.route = Some(matched("/livez").await);
        let mut buffer = Vec::new();
        format_line(&mut buffer, &mut Clock::default(), &livez);
        let line = String::from_utf8(buffer).expect("utf-8");
        assert!(line.contains(" path=/livez route=/livez status=200 "), "{line}");
    }

    /// The `MatchedPath` axum gives a request to `route` (it has no public
    /// constructor).
    async fn matched(route: &'static str) -> MatchedPath {
        use tower::ServiceExt;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let sender = std::sync::Arc::new(std::sync::Mutex::new(Some(sender)));
        let app = axum::Router::new().route(
            route,
            axum::routing::get(move |path: MatchedPath| async move {
                if let Some(sender) = sender.lock().expect("lock").take() {
                    let _ = sender.send(path);
                }
            }),
        );
        let request = axum::http::Request::get(route).body(axum::body::Body::empty()).expect("request");
        app.oneshot(request).await.expect("served");
        receiver.await.expect("the route matched")
    }

    #[test]
    fn timestamps_are_rfc_3339_with_microseconds_across_seconds() {
        let mut clock = Clock::default();
        for at in [
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_999_999),
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_001_000_001),
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_001_250_000),
        ] {
            let mut buffer = Vec::new();
            clock.write(&mut buffer, at);
            let expected = chrono::DateTime::<chrono::Utc>::from(at)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(String::from_utf8(buffer).expect("utf-8"), expected);
        }
    }

    #[test]
    fn the_writer_drains_what_was_queued_before_it_stops() {
        let (sender, receiver) = sync_channel(4);
        let shared = Shared {
            dropped: AtomicU64::new(2),
            stop: AtomicBool::new(true),
            clients: Default::default(),
            format: LogFormat::Text,
        };
        sender.try_send(entry("/livez")).expect("queued");
        let mut out = Vec::new();
        write_lines(receiver, &shared, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("path=/livez"), "{text}");
        assert!(text.contains("2 access log lines dropped"), "{text}");
    }
}
