//! The load generator: one task per keep-alive connection.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Floor,
    /// The bare floor given exactly `/verify`'s request (method, headers,
    /// body) and answering a body of a verdict's size: what the same bytes
    /// cost the HTTP stack alone, with serde parsing and rendering.
    FloorVerify,
    Livez,
    Health,
    Verify,
    /// `/verify` of keys with a rate limit and credits.
    VerifyLimited,
    /// Forward auth, as Traefik or Caddy ask: `GET /auth` with the original
    /// request in `X-Forwarded-Method` / `X-Forwarded-Uri`.
    Auth,
    Read,
    Create,
    Delete,
}

impl Kind {
    pub(super) const ALL: [Kind; 10] = [
        Kind::Floor,
        Kind::FloorVerify,
        Kind::Livez,
        Kind::Health,
        Kind::Verify,
        Kind::VerifyLimited,
        Kind::Auth,
        Kind::Read,
        Kind::Create,
        Kind::Delete,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Floor => "floor: bare axum handler",
            Kind::FloorVerify => "floor: bare axum, `/verify`'s bytes",
            Kind::Livez => "floor: `GET /livez`",
            Kind::Health => "`GET /health` (a query, a probe file)",
            Kind::Verify => "`POST /verify`",
            Kind::VerifyLimited => "`POST /verify`, rate limit + credits",
            Kind::Auth => "`GET /auth` (forward auth)",
            Kind::Read => "`GET /app/:app_id`, read key",
            Kind::Create => "`POST /apikey` (create)",
            Kind::Delete => "`DELETE /apikey/:id`",
        }
    }

    /// Served by the bare-axum floor's process.
    pub(super) fn is_floor(self) -> bool {
        matches!(self, Kind::Floor | Kind::FloorVerify)
    }

    pub(super) fn is_write(self) -> bool {
        matches!(self, Kind::Create | Kind::Delete)
    }
}

/// What the workloads of one configuration send.
pub(super) struct Fixture {
    pub(super) floor: SocketAddr,
    pub(super) floor_pid: u32,
    pub(super) server: SocketAddr,
    pub(super) server_pid: u32,
    /// `authorization` for `/verify`: `Bearer <verifier token>`.
    pub(super) verifier: HeaderValue,
    /// The presented read keys, as `authorization` values.
    pub(super) keys: Vec<HeaderValue>,
    /// `{"key": …}` for each presented key.
    pub(super) verify_bodies: Vec<Bytes>,
    /// The same for each limited key.
    pub(super) limited_bodies: Vec<Bytes>,
    /// The owner's unscoped `all` key.
    pub(super) admin: HeaderValue,
    pub(super) create_body: Bytes,
    pub(super) app_path: String,
    /// Ids created by the create phase, for the delete phase.
    pub(super) deletable: Mutex<VecDeque<i64>>,
}

type Body = Full<Bytes>;

/// What every verdict of a presented key must hold.
pub(super) const VALID: &[u8] = br#""valid":true"#;

impl Fixture {
    pub(super) fn address(&self, kind: Kind) -> SocketAddr {
        if kind.is_floor() { self.floor } else { self.server }
    }

    /// The `n`th request of connection `client` out of `clients`; `None`
    /// when there is nothing left to do (no key left to delete).
    pub(super) fn request(
        &self,
        kind: Kind,
        client: usize,
        clients: usize,
        n: usize,
    ) -> Option<Request<Body>> {
        // Every connection walks the whole key list, each from its own start.
        let key = (n * clients + client) % self.keys.len();
        let builder = Request::builder().header(HOST, HeaderValue::from_static("127.0.0.1"));
        let request = match kind {
            Kind::Floor => builder.uri("/").body(Body::default()),
            Kind::Livez => builder.uri("/livez").body(Body::default()),
            Kind::Health => builder.uri("/health").body(Body::default()),
            Kind::Verify | Kind::FloorVerify | Kind::VerifyLimited => {
                let bodies =
                    if kind == Kind::VerifyLimited { &self.limited_bodies } else { &self.verify_bodies };
                builder
                    .method(Method::POST)
                    .uri("/verify")
                    .header(AUTHORIZATION, self.verifier.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(Body::new(bodies[key % bodies.len()].clone()))
            }
            Kind::Auth => builder
                .uri("/auth")
                .header("x-forwarded-method", HeaderValue::from_static("GET"))
                .header("x-forwarded-uri", HeaderValue::from_static("/builds/latest"))
                .header(AUTHORIZATION, self.keys[key].clone())
                .body(Body::default()),
            Kind::Read => builder
                .uri(self.app_path.as_str())
                .header(AUTHORIZATION, self.keys[key].clone())
                .body(Body::default()),
            Kind::Create => builder
                .method(Method::POST)
                .uri("/apikey")
                .header(AUTHORIZATION, self.admin.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Body::new(self.create_body.clone())),
            Kind::Delete => {
                let id = self.deletable.lock().expect("deletable").pop_front()?;
                builder
                    .method(Method::DELETE)
                    .uri(format!("/apikey/{id}"))
                    .header(AUTHORIZATION, self.admin.clone())
                    .body(Body::default())
            }
        };
        Some(request.expect("request"))
    }

    /// Every answer must be a success: a benchmark of errors measures nothing.
    pub(super) fn check(&self, kind: Kind, status: StatusCode, body: &[u8]) {
        assert_eq!(status, StatusCode::OK, "{kind:?}: {}", String::from_utf8_lossy(body));
        match kind {
            // A byte search, not a parse: the client's work should stay small.
            Kind::Verify | Kind::FloorVerify | Kind::VerifyLimited => assert!(
                body.windows(VALID.len()).any(|w| w == VALID),
                "not valid: {}",
                String::from_utf8_lossy(body)
            ),
            Kind::Create => {
                let created: Value = serde_json::from_slice(body).expect("created key");
                let id = created["apikey"]["id"].as_i64().expect("id");
                self.deletable.lock().expect("deletable").push_back(id);
            }
            _ => {}
        }
    }
}

pub(super) struct Sample {
    pub(super) rate: f64,
    /// CPU time the server spent (all its threads; for the floor, its
    /// runtime's threads) per request answered.
    pub(super) cpu_per_request: Duration,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) requests: usize,
}

/// `clients` connections, each sending its next request as soon as the
/// previous answer is read, for `duration` (or until there is nothing left
/// to send).
pub(super) async fn drive(fixture: &Arc<Fixture>, kind: Kind, clients: usize, duration: Duration) -> Sample {
    let address = fixture.address(kind);
    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    let cpu_before = server_cpu(fixture, kind);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (client, mut sender) in senders.into_iter().enumerate() {
        let fixture = fixture.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut n = 0;
            while Instant::now() < deadline {
                let Some(request) = fixture.request(kind, client, clients, n) else { break };
                n += 1;
                sender.ready().await.expect("connection ready");
                let sent = Instant::now();
                let response = sender.send_request(request).await.expect("response");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body").to_bytes();
                latencies.push(sent.elapsed());
                fixture.check(kind, status, &body);
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("client task"));
    }
    let elapsed = started.elapsed();
    let cpu = server_cpu(fixture, kind).saturating_sub(cpu_before);
    assert!(!latencies.is_empty(), "{kind:?}: no request completed");
    let requests = latencies.len();
    let (p50, p99, _) = percentiles(&mut latencies);
    let cpu_per_request = cpu / u32::try_from(requests).unwrap_or(u32::MAX);
    Sample { rate: requests as f64 / elapsed.as_secs_f64(), cpu_per_request, p50, p99, requests }
}

/// CPU time so far of the process that answers `kind`: keygate, or the
/// floor's. From each thread's `schedstat` (nanoseconds on a CPU), so that
/// it does not depend on how busy the machine is otherwise.
fn server_cpu(fixture: &Fixture, kind: Kind) -> Duration {
    let pid = if kind.is_floor() { fixture.floor_pid } else { fixture.server_pid };
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let nanos: u64 = entries
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}
