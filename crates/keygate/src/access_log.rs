//! The access log, off the request path: a request hands a few plain values
//! ([`Entry`]) to a bounded queue without waiting, and a thread of its own
//! formats them and writes them to stderr, in batches, at most
//! [`FLUSH_EVERY`] after they were answered. When the queue is full the line
//! is dropped and counted (`keygate_access_log_dropped_total`, and a line
//! saying how many were dropped).
//!
//! A line: `2025-01-01T12:00:00.000001Z  INFO keygate::access: served
//! method=GET path=/apikey/ak_[redacted] route=/apikey/{id_or_key}
//! status=200 ms=0.412 client=127.0.0.1`. The path is masked by [`redact`]
//! (on the writer's thread) and never has its query; `route` is the matched
//! route template, or `unmatched`. For `/auth` (forward authentication)
//! the path is the route: the protected API's paths are not keygate's to
//! log.
//!
//! Masking is by shape, not by prefix: a path segment that holds a key in
//! any spelling (`ak_`, `kgi_`, in any case, percent-encoded or not), or
//! that looks like any other long random token (16 characters or more of a
//! token's alphabet, mixing letters and digits, or as varied as random
//! text), is written `[redacted]`. UUIDs (organizations, users) and
//! dotted names (app ids, versions) are kept.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method, StatusCode};

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
    clients: crate::auth::ClientAddressPolicy,
}

/// The writer thread; [`Writer::finish`] writes what is left and stops it.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Starts the writer thread; `clients` says where client addresses come from.
    pub fn start(clients: crate::auth::ClientAddressPolicy) -> std::io::Result<(Self, Writer)> {
        let (sender, receiver) = sync_channel(CAPACITY);
        let shared = Arc::new(Shared { dropped: AtomicU64::new(0), stop: AtomicBool::new(false), clients });
        let thread = std::thread::Builder::new().name("keygate-access-log".into()).spawn({
            let shared = shared.clone();
            move || write_lines(receiver, &shared, &mut crate::log_writer::stderr())
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
                if let Some(metrics) = crate::metrics::get() {
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
                    format_line(&mut buffer, &mut clock, &entry);
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
            clock.write(&mut buffer, SystemTime::now());
            let _ = writeln!(
                buffer,
                "  WARN keygate::access: {} access log lines dropped: the writer fell behind",
                dropped - reported
            );
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
    let client = match &entry.client {
        Client::Forwarded(value) => value.as_ref().and_then(crate::auth::address_from_header_value),
        Client::Peer(peer) => peer.map(|peer| peer.ip()),
    };
    let micros = entry.latency.as_micros();
    clock.write(buffer, entry.at);
    buffer.extend_from_slice(b"  INFO keygate::access: served method=");
    buffer.extend_from_slice(entry.method.as_str().as_bytes());
    buffer.extend_from_slice(b" path=");
    let route = entry.route.as_ref().map_or(crate::metrics::UNMATCHED, MatchedPath::as_str);
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

/// A path as it may be logged: every segment that looks like a credential
/// (see the module's documentation) is masked.
pub fn redact(path: &str) -> std::borrow::Cow<'_, str> {
    if path.split('/').all(|segment| mask(segment).is_none()) {
        return std::borrow::Cow::Borrowed(path);
    }
    let masked: Vec<&str> = path.split('/').map(|segment| mask(segment).unwrap_or(segment)).collect();
    std::borrow::Cow::Owned(masked.join("/"))
}

/// A parser's message with every quoted word (between backticks or double
/// quotes, as serde quotes what it did not expect) that looks like a
/// secret masked as [`redact`] masks a path segment: an error answer never
/// repeats a key or a code, even to whoever sent it.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut rest = message;
    while let Some(at) = rest.find(['`', '"']) {
        let (part, tail) = rest.split_at(at);
        out.push_str(if quoted { mask(part).unwrap_or(part) } else { part });
        out.push_str(&tail[..1]);
        rest = &tail[1..];
        quoted = !quoted;
    }
    out.push_str(if quoted { mask(rest).unwrap_or(rest) } else { rest });
    out
}

/// What a path segment that looks like a key, an invitation code or
/// another token is written as; `None` for any other segment.
fn mask(segment: &str) -> Option<&'static str> {
    const MIN_LEN: usize = 16;
    if segment.len() < 3 {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    let lower = decoded.to_ascii_lowercase();
    if lower.contains(keygate_core::key::PREFIX) {
        return Some("ak_[redacted]");
    }
    if lower.contains(crate::api::invites::CODE_PREFIX) {
        return Some("kgi_[redacted]");
    }
    let token = decoded.trim();
    let uuid = token.len() == 36 && uuid::Uuid::try_parse(token).is_ok();
    if token.len() < MIN_LEN || uuid || token.contains('.') {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_+/=~".contains(&b)) {
        return None;
    }
    let mixed = token.bytes().any(|b| b.is_ascii_digit()) && token.bytes().any(|b| b.is_ascii_alphabetic());
    (mixed || entropy_bits_per_char(token) >= 4.0).then_some("[redacted]")
}

/// Shannon entropy of `text`'s bytes, in bits per byte.
fn entropy_bits_per_char(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = text.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / len).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_in_paths_are_masked_by_shape() {
        use super::redact;
        let key = "ak_2LqSfvbRuSJxWQtoIYjkl0G9V6c6DmVkMxiJ96KTvtDU4NAYoc";
        assert_eq!(redact(&format!("/apikey/{key}/")), "/apikey/ak_[redacted]/");
        assert_eq!(redact("/apikey/%61k_abc/rotate"), "/apikey/ak_[redacted]/rotate");
        assert_eq!(redact("/apikey/%20AK_abc"), "/apikey/ak_[redacted]");
        assert_eq!(redact("/invites/KGI_0123456789abcdef0123"), "/invites/kgi_[redacted]");
        assert_eq!(redact("/x/4f9c2a7be81d03c65ab7e90d12f4c8aa"), "/x/[redacted]", "hex");
        assert_eq!(redact("/x/s3cr3t-t0k3n-for-verify"), "/x/[redacted]", "a token, letters and digits");
        assert_eq!(redact("/x/QmFzZTY0VG9rZW5IZXJlSXM"), "/x/[redacted]", "base64 letters");
        for kept in [
            "/apikey/12",
            "/app/com.example_app",
            "/livez",
            "/organization/members",
            "/organization/0190b1e2-7c3a-7d4e-9f00-0123456789ab",
            "/bundle/com.example.app/1.0.0-beta.1",
            "/organization-members-list",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }

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
        let shared =
            Shared { dropped: AtomicU64::new(2), stop: AtomicBool::new(true), clients: Default::default() };
        sender.try_send(entry("/livez")).expect("queued");
        let mut out = Vec::new();
        write_lines(receiver, &shared, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("path=/livez"), "{text}");
        assert!(text.contains("2 access log lines dropped"), "{text}");
    }

    #[test]
    fn quoted_secrets_in_a_parsers_message_are_masked_and_the_rest_kept() {
        let code = format!("{}AbCdEf0123456789AbCdEf0123456789", crate::api::invites::CODE_PREFIX);
        let message = format!("unknown field `{code}`, expected one of `key`, `name` at line 1");
        let redacted = super::redact_quoted(&message);
        assert!(!redacted.contains(&code), "{redacted}");
        assert!(redacted.contains("`kgi_[redacted]`, expected one of `key`, `name` at line 1"), "{redacted}");
        assert_eq!(super::redact_quoted("invalid type: \"read\""), "invalid type: \"read\"");
    }
}
