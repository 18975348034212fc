//! Erasure of a person's data in the database (`service::erasure`): every
//! statement of the rewrite transaction, the records' epochs the sync path
//! reads, the erasure log and a contact's export.
//!
//! **The rewrite transaction** ([`erase`]) loads the records that may hold the
//! person's data (row-locked on PostgreSQL, under `BEGIN IMMEDIATE` on
//! SQLite, so no push slips between the load and the write), hands them to
//! the pure plan (`domain::erasure::plan`), then for each rewritten record
//! replaces the stored document, deletes the record's change-log rows and
//! appends the rewrite as one new row (a new sequence, so every device pulls
//! it; taken under the organisation's advisory lock on PostgreSQL like a
//! push's), raises the epoch, and blanks its rejection-ledger rows (the
//! refused changes were made on the old history). Attachments that are the
//! person's go from the database here and from the blob store after the
//! commit (`service::erasure`). The erasure log gets who, when, why and
//! which records, never a value.

use fieldsync_core::model::erase::Subject;
use fieldsync_core::protocol::RecordEpoch;
use fieldsync_core::{OrgId, RecordId, UserId};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::{Database, DbError, now_secs};
use crate::domain::Result;
use crate::domain::erasure::{Candidate, Plan, UserValues};
use crate::on_pool;

macro_rules! load_contact {
    ($exec:expr, $uuid:ident, $org:expr, $contact:expr, $lock:expr) => {{
        let account: Option<Option<String>> = sqlx::query_scalar(
            "SELECT CAST(account_id AS TEXT) FROM records WHERE id = $1 AND org_id = $2 AND kind = $3",
        )
        .bind($uuid(*$contact.as_uuid()))
        .bind($uuid(*$org.as_uuid()))
        .bind("contact")
        .fetch_optional($exec)
        .await?;
        match account {
            None => Vec::new(),
            Some(account) => {
                let account = account.and_then(|a| a.parse::<Uuid>().ok()).unwrap_or_default();
                let sql = format!(
                    "SELECT CAST(id AS TEXT), doc FROM records WHERE org_id = $1 AND \
                     (id = $2 OR id = $3 OR account_id = $3 OR parent_id IN \
                     (SELECT id FROM records WHERE org_id = $1 AND account_id = $3)) ORDER BY id{}",
                    $lock
                );
                sqlx::query_as::<_, (String, Vec<u8>)>(AssertSqlSafe(sql))
                    .bind($uuid(*$org.as_uuid()))
                    .bind($uuid(*$contact.as_uuid()))
                    .bind($uuid(account))
                    .fetch_all($exec)
                    .await?
            }
        }
    }};
}

macro_rules! load_user {
    ($exec:expr, $uuid:ident, $org:expr, $user:expr, $lock:expr) => {{
        let sql = format!(
            "SELECT CAST(id AS TEXT), doc FROM records WHERE org_id = $1 AND \
             (owner_id = $2 OR id IN (SELECT record_id FROM change_log WHERE user_id = $2)) \
             ORDER BY id{}",
            $lock
        );
        sqlx::query_as::<_, (String, Vec<u8>)>(AssertSqlSafe(sql))
            .bind($uuid(*$org.as_uuid()))
            .bind($uuid(*$user.as_uuid()))
            .fetch_all($exec)
            .await?
    }};
}

/// What an erasure changed.
#[derive(Debug, Clone)]
pub struct Erased {
    /// The erasure log entry's id.
    pub id: Uuid,
    /// The records rewritten.
    pub records: Vec<RecordId>,
    /// The attachments (SHA-256 hex) deleted from the database; their bytes
    /// go from the blob store next.
    pub attachments: Vec<String>,
}

/// One erasure, as the log keeps it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErasureEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// The administrator who ran it (user id).
    pub actor_id: String,
    /// `contact` or `user`.
    pub subject_kind: String,
    /// The contact's record id or the user's id.
    pub subject_id: String,
    /// Why.
    pub reason: String,
    /// The records rewritten.
    pub records: Vec<String>,
    /// How many attachments were deleted.
    pub attachments: i64,
}

/// The epochs above 0 of `ids` (records the sync path sends or was sent).
pub async fn epochs(db: &Database, ids: &[RecordId]) -> Result<Vec<RecordEpoch>, DbError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT CAST(id AS TEXT), epoch, erased_fields FROM records \
             WHERE epoch > 0 AND id IN ({})",
            marks.join(", ")
        );
        let rows: Vec<(String, i64, Option<String>)> = on_pool!(db, |pool, uuid| {
            let mut q = sqlx::query_as(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(uuid(*id.as_uuid()));
            }
            q.fetch_all(pool).await?
        });
        for (id, epoch, erased) in rows {
            out.push(super::records::record_epoch(
                super::records::parse_record_id(&id)?,
                epoch,
                erased.as_deref(),
            ));
        }
    }
    Ok(out)
}

/// An erased user's name and email (what texts naming them are scrubbed of);
/// `None` when the user is not of `org`.
pub async fn user_values(
    db: &Database,
    org: OrgId,
    user: UserId,
) -> Result<Option<UserValues>, DbError> {
    let row: Option<(String, String)> = on_pool!(db, |pool, uuid| {
        sqlx::query_as("SELECT display_name, email FROM users WHERE id = $1 AND org_id = $2")
            .bind(uuid(*user.as_uuid()))
            .bind(uuid(*org.as_uuid()))
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(|(name, email)| UserValues { name, email }))
}

/// The records that may hold a contact's data: the contact, its account, the
/// account's records and their children. Empty when `contact` is no contact
/// of `org`.
pub async fn contact_records(
    db: &Database,
    org: OrgId,
    contact: RecordId,
) -> Result<Vec<Candidate>, DbError> {
    let rows: Vec<(String, Vec<u8>)> = on_pool!(db, |pool, uuid| {
        let mut conn = pool.acquire().await?;
        load_contact!(&mut *conn, uuid, org, contact, "")
    });
    rows.into_iter()
        .map(|(id, doc)| {
            Ok(Candidate {
                id: super::records::parse_record_id(&id)?,
                doc,
            })
        })
        .collect()
}

/// The erasure's transaction (see the module docs): `decide` gets the loaded
/// records and returns the plan; `user` pseudonymises an erased user's
/// account with the given name and email (`None` for a contact).
pub async fn erase(
    db: &Database,
    org: OrgId,
    actor: UserId,
    subject: &Subject,
    reason: &str,
    pseudonym: Option<(UserValues, (String, String))>,
    decide: impl FnOnce(&[Candidate]) -> Result<Plan>,
) -> Result<Erased> {
    let pg = matches!(db, Database::Postgres(_));
    let lock = if pg { " FOR UPDATE" } else { "" };
    let now = now_secs();
    let log_id = Uuid::now_v7();
    let erased: Erased = on_pool!(db, |pool, uuid| {
        let mut tx = if pg {
            pool.begin().await.map_err(DbError::from)?
        } else {
            pool.begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(DbError::from)?
        };
        let rows: Vec<(String, Vec<u8>)> = match subject {
            Subject::Contact(id) => {
                let run = async { Ok::<_, DbError>(load_contact!(&mut *tx, uuid, org, id, lock)) };
                run.await?
            }
            Subject::User(user) => {
                let run = async { Ok::<_, DbError>(load_user!(&mut *tx, uuid, org, user, lock)) };
                run.await?
            }
        };
        let mut candidates = Vec::with_capacity(rows.len());
        for (id, doc) in rows {
            candidates.push(Candidate {
                id: super::records::parse_record_id(&id)?,
                doc,
            });
        }
        let plan = decide(&candidates)?;
        let run = async {
            if pg {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::records::org_lock_key(org))
                    .execute(&mut *tx)
                    .await?;
            }
            let blank = fieldsync_core::protocol::encode(&Vec::<serde_bytes::ByteBuf>::new());
            let mut all_attachments: Vec<String> = Vec::new();
            for r in &plan.rewrites {
                // Attachments that are the person's: signature images they
                // drew and, on an erased contact's own record, the files
                // linked to it alone (photos of them).
                let mut attachments = r.attachments.clone();
                if *subject == Subject::Contact(r.id) {
                    let only: Vec<String> = sqlx::query_scalar(
                        "SELECT sha256 FROM attachment_records a WHERE a.org_id = $1 \
                         AND a.record_id = $2 AND NOT EXISTS (SELECT 1 FROM attachment_records o \
                         WHERE o.org_id = a.org_id AND o.sha256 = a.sha256 AND o.record_id <> $2)",
                    )
                    .bind(uuid(*org.as_uuid()))
                    .bind(uuid(*r.id.as_uuid()))
                    .fetch_all(&mut *tx)
                    .await?;
                    attachments.extend(only);
                }
                attachments.sort();
                attachments.dedup();
                sqlx::query("DELETE FROM change_log WHERE record_id = $1")
                    .bind(uuid(*r.id.as_uuid()))
                    .execute(&mut *tx)
                    .await?;
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO change_log \
                     (org_id, record_id, hash, change, user_id, device_id, committed_at) \
                     VALUES ($1, $2, $3, $4, NULL, NULL, $5) RETURNING seq",
                )
                .bind(uuid(*org.as_uuid()))
                .bind(uuid(*r.id.as_uuid()))
                .bind(&r.change.0)
                .bind(&r.change.1)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let erased = serde_json::to_string(&super::records::ErasedFields {
                    fields: r.erased.clone(),
                    attachments: attachments.clone(),
                })
                .map_err(|e| DbError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "UPDATE records SET doc = $2, epoch = epoch + 1, erased_fields = $3, \
                     updated_seq = $4, updated_at = $5 WHERE id = $1",
                )
                .bind(uuid(*r.id.as_uuid()))
                .bind(&r.doc)
                .bind(erased)
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // The refused changes were made on the old history: the
                // entry stays (who, when, which code), its content goes.
                sqlx::query(
                    "UPDATE rejections SET changes = $2, message = '[erased]' WHERE record_id = $1",
                )
                .bind(uuid(*r.id.as_uuid()))
                .bind(&blank)
                .execute(&mut *tx)
                .await?;
                all_attachments.extend(attachments);
            }
            all_attachments.sort();
            all_attachments.dedup();
            let attachments = all_attachments;
            for sha in &attachments {
                for sql in [
                    "DELETE FROM attachment_records WHERE org_id = $1 AND sha256 = $2",
                    "DELETE FROM attachments WHERE org_id = $1 AND sha256 = $2",
                ] {
                    sqlx::query(sql)
                        .bind(uuid(*org.as_uuid()))
                        .bind(sha)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let (kind, subject_id) = match subject {
                Subject::Contact(id) => ("contact", id.to_string()),
                Subject::User(id) => ("user", id.to_string()),
            };
            if let (Subject::User(user), Some((old, (name, email)))) = (subject, &pseudonym) {
                let user_id = user.to_string();
                sqlx::query(
                    "UPDATE users SET display_name = $3, email = $4, disabled = $5, \
                     password_hash = '!' WHERE id = $1 AND org_id = $2",
                )
                .bind(uuid(*user.as_uuid()))
                .bind(uuid(*org.as_uuid()))
                .bind(name)
                .bind(email)
                .bind(true)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE devices SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(uuid(*user.as_uuid()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(uuid(*user.as_uuid()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
                    .bind(uuid(*user.as_uuid()))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE admin_log SET subject_name = $2 WHERE subject_id = $1")
                    .bind(&user_id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE admin_log SET actor_name = $2 WHERE actor_id = $1")
                    .bind(&user_id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                // Details naming them ("added rep ana@…") name the pseudonym.
                for (from, to) in [(&old.email, email), (&old.name, name)] {
                    if from.trim().chars().count()
                        >= fieldsync_core::model::erase::MIN_SCRUB_VALUE_CHARS
                    {
                        sqlx::query(
                            "UPDATE admin_log SET detail = REPLACE(detail, $2, $3), \
                             subject_name = REPLACE(subject_name, $2, $3) WHERE org_id = $1",
                        )
                        .bind(uuid(*org.as_uuid()))
                        .bind(from)
                        .bind(to)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            let records: Vec<String> = plan.rewrites.iter().map(|r| r.id.to_string()).collect();
            sqlx::query(
                "INSERT INTO erasure_log (id, org_id, at, actor_id, subject_kind, subject_id, \
                 reason, records, attachments) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(uuid(log_id))
            .bind(uuid(*org.as_uuid()))
            .bind(now)
            .bind(uuid(*actor.as_uuid()))
            .bind(kind)
            .bind(subject_id)
            .bind(reason.trim())
            .bind(records.join(" "))
            .bind(i64::try_from(attachments.len()).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            Ok::<_, DbError>(attachments)
        };
        let attachments = run.await?;
        tx.commit().await.map_err(DbError::from)?;
        Erased {
            id: log_id,
            records: plan.rewrites.iter().map(|r| r.id).collect(),
            attachments,
        }
    });
    Ok(erased)
}

/// The newest `limit` erasures of `org`, newest first.
pub async fn log(db: &Database, org: OrgId, limit: i64) -> Result<Vec<ErasureEntry>, DbError> {
    type Row = (i64, String, String, String, String, String, i64);
    let rows: Vec<Row> = on_pool!(db, |pool, uuid| {
        sqlx::query_as(
            "SELECT at, CAST(actor_id AS TEXT), subject_kind, subject_id, reason, records, \
             attachments FROM erasure_log WHERE org_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(limit)
        .fetch_all(pool)
        .await?
    });
    Ok(rows
        .into_iter()
        .map(|r| ErasureEntry {
            at: r.0,
            actor_id: r.1,
            subject_kind: r.2,
            subject_id: r.3,
            reason: r.4,
            records: r.5.split_whitespace().map(str::to_owned).collect(),
            attachments: r.6,
        })
        .collect())
}

/// The attachments (SHA-256 hex) linked to a record.
pub async fn attachments_of(
    db: &Database,
    org: OrgId,
    record: RecordId,
) -> Result<Vec<String>, DbError> {
    Ok(on_pool!(db, |pool, uuid| {
        sqlx::query_scalar(
            "SELECT sha256 FROM attachment_records WHERE org_id = $1 AND record_id = $2 \
             ORDER BY sha256",
        )
        .bind(uuid(*org.as_uuid()))
        .bind(uuid(*record.as_uuid()))
        .fetch_all(pool)
        .await?
    }))
}
