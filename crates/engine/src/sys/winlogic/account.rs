//! Which logon a container's account needs (§4), as the reference decides it (hcsshim
//! `logon.go`):
//!
//! - the inherit-user annotation: the runtime's own token;
//! - `NT AUTHORITY\…` (SYSTEM, LOCAL SERVICE, NETWORK SERVICE): a service logon, no password;
//! - a name on this machine (`user`, `.\user`, `HOST\user`): if it names a local **group**, an
//!   ephemeral local user is made in that group (the first 20 characters of the container id, a
//!   random password) and logged on interactively; otherwise that user is logged on
//!   interactively with no password;
//! - any other domain: an interactive logon with no password, which Windows refuses for accounts
//!   that have one.
//!
//! Numeric uids are Linux accounts and are refused.

use serde::{Deserialize, Serialize};

use crate::plan::account::AccountError;
use crate::plan::{AccountRequest, WellKnownAccount};

/// The domain of the built-in service accounts.
pub const SERVICE_DOMAIN: &str = "NT AUTHORITY";
/// The reference's limit on an ephemeral user's name (`winapi.UserNameCharLimit`).
pub const USER_NAME_CHAR_LIMIT: usize = 20;
/// Random bytes [`password_from_random`] takes.
pub const PASSWORD_RANDOM_BYTES: usize = 32;

/// The account to log on, decided from the request and the host's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum AccountPlan {
    /// The runtime's own token (`microsoft.com/hostprocess-inherit-user=true`).
    #[default]
    Inherit,
    /// `NT AUTHORITY\<user>` with a service logon.
    Service { user: String },
    /// A user of this machine, logged on interactively without a password.
    Local { user: String },
    /// An ephemeral user made in a local group, deleted with the container.
    Ephemeral { group: String, user: String },
    /// A user of another domain, logged on interactively without a password.
    Domain { domain: String, user: String },
}

/// The account plan for `request` on the host named `computer_name` (NetBIOS). A local name is
/// planned as [`AccountPlan::Local`]; the platform turns it into [`AccountPlan::Ephemeral`] when
/// the name is a local group (see [`ephemeral_for_group`]).
pub fn account_plan(
    request: &AccountRequest,
    computer_name: &str,
) -> Result<AccountPlan, AccountError> {
    let name = match request {
        AccountRequest::Inherit => return Ok(AccountPlan::Inherit),
        AccountRequest::Ids { uid, gid, .. } => {
            return Err(AccountError::Other(format!(
                "uid {uid} / gid {gid}: numeric ids are Linux accounts and cannot run a Windows HostProcess container; set process.user.username (Kubernetes runAsUserName) to an account such as \"NT AUTHORITY\\LOCAL SERVICE\" or to a local group, or set the microsoft.com/hostprocess-inherit-user=true annotation"
            )))
        }
        AccountRequest::Named(name) => name,
    };
    let domain = name.domain.as_deref();
    if domain.is_some_and(|d| d.eq_ignore_ascii_case(SERVICE_DOMAIN)) {
        let user = match name.well_known() {
            Some(account) => service_user(account).to_string(),
            None => name.user.clone(),
        };
        return Ok(AccountPlan::Service { user });
    }
    match domain {
        None | Some(".") => Ok(AccountPlan::Local {
            user: name.user.clone(),
        }),
        Some(d) if !computer_name.is_empty() && d.eq_ignore_ascii_case(computer_name) => {
            Ok(AccountPlan::Local {
                user: name.user.clone(),
            })
        }
        Some(d) => Ok(AccountPlan::Domain {
            domain: d.to_string(),
            user: name.user.clone(),
        }),
    }
}

/// The name `LogonUser` knows a built-in service account by (the spec may say `Local service`
/// or `LocalService`).
pub fn service_user(account: WellKnownAccount) -> &'static str {
    match account {
        WellKnownAccount::System => "SYSTEM",
        WellKnownAccount::LocalService => "LOCAL SERVICE",
        WellKnownAccount::NetworkService => "NETWORK SERVICE",
    }
}

/// A local plan whose name turned out to be a local group becomes an ephemeral user in it.
pub fn ephemeral_for_group(plan: AccountPlan, container_id: &str) -> AccountPlan {
    match plan {
        AccountPlan::Local { user } => AccountPlan::Ephemeral {
            group: user,
            user: ephemeral_user_name(container_id),
        },
        other => other,
    }
}

/// The ephemeral user's name: the first 20 characters of the container id, as the reference
/// names it, with `+` (allowed in ids, not in Windows user names) made `_`.
pub fn ephemeral_user_name(container_id: &str) -> String {
    container_id
        .chars()
        .take(USER_NAME_CHAR_LIMIT)
        .map(|c| if c == '+' { '_' } else { c })
        .collect()
}

/// The comment an ephemeral user carries, so that only accounts made for this container are
/// ever deleted (the reference deletes any account of that name).
pub fn ephemeral_comment(container_id: &str) -> String {
    let id: String = container_id.chars().take(200).collect();
    format!("hostprocess ephemeral account for container {id}")
}

/// A password from random bytes: an upper-case letter, a lower-case letter, a digit and a symbol
/// (so any complexity policy is met), then 28 characters of a 64-character alphabet.
pub fn password_from_random(bytes: &[u8; PASSWORD_RANDOM_BYTES]) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const DIGITS: &[u8] = b"0123456789";
    const SYMBOLS: &[u8] = b"!#%+-=_~";
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let pick = |set: &[u8], b: u8| char::from(set[usize::from(b) % set.len()]);
    let mut password = String::with_capacity(PASSWORD_RANDOM_BYTES);
    password.push(pick(UPPER, bytes[0]));
    password.push(pick(LOWER, bytes[1]));
    password.push(pick(DIGITS, bytes[2]));
    password.push(pick(SYMBOLS, bytes[3]));
    for b in &bytes[4..] {
        password.push(pick(ALPHABET, *b));
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::account::parse_run_as_user_name;

    fn plan(name: &str) -> AccountPlan {
        let request = AccountRequest::Named(parse_run_as_user_name(name).unwrap());
        account_plan(&request, "NODE1").unwrap()
    }

    #[test]
    fn nt_authority_names_are_service_logons_with_their_real_names() {
        let service = |user: &str| AccountPlan::Service { user: user.into() };
        assert_eq!(plan(r"NT AUTHORITY\SYSTEM"), service("SYSTEM"));
        assert_eq!(
            plan(r"NT AUTHORITY\Local service"),
            service("LOCAL SERVICE")
        );
        assert_eq!(plan(r"nt authority\LocalService"), service("LOCAL SERVICE"));
        assert_eq!(
            plan(r"NT AUTHORITY\NetworkService"),
            service("NETWORK SERVICE")
        );
        assert_eq!(plan(r"NT AUTHORITY\Other"), service("Other"));
    }

    #[test]
    fn names_on_this_machine_are_local() {
        let local = |user: &str| AccountPlan::Local { user: user.into() };
        assert_eq!(plan("hpc-localgroup"), local("hpc-localgroup"));
        assert_eq!(plan(r".\alice"), local("alice"));
        assert_eq!(plan(r"node1\alice"), local("alice"));
    }

    #[test]
    fn other_domains_are_domain_logons() {
        assert_eq!(
            plan(r"CORP\bob"),
            AccountPlan::Domain {
                domain: "CORP".into(),
                user: "bob".into()
            }
        );
    }

    #[test]
    fn inherit_is_the_runtime_token() {
        assert_eq!(
            account_plan(&AccountRequest::Inherit, "N").unwrap(),
            AccountPlan::Inherit
        );
    }

    #[test]
    fn numeric_ids_are_refused_with_what_to_set() {
        let err = account_plan(
            &AccountRequest::Ids {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
            },
            "N",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("runAsUserName"), "{err}");
        assert!(err.contains("hostprocess-inherit-user"), "{err}");
    }

    #[test]
    fn a_group_becomes_an_ephemeral_user_named_after_the_container() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            ephemeral_for_group(plan("hpc-localgroup"), id),
            AccountPlan::Ephemeral {
                group: "hpc-localgroup".into(),
                user: "0123456789abcdef0123".into()
            }
        );
        assert_eq!(
            ephemeral_for_group(AccountPlan::Inherit, id),
            AccountPlan::Inherit,
            "only local names can be groups"
        );
    }

    #[test]
    fn ephemeral_names_fit_windows_rules() {
        assert_eq!(ephemeral_user_name("short"), "short");
        assert_eq!(ephemeral_user_name("a+b"), "a_b");
        assert_eq!(
            ephemeral_user_name(&"x".repeat(64)).len(),
            USER_NAME_CHAR_LIMIT
        );
        assert!(ephemeral_comment(&"y".repeat(1024)).len() < 256);
    }

    #[test]
    fn passwords_have_every_character_class() {
        let mut bytes = [0u8; PASSWORD_RANDOM_BYTES];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i * 37 % 256) as u8;
        }
        let password = password_from_random(&bytes);
        assert_eq!(password.len(), PASSWORD_RANDOM_BYTES);
        assert!(password.chars().any(|c| c.is_ascii_uppercase()));
        assert!(password.chars().any(|c| c.is_ascii_lowercase()));
        assert!(password.chars().any(|c| c.is_ascii_digit()));
        assert!(password.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_eq!(
            password,
            password_from_random(&bytes),
            "deterministic in its input"
        );
    }
}
