//! The firm registry (`firms`, in the home store's secrets schema): the firms one deployment serves.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row as _;

use super::{Db, Result, Store, Ts};

/// A registered firm (the registry lives in the home store).
#[derive(Clone, Debug)]
pub struct FirmRow {
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// A TOML fragment laid over the config for this firm.
    pub settings: String,
    pub created_at: String,
}

impl Store {
    /// The registered firms, by name.
    pub async fn firms(&self) -> Result<Vec<FirmRow>> {
        let sql = format!(
            "SELECT name, client_id, client_secret, settings, created_at FROM {} ORDER BY name",
            self.secret_t("firms")
        );
        on!(Db, &self.db, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    Ok(FirmRow {
                        name: r.try_get(0)?,
                        client_id: r.try_get(1)?,
                        client_secret: SecretString::from(r.try_get::<String, _>(2)?),
                        settings: r.try_get(3)?,
                        created_at: r.try_get::<Ts, _>(4)?.text(),
                    })
                })
                .collect()
        })
    }

    /// Registers a firm; false if the name is taken.
    pub async fn add_firm(&self, firm: &FirmRow, now: DateTime<Utc>) -> Result<bool> {
        let sql = format!(
            "INSERT INTO {} (name, client_id, client_secret, settings, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
            self.secret_t("firms")
        );
        Ok(on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&firm.name)
            .bind(&firm.client_id)
            .bind(firm.client_secret.expose_secret())
            .bind(&firm.settings)
            .bind(Ts(now))
            .execute(p)
            .await?
            .rows_affected())
            == 1)
    }

    /// Unregisters a firm (its mirror stays where it is); false if it was not registered.
    pub async fn remove_firm(&self, name: &str) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE name = $1", self.secret_t("firms"));
        Ok(on!(Db, &self.db, p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .execute(p)
            .await?
            .rows_affected())
            == 1)
    }
}
