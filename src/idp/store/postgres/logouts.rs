//! Sign-out confirmations waiting for the user's click, taken (deleted) when answered.

use super::{Postgres, from_json, int, to_json};
use crate::idp::store::{After, LOGOUT_SECS, PendingLogout, StoreError};
use crate::jwt::unix_now;
use serde::{Deserialize, Serialize};

/// A sign-out confirmation as stored: the note is kept as its text and mapped back to the
/// page's string.
#[derive(Serialize, Deserialize)]
struct StoredLogout {
    browser: [u8; 32],
    session: Option<[u8; 32]>,
    redirect: Option<(String, Option<String>)>,
    note: Option<String>,
}

impl Postgres {
    pub(in crate::idp::store) async fn put_logout(
        &self,
        id: String,
        pending: PendingLogout,
    ) -> Result<(), StoreError> {
        self.guard()?;
        let stored = StoredLogout {
            browser: pending.browser,
            session: pending.session,
            redirect: pending.after.redirect,
            note: pending.after.note.map(str::to_owned),
        };
        sqlx::query("INSERT INTO logouts (id, pending_json, expires_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(to_json(&stored)?)
            .bind(int(unix_now() + LOGOUT_SECS))
            .execute(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(in crate::idp::store) async fn take_logout(
        &self,
        id: &str,
    ) -> Result<Option<PendingLogout>, StoreError> {
        self.guard()?;
        let json: Option<String> = sqlx::query_scalar(
            "DELETE FROM logouts WHERE id = $1 AND expires_at > $2 RETURNING pending_json",
        )
        .bind(id)
        .bind(int(unix_now()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        let Some(json) = json else { return Ok(None) };
        let s: StoredLogout = from_json(&json)?;
        let strings = crate::page::strings::strings();
        let note = s.note.and_then(|n| {
            [strings.not_registered, strings.not_identified]
                .into_iter()
                .find(|known| *known == n)
        });
        Ok(Some(PendingLogout {
            browser: s.browser,
            session: s.session,
            after: After {
                redirect: s.redirect,
                note,
            },
        }))
    }
}
