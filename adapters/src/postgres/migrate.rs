//! Numbered SQL migrations from `migrations/`, applied once each, recorded with a checksum.

use tokio_postgres::Client;

use super::ExportError;

/// (version, name, SQL). Append only: an applied migration never changes.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "ledger", include_str!("../../../migrations/0001_ledger.sql"))];

/// Advisory-lock key so that concurrent exporters migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6d69_6e69_6f6e; // "minion"

fn checksum(sql: &str) -> String {
    // FNV-1a 64: a stable fingerprint of the file, to notice an edited migration.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Apply every migration not yet applied, in one transaction per migration, under an advisory
/// lock. Idempotent. Refuses a database whose schema is newer than this build or whose applied
/// migrations differ from the files.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, ExportError> {
    let pg = |context: &'static str| move |e| ExportError::Postgres { context, source: e };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS minion_schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg("creating the migrations table"))?;
    let mut applied_now = Vec::new();
    let tx = client.transaction().await.map_err(pg("starting the migration transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg("taking the migration lock"))?;
    let rows = tx
        .query("SELECT version, checksum FROM minion_schema_migrations ORDER BY version", &[])
        .await
        .map_err(pg("reading applied migrations"))?;
    let known_max = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    for row in &rows {
        let version: i32 = row.get(0);
        let sum: String = row.get(1);
        if version > known_max {
            return Err(ExportError::Schema(format!(
                "the database has schema version {version}, newer than this build knows ({known_max}); upgrade minion"
            )));
        }
        if let Some((_, name, sql)) = MIGRATIONS.iter().find(|m| m.0 == version) {
            if checksum(sql) != sum {
                return Err(ExportError::Schema(format!("migration {version} ({name}) differs from the one applied")));
            }
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if rows.iter().any(|r| r.get::<_, i32>(0) == *version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(pg("applying a migration"))?;
        tx.execute(
            "INSERT INTO minion_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &checksum(sql)],
        )
        .await
        .map_err(pg("recording a migration"))?;
        applied_now.push(*version);
        tracing::info!(version, name, "applied migration");
    }
    tx.commit().await.map_err(pg("committing migrations"))?;
    Ok(applied_now)
}
