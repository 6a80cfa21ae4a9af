//! Seeding: the keys to present, and the filler, straight into `api_keys`.

use super::*;

/// The name of the limited keys, before their number.
const LIMITED_NAME: &str = "bench limited key";
/// The limited keys' limits: a rate limit of a billion a minute and a
/// trillion credits, so that every verification is VALID and the workload
/// measures only what enforcing them costs.
const LIMITS: &str = "UPDATE api_keys SET \
    ratelimits = '[{\"name\":\"default\",\"limit\":1000000000,\"duration_ms\":60000}]', \
    credits_remaining = 1000000000000 WHERE name LIKE 'bench limited key %'";

pub(super) struct Tenant {
    pub(super) user_id: Uuid,
    pub(super) org_id: Uuid,
}

impl Tenant {
    pub(super) fn of(bootstrapped: &Value) -> Self {
        let id =
            |field: &str| bootstrapped[field].as_str().and_then(|v| Uuid::parse_str(v).ok()).expect("uuid");
        Self { user_id: id("user_id"), org_id: id("org_id") }
    }
}

/// Inserts `presented` as read keys of `owner` scoped to its organization,
/// `limited` likewise with a rate limit and credits neither runs out of
/// ([`LIMITS`]), and `filler` random digests of the other tenant, straight
/// into `api_keys`; then leaves the database as a server would find it after a
/// while (PostgreSQL: vacuumed, analysed, checkpointed; SQLite: WAL
/// checkpointed). Returns the number of keys in the table.
pub(super) async fn seed(
    db: &TestDatabase,
    owner: &Tenant,
    other: &Tenant,
    presented: &[ApiKeySecret],
    limited: &[ApiKeySecret],
    filler: u64,
) -> i64 {
    let started = Instant::now();
    let now = Utc::now().duration_trunc(TimeDelta::milliseconds(1)).expect("now");
    let named = |prefix: &'static str| {
        move |(i, key): (usize, &ApiKeySecret)| {
            (key.digest().as_bytes().to_vec(), key.preview(), format!("{prefix} {i}"))
        }
    };
    let rows: Vec<(Vec<u8>, String, String)> = presented
        .iter()
        .enumerate()
        .map(named("bench read key"))
        .chain(limited.iter().enumerate().map(named(LIMITED_NAME)))
        .collect();
    pub(super) const COLUMNS: &str =
        "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, created_at, updated_at) ";
    let count: i64 = if db.is_postgres() {
        let mut conn = sqlx::PgConnection::connect(db.url()).await.expect("connect to seed");
        conn.execute("SET synchronous_commit = off").await.expect("seeding session");
        let mut tx = conn.begin().await.expect("begin");
        for chunk in rows.chunks(INSERT_BATCH) {
            let mut insert = QueryBuilder::<sqlx::Postgres>::new(COLUMNS);
            insert.push_values(chunk, |mut row, (digest, preview, name)| {
                row.push_bind(digest).push_bind(preview).push_bind("read").push_bind(name);
                row.push_bind(owner.user_id).push_bind(owner.org_id).push_bind(now).push_bind(now);
            });
            insert.build().execute(&mut *tx).await.expect("insert presented keys");
        }
        sqlx::query(LIMITS).execute(&mut *tx).await.expect("limit the limited keys");
        tx.commit().await.expect("commit");
        let sql = format!(
            "{COLUMNS} SELECT d, 'ak_fill…fill', 'read', 'filler', $2, $3, $4, $4 FROM \
             (SELECT sha256(convert_to($1 || g::text, 'UTF8')) AS d FROM generate_series(1, $5::bigint) AS g) AS r \
             ORDER BY d"
        );
        let mut left = filler;
        while left > 0 {
            let batch = left.min(FILLER_BATCH);
            sqlx::query(&sql)
                .bind(format!("{}:", Uuid::new_v4()))
                .bind(other.user_id)
                .bind(other.org_id)
                .bind(now)
                .bind(batch as i64)
                .execute(&mut conn)
                .await
                .expect("insert filler keys");
            left -= batch;
        }
        let inserted = Instant::now();
        conn.execute("VACUUM ANALYZE").await.expect("vacuum");
        let vacuumed = Instant::now();
        if let Err(error) = conn.execute("CHECKPOINT").await {
            eprintln!("note: no CHECKPOINT after seeding: {error}");
        }
        eprintln!(
            "  inserted in {:.1} s, VACUUM ANALYZE {:.1} s, CHECKPOINT {:.1} s",
            (inserted - started).as_secs_f64(),
            (vacuumed - inserted).as_secs_f64(),
            vacuumed.elapsed().as_secs_f64()
        );
        let count =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&mut conn).await.expect("count");
        let _ = conn.close().await;
        count
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(db.url()).expect("SQLite URL");
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.expect("connect to seed");
        let mut tx = conn.begin().await.expect("begin");
        for chunk in rows.chunks(INSERT_BATCH) {
            let mut insert = QueryBuilder::<sqlx::Sqlite>::new(COLUMNS);
            insert.push_values(chunk, |mut row, (digest, preview, name)| {
                row.push_bind(digest.as_slice()).push_bind(preview.as_str()).push_bind("read");
                row.push_bind(name.as_str()).push_bind(owner.user_id).push_bind(owner.org_id);
                row.push_bind(now).push_bind(now);
            });
            insert.build().execute(&mut *tx).await.expect("insert presented keys");
        }
        sqlx::query(LIMITS).execute(&mut *tx).await.expect("limit the limited keys");
        tx.commit().await.expect("commit");
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             {COLUMNS} SELECT d, 'ak_fill…fill', 'read', 'filler', $2, $3, $4, $4 FROM \
             (SELECT randomblob(32) AS d FROM n) ORDER BY d"
        );
        let mut left = filler;
        while left > 0 {
            let batch = left.min(FILLER_BATCH);
            let mut tx = conn.begin().await.expect("begin");
            sqlx::query(&sql)
                .bind(batch as i64)
                .bind(other.user_id)
                .bind(other.org_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .expect("insert filler keys");
            tx.commit().await.expect("commit");
            left -= batch;
        }
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await.expect("checkpoint");
        let count =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&mut conn).await.expect("count");
        let _ = conn.close().await;
        count
    };
    count
}
