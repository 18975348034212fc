//! The rules of user accounts, with no I/O: what a valid email, password,
//! organisation slug and name are, what a new user must look like, and how
//! the refusals of account operations read ([`AccountError`]).
//!
//! Invariants kept here:
//! - emails are compared and stored trimmed and lower-cased, in the shape `x@y`;
//! - a password has at least [`MIN_PASSWORD_CHARS`] characters, at least four
//!   different ones, and at most [`MAX_PASSWORD_BYTES`] bytes (hashing cost grows
//!   with the input, and a login endpoint must not hash megabytes for anyone);
//! - nobody is created with the `server` role, which is the server's own.
//!
//! Hashing, tokens and storage are the services' (`service::accounts`,
//! `service::auth`) and the database's (`db::accounts`).

use fieldsync_core::model::Role;
use fieldsync_core::{OrgId, UserId};

use super::{Caller, Error};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest accepted password, in bytes: Argon2 cost grows with input and a login
/// endpoint must not hash megabytes for an anonymous caller.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest email, in bytes (RFC 5321's path limit, rounded up as before).
pub const MAX_EMAIL_BYTES: usize = 320;
/// Longest organisation slug, in bytes.
pub const MAX_SLUG_BYTES: usize = 63;
/// Longest name of an organisation, team, territory or person, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// Account operations that can fail for a reason the caller should show.
///
/// Services return [`Error`]; this converts into it (see the `From` impl) so
/// that the answers stay those of the API: a device of another user is
/// `device_in_use`, a revoked one `device_revoked`, the rest keep their
/// message as a bad request or a conflict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// No organisation with this slug.
    #[error("no organisation with slug {0:?}")]
    UnknownOrg(String),
    /// The slug is taken.
    #[error("an organisation with slug {0:?} already exists")]
    DuplicateSlug(String),
    /// The email is taken in this organisation.
    #[error("a user with email {0:?} already exists in this organisation")]
    DuplicateEmail(String),
    /// The password is too weak or too long.
    #[error("weak password: {0}")]
    WeakPassword(String),
    /// A value is malformed (slug, email, name).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which value.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The device id is registered to another user.
    #[error("this device is registered to another user")]
    DeviceOfAnotherUser,
    /// The device was revoked.
    #[error("this device was revoked")]
    DeviceRevoked,
}

impl From<AccountError> for Error {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::DeviceRevoked => Error::DeviceRevoked,
            AccountError::DeviceOfAnotherUser => Error::DeviceInUse,
            AccountError::DuplicateSlug(_) | AccountError::DuplicateEmail(_) => {
                Error::Conflict(e.to_string())
            }
            AccountError::UnknownOrg(_)
            | AccountError::WeakPassword(_)
            | AccountError::Invalid { .. } => Error::BadRequest(e.to_string()),
        }
    }
}

/// Trims and lower-cases an email, and checks it has the shape `x@y`.
pub fn normalise_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_BYTES
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(AccountError::Invalid {
            field: "email",
            message: format!("{email:?} is not an email address"),
        })
    }
}

/// Refuses passwords that are too short, repetitive or too long.
pub fn check_password_strength(password: &str) -> Result<(), AccountError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword(format!(
            "use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WeakPassword(format!(
            "use at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err(AccountError::WeakPassword(
            "use at least 4 different characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks an organisation's slug: 2 to 63 lower-case letters, digits and
/// inner hyphens (it is typed at every login).
pub fn check_slug(slug: &str) -> Result<(), AccountError> {
    let ok = (2..=MAX_SLUG_BYTES).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid {
            field: "slug",
            message: format!("{slug:?}: use 2 to 63 lower-case letters, digits and inner hyphens"),
        })
    }
}

/// Checks a name (of an organisation, team, territory or person): not blank,
/// at most [`MAX_NAME_BYTES`] bytes. `field` names it in the refusal.
pub fn check_name(field: &'static str, name: &str) -> Result<(), AccountError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(AccountError::Invalid {
            field,
            message: "give 1 to 200 characters".to_owned(),
        });
    }
    Ok(())
}

/// A new user's email and name to show, as they will be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUser {
    /// Trimmed, lower-cased email.
    pub email: String,
    /// The name given, trimmed, or the part of the email before `@`.
    pub display_name: String,
}

/// Checks a user to create, in this order: the email, the role (anyone but
/// the server), the password's strength, then the name to show (the part of
/// the email before `@` when none is given).
pub fn check_new_user(
    email: &str,
    display_name: &str,
    role: Role,
    password: &str,
) -> Result<CheckedUser, AccountError> {
    let email = normalise_email(email)?;
    if role == Role::Server {
        return Err(AccountError::Invalid {
            field: "role",
            message: "use rep, technician, manager or admin".to_owned(),
        });
    }
    check_password_strength(password)?;
    let display_name = match display_name.trim() {
        "" => email.split('@').next().unwrap_or_default().to_owned(),
        name => name.to_owned(),
    };
    check_name("display name", &display_name)?;
    Ok(CheckedUser {
        email,
        display_name,
    })
}

/// Whether a login's organisation and password are within the sizes any real
/// account has. Anything longer is refused as wrong credentials at once,
/// without hashing it (a long password costs Argon2 time).
pub fn login_within_bounds(org: &str, password: &str) -> bool {
    org.len() <= MAX_SLUG_BYTES && password.len() <= MAX_PASSWORD_BYTES
}

/// Whether `caller` may disable (or enable again) the account of `target`, a
/// user of `target_org`: an administrator of that organisation, and never
/// their own account (an administrator cannot lock themselves out). A user of
/// another organisation answers like one that does not exist.
pub fn may_disable(caller: &Caller, target: UserId, target_org: OrgId) -> Result<(), Error> {
    if target_org != caller.org {
        return Err(Error::NotFound);
    }
    if !matches!(caller.role(), Role::Admin | Role::Server) {
        return Err(Error::Forbidden(
            "only administrators disable accounts".into(),
        ));
    }
    if target == caller.user() {
        return Err(Error::Conflict(
            "you cannot disable your own account; ask another administrator".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller_in(org: OrgId, role: Role) -> Caller {
        Caller {
            actor: fieldsync_core::model::Actor::on_device(
                UserId::new(),
                role,
                fieldsync_core::DeviceId::new(),
            ),
            org,
            team: None,
            territory: None,
            display_name: "x".into(),
            actor_id: automerge::ActorId::random(),
            window: None,
        }
    }

    #[test]
    fn only_an_administrator_of_the_organisation_disables_others() {
        let org = OrgId::new();
        let adam = caller_in(org, Role::Admin);
        assert!(may_disable(&adam, UserId::new(), org).is_ok());
        assert!(matches!(
            may_disable(&adam, UserId::new(), OrgId::new()),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            may_disable(&adam, adam.user(), org),
            Err(Error::Conflict(_))
        ));
        for role in [Role::Manager, Role::Rep, Role::Technician] {
            assert!(matches!(
                may_disable(&caller_in(org, role), UserId::new(), org),
                Err(Error::Forbidden(_))
            ));
        }
    }

    #[test]
    fn emails_are_trimmed_lower_cased_and_must_have_an_at_sign() {
        assert_eq!(
            normalise_email("  Ana@Example.COM ").expect("valid"),
            "ana@example.com"
        );
        assert!(normalise_email("ana.example.com").is_err());
        assert!(normalise_email("@example.com").is_err());
        assert!(normalise_email("a b@example.com").is_err());
        assert!(normalise_email(&format!("a@{}", "x".repeat(320))).is_err());
    }

    #[test]
    fn short_repetitive_and_huge_passwords_are_weak() {
        assert!(check_password_strength("correct horse battery").is_ok());
        assert!(check_password_strength("short1!").is_err());
        assert!(check_password_strength("aaaaaaaaaaaaaaab").is_err());
        assert!(check_password_strength(&"abcd".repeat(300)).is_err());
    }

    #[test]
    fn slugs_are_lower_case_letters_digits_and_inner_hyphens() {
        for good in ["acme", "a1", "acme-field-2"] {
            assert!(check_slug(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "acmé",
            &"a".repeat(64),
        ] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_must_not_be_blank_or_over_200_bytes() {
        assert!(check_name("name", "North").is_ok());
        assert!(check_name("name", "   ").is_err());
        assert!(check_name("name", &"n".repeat(201)).is_err());
        assert_eq!(
            check_name("teams", "").expect_err("blank").to_string(),
            "invalid teams: give 1 to 200 characters"
        );
    }

    #[test]
    fn a_new_user_without_a_name_is_called_by_their_email() {
        let u = check_new_user(" Ana@Acme.test ", " ", Role::Rep, "correct horse battery")
            .expect("valid");
        assert_eq!(u.email, "ana@acme.test");
        assert_eq!(u.display_name, "ana");
        let named = check_new_user(
            "ana@acme.test",
            " Ana Silva ",
            Role::Manager,
            "correct horse",
        )
        .expect("valid");
        assert_eq!(named.display_name, "Ana Silva");
    }

    #[test]
    fn nobody_is_created_with_the_server_role() {
        assert!(matches!(
            check_new_user("s@acme.test", "", Role::Server, "correct horse battery"),
            Err(AccountError::Invalid { field: "role", .. })
        ));
    }

    #[test]
    fn the_email_is_checked_before_the_password() {
        assert!(matches!(
            check_new_user("nobody", "", Role::Rep, "weak"),
            Err(AccountError::Invalid { field: "email", .. })
        ));
    }

    #[test]
    fn oversized_logins_are_out_of_bounds() {
        assert!(login_within_bounds("acme", "correct horse battery"));
        assert!(!login_within_bounds(&"a".repeat(64), "pw"));
        assert!(!login_within_bounds(
            "acme",
            &"p".repeat(MAX_PASSWORD_BYTES + 1)
        ));
    }

    #[test]
    fn account_errors_keep_the_api_codes_and_their_messages() {
        assert_eq!(
            Error::from(AccountError::DeviceRevoked).code(),
            "device_revoked"
        );
        assert_eq!(
            Error::from(AccountError::DeviceOfAnotherUser).code(),
            "device_in_use"
        );
        let dup = Error::from(AccountError::DuplicateEmail("a@x".into()));
        assert_eq!(dup.code(), "conflict");
        assert_eq!(
            dup.to_string(),
            "a user with email \"a@x\" already exists in this organisation"
        );
        let weak = Error::from(AccountError::WeakPassword("use more".into()));
        assert_eq!(weak.code(), "bad_request");
        assert_eq!(weak.to_string(), "weak password: use more");
    }
}
