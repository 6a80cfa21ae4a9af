//! `spawn_app`: a keygate on port 0 with a fresh database (SQLite, or
//! PostgreSQL with `KEYGATE_TEST_DATABASE`, see keygate-testkit), bootstrapped
//! with one owner, plus the few calls every test needs.

use std::sync::Arc;

use keygate::admin::{self, EnrollmentOutput};
use keygate_core::Role;
use keygate_store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A user with one unscoped `all` key, as the CLI prints it.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    pub org_id: String,
    pub key_id: i64,
    pub key: String,
}

impl From<EnrollmentOutput> for Account {
    fn from(out: EnrollmentOutput) -> Self {
        Self {
            user_id: out.user_id.to_string(),
            org_id: out.org_id.to_string(),
            key_id: out.key_id,
            key: out.key.expose().to_owned(),
        }
    }
}

/// The bundle size limit of test servers: small, so that 413 is cheap to test.
pub const MAX_BUNDLE_SIZE: u64 = 256 * 1024;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// `owner@example.com`, super_admin of the organization `Acme`.
    pub owner: Account,
    blobs: keygate::BlobStore,
    _stop: tokio::sync::oneshot::Sender<()>,
    _database: keygate_testkit::TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the server's settings adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut keygate::Settings)) -> TestApp {
    let database = keygate_testkit::TestDatabase::new().await;
    let store = keygate_store::connect(database.url()).await.expect("open database");
    let owner =
        admin::bootstrap(store.as_ref(), "owner@example.com", "Acme").await.expect("bootstrap").into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Where `keygate serve` keeps bundles: in PostgreSQL, or a directory.
    let blobs = match store.shared_blobs() {
        Some(shared) => keygate::BlobStore::in_database(shared),
        None => keygate::BlobStore::open(database.dir().join("blobs")).expect("blob dir"),
    };
    let mut settings =
        keygate::Settings { max_bundle_size: MAX_BUNDLE_SIZE, ..keygate::Settings::new(blobs.clone()) };
    adjust(&mut settings);
    tokio::spawn(keygate::serve(listener, store.clone(), settings, async move {
        let _ = stopped.await;
    }));
    TestApp { base, client: reqwest::Client::new(), store, owner, blobs, _database: database, _stop: stop }
}

/// What a call answered: the status and the JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        self.body
    }

    /// Asserts the contract's error shape, status and code.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status, status, "unexpected reply {self:?}");
        assert_eq!(self.body["status"], "KO", "error shape: {self:?}");
        assert_eq!(self.body["code"], code, "error code: {self:?}");
        let text = self.body["error"].as_str().expect("error text");
        assert!(!text.is_empty());
        text
    }
}

impl TestApp {
    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            request = request.header("authorization", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        reply(response).await
    }

    pub async fn raw(&self, method: Method, path: &str, key: &str, body: impl Into<reqwest::Body>) -> Reply {
        let response = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("authorization", key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        reply(response).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Creates a key through the API and returns the `apikey` object.
    pub async fn create_key(&self, caller: &str, body: Value) -> Value {
        let reply = self.post("/apikey", caller, body).await;
        reply.ok()["apikey"].clone()
    }

    /// A key of `mode` for the owner in its organization.
    pub async fn owner_key(&self, mode: &str) -> Value {
        self.create_key(&self.owner.key, json!({ "org_id": self.owner.org_id, "mode": mode })).await
    }

    /// Adds (or re-roles) a member of the owner's organization, with a fresh unscoped `all` key.
    pub async fn member(&self, email: &str, role: Role) -> Account {
        let org = Uuid::parse_str(&self.owner.org_id).expect("uuid");
        admin::add_user(self.store.as_ref(), email, org, role).await.expect("add user").into()
    }

    /// Another tenant: a new user owning a new organization.
    pub async fn tenant(&self, email: &str) -> Account {
        admin::bootstrap(self.store.as_ref(), email, "Other Corp").await.expect("bootstrap").into()
    }

    /// The ids of the keys the caller lists.
    pub async fn listed_ids(&self, path: &str, caller: &str) -> Vec<i64> {
        let body = self.get(path, caller).await.ok();
        body["data"].as_array().expect("data array").iter().map(|k| k["id"].as_i64().expect("id")).collect()
    }

    /// Uploads `bytes` as a bundle.
    pub async fn upload(&self, key: &str, app_id: &str, version: &str, bytes: Vec<u8>) -> Reply {
        let path = format!("/bundle?app_id={app_id}&version={version}");
        let response = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("authorization", key)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("request sent");
        reply(response).await
    }

    /// Creates an app in the owner's organization.
    pub async fn app(&self, app_id: &str) -> Value {
        let body = json!({ "app_id": app_id, "name": "An app", "org_id": self.owner.org_id });
        self.post("/app", &self.owner.key, body).await.ok()["app"].clone()
    }

    /// The blobs kept (files in a directory, temporary ones included; or
    /// blobs in the database).
    pub async fn blob_files(&self) -> u64 {
        self.blobs.count().await.expect("count blobs")
    }

    /// Makes every write to the audit log fail, as a full disk would, by a
    /// trigger installed through a connection of its own.
    pub async fn break_audit_log(&self) {
        use sqlx::Connection;
        let url = self._database.url();
        if self._database.is_postgres() {
            let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(
                "CREATE FUNCTION audit_off() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'the audit log is unavailable'; END $$; \
                 CREATE TRIGGER audit_off BEFORE INSERT ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION audit_off();",
            )
            .execute(&mut connection)
            .await
            .expect("install the trigger");
            let _ = connection.close().await;
        } else {
            let mut connection = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(
                "CREATE TRIGGER audit_off BEFORE INSERT ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'the audit log is unavailable'); END;",
            )
            .execute(&mut connection)
            .await
            .expect("install the trigger");
            let _ = connection.close().await;
        }
    }

    /// How many keys the database holds, all users together.
    pub async fn key_count(&self) -> usize {
        let mut total = 0;
        let org = Uuid::parse_str(&self.owner.org_id).expect("uuid");
        total += self.store.keys_of_org(org).await.expect("keys").len();
        let owner = Uuid::parse_str(&self.owner.user_id).expect("uuid");
        total +=
            self.store.keys_of_user(owner).await.expect("keys").iter().filter(|k| k.org_id.is_none()).count();
        total
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"))
    };
    Reply { status, body }
}
