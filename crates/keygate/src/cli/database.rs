//! The database the operator's commands act on: the `--database` flag, and
//! opening it.

use clap::Args;
use keygate_store::Access;

#[derive(Debug, Args)]
pub(super) struct DatabaseArg {
    /// sqlite://PATH or postgres://USER@HOST/DATABASE. `serve` and `bootstrap` create a missing SQLite file; other commands refuse to.
    #[arg(long = "database", env = "KEYGATE_DATABASE_URL", default_value = "sqlite://keygate.db")]
    pub(super) url: String,
}

pub(super) async fn open(
    url: &str,
    access: Access,
) -> Result<std::sync::Arc<dyn keygate_store::Store>, String> {
    keygate_store::connect_for(url, access)
        .await
        .map_err(|e| format!("{} ({})", e, keygate_store::describe_url(url)))
}
