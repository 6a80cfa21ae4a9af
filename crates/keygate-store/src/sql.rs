//! One way to run a statement on either backend: its text and its values
//! side by side (`sql("… WHERE id = $1").bind(id)`), run on a [`Db`] — a
//! connection in a transaction or a pool, of SQLite or of PostgreSQL. The
//! statements the backends share are written once, over this; each
//! backend's module keeps only what differs (its pools, how a transaction
//! begins and locks, the hot path of authentication).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, Sqlite};
use uuid::Uuid;

use crate::rows::AppList;

/// Where a statement runs.
pub(crate) enum Db<'c> {
    Sqlite(&'c mut SqliteConnection),
    SqlitePool(&'c SqlitePool),
    Postgres(&'c mut PgConnection),
    PostgresPool(&'c PgPool),
}

impl Db<'_> {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_) | Db::PostgresPool(_))
    }
}

/// A value a statement binds.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    I64(Option<i64>),
    I32(Option<i32>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    Date(Option<NaiveDate>),
    Apps(Option<AppList>),
    Ids(Ids),
}

/// A list of ids bound as one value: an array on PostgreSQL (`= ANY($1)`),
/// a JSON array on SQLite (`IN (SELECT value FROM json_each($1))`).
#[derive(Debug, Clone)]
pub(crate) struct Ids(pub Vec<i64>);

impl From<Vec<i64>> for Value {
    fn from(ids: Vec<i64>) -> Self {
        Value::Ids(Ids(ids))
    }
}

impl sqlx::Type<Sqlite> for Ids {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Sqlite> for Ids {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<Sqlite>>::encode(serde_json::Value::from(self.0.clone()).to_string(), buf)
    }
}

impl sqlx::Type<Postgres> for Ids {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<i64> as sqlx::Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for Ids {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <Vec<i64> as sqlx::Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

macro_rules! values {
    ($($variant:ident: $type:ty => $owned:expr),* $(,)?) => {$(
        impl From<$type> for Value {
            fn from(value: $type) -> Self {
                Value::$variant(Some($owned(value)))
            }
        }
        impl From<Option<$type>> for Value {
            fn from(value: Option<$type>) -> Self {
                Value::$variant(value.map($owned))
            }
        }
    )*};
}

values! {
    I64: i64 => std::convert::identity,
    I32: i32 => std::convert::identity,
    Bool: bool => std::convert::identity,
    Text: String => std::convert::identity,
    Text: &str => str::to_owned,
    Bytes: &[u8] => <[u8]>::to_vec,
    Bytes: Vec<u8> => std::convert::identity,
    Uuid: Uuid => std::convert::identity,
    Time: DateTime<Utc> => std::convert::identity,
    Date: NaiveDate => std::convert::identity,
    Apps: AppList => std::convert::identity,
}

/// A row either backend reads into `Self` (a `#[derive(FromRow)]` struct,
/// or a tuple of columns).
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}

/// A statement: its text (`$1`, `$2`… numbered as [`Statement::bind`] is
/// called) and its values.
#[must_use]
pub(crate) struct Statement<'s> {
    text: &'s str,
    values: Vec<Value>,
}

/// The statement `text`, with no value bound yet.
pub(crate) fn sql(text: &str) -> Statement<'_> {
    Statement { text, values: Vec::new() }
}

/// Binds `values` to a query of either kind, in order.
macro_rules! bound {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                Value::I64(v) => query.bind(v),
                Value::I32(v) => query.bind(v),
                Value::Bool(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
                Value::Bytes(v) => query.bind(v),
                Value::Uuid(v) => query.bind(v),
                Value::Time(v) => query.bind(v),
                Value::Date(v) => query.bind(v),
                Value::Apps(v) => query.bind(v),
                Value::Ids(v) => query.bind(v),
            };
        }
        query
    }};
}

/// Runs `$method` of the statement, built for the backend of `$db`, there.
macro_rules! run {
    ($statement:ident . $method:ident ($db:ident), $make:ident) => {
        match $db {
            Db::Sqlite(conn) => {
                bound!(sqlx::$make::<Sqlite, _>($statement.text), $statement.values)
                    .$method(&mut **conn)
                    .await
            }
            Db::SqlitePool(pool) => {
                bound!(sqlx::$make::<Sqlite, _>($statement.text), $statement.values).$method(*pool).await
            }
            Db::Postgres(conn) => {
                bound!(sqlx::$make::<Postgres, _>($statement.text), $statement.values)
                    .$method(&mut **conn)
                    .await
            }
            Db::PostgresPool(pool) => {
                bound!(sqlx::$make::<Postgres, _>($statement.text), $statement.values).$method(*pool).await
            }
        }
    };
}

impl Statement<'_> {
    /// Binds the next parameter.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    pub(crate) async fn fetch_optional<R: Row>(self, db: &mut Db<'_>) -> Result<Option<R>, sqlx::Error> {
        run!(self.fetch_optional(db), query_as)
    }

    pub(crate) async fn fetch_one<R: Row>(self, db: &mut Db<'_>) -> Result<R, sqlx::Error> {
        run!(self.fetch_one(db), query_as)
    }

    pub(crate) async fn fetch_all<R: Row>(self, db: &mut Db<'_>) -> Result<Vec<R>, sqlx::Error> {
        run!(self.fetch_all(db), query_as)
    }

    /// The first column of the row found, if any.
    pub(crate) async fn scalar<T>(self, db: &mut Db<'_>) -> Result<Option<T>, sqlx::Error>
    where
        (T,): Row,
    {
        Ok(self.fetch_optional::<(T,)>(db).await?.map(|(value,)| value))
    }

    /// Runs a statement that returns no rows; how many rows it changed.
    pub(crate) async fn execute(self, db: &mut Db<'_>) -> Result<u64, sqlx::Error> {
        Ok(match db {
            Db::Sqlite(conn) => bound!(sqlx::query::<Sqlite>(self.text), self.values)
                .execute(&mut **conn)
                .await?
                .rows_affected(),
            Db::SqlitePool(pool) => {
                bound!(sqlx::query::<Sqlite>(self.text), self.values).execute(*pool).await?.rows_affected()
            }
            Db::Postgres(conn) => bound!(sqlx::query::<Postgres>(self.text), self.values)
                .execute(&mut **conn)
                .await?
                .rows_affected(),
            Db::PostgresPool(pool) => {
                bound!(sqlx::query::<Postgres>(self.text), self.values).execute(*pool).await?.rows_affected()
            }
        })
    }
}
