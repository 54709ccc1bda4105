//! Which account a container runs as (§4): the request taken from the spec, and the
//! Kubernetes `runAsUserName` rules, with the apiserver's messages.

use std::fmt;

use crate::annotations::{self, BoolSpelling};
use crate::plan::run_as_user_name::run_as_user_name_errors;
use crate::spec::Spec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("invalid user name {name:?}: {message}")]
    InvalidName { name: String, message: &'static str },
    #[error("account {name:?}: {message}")]
    Unresolvable { name: String, message: String },
    #[error("account: {0}")]
    Other(String),
}

/// The account the spec asks for, before it is looked up on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AccountRequest {
    /// Run as the runtime's own account (`microsoft.com/hostprocess-inherit-user=true`).
    Inherit,
    /// A Windows-form name: `user`, `.\user`, `HOST\user`, `NT AUTHORITY\...`, or a group.
    Named(AccountName),
    /// The Linux form: numeric ids.
    Ids {
        uid: u32,
        gid: u32,
        additional_gids: Vec<u32>,
    },
}

/// A validated Windows-form account name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountName {
    pub domain: Option<String>,
    pub user: String,
}

/// The built-in service accounts of `NT AUTHORITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnownAccount {
    System,
    LocalService,
    NetworkService,
}

impl AccountName {
    /// `NT AUTHORITY\SYSTEM`, `NT AUTHORITY\LOCAL SERVICE` (or `Local service`, `LocalService`),
    /// `NT AUTHORITY\NETWORK SERVICE` (or `NetworkService`); case and spaces do not matter.
    pub fn well_known(&self) -> Option<WellKnownAccount> {
        let domain = self.domain.as_deref()?;
        if !domain.eq_ignore_ascii_case("NT AUTHORITY") {
            return None;
        }
        let squashed: String = self
            .user
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        match squashed.as_str() {
            "system" => Some(WellKnownAccount::System),
            "localservice" => Some(WellKnownAccount::LocalService),
            "networkservice" => Some(WellKnownAccount::NetworkService),
            _ => None,
        }
    }

    /// True for `user` and `.\user`; `HOST\user` is local too, which only the host can tell.
    pub fn is_local_form(&self) -> bool {
        matches!(self.domain.as_deref(), None | Some("."))
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(domain) => write!(f, "{domain}\\{}", self.user),
            None => f.write_str(&self.user),
        }
    }
}

/// Reads the account from, in order: the inherit-user annotation, `process.user.username`,
/// the `run-as-user.hostprocess.io/<container-name>` annotation, the
/// `hostprocess.io/run-as-user` annotation, then `process.user.uid/gid/additionalGids`.
pub fn account_request(spec: &Spec) -> Result<AccountRequest, AccountError> {
    let inherit = spec
        .annotation(annotations::INHERIT_USER)
        .map(|v| annotations::parse_bool(annotations::INHERIT_USER, v, BoolSpelling::Word));
    // A value other than true, in any case, means false.
    if inherit == Some(Ok(true)) {
        return Ok(AccountRequest::Inherit);
    }
    let user = spec
        .process
        .as_ref()
        .map(|p| p.user.clone())
        .unwrap_or_default();
    let name = user
        .username
        .as_deref()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            let container = spec.annotation(annotations::CRI_CONTAINER_NAME)?;
            spec.annotation(&format!(
                "{}{container}",
                annotations::RUN_AS_USER_OF_CONTAINER
            ))
        })
        .or_else(|| spec.annotation(annotations::RUN_AS_USER));
    if let Some(name) = name {
        return parse_run_as_user_name(name).map(AccountRequest::Named);
    }
    Ok(AccountRequest::Ids {
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
    })
}

/// Validates a Windows-form name with the Kubernetes `runAsUserName` rules; the error carries
/// the apiserver's message for the first rule broken.
pub fn parse_run_as_user_name(name: &str) -> Result<AccountName, AccountError> {
    // `.` (this machine) is not a NetBIOS or DNS name, but it is how Windows spells a local
    // account, so a spec may use it although the apiserver would refuse it.
    let checked = match name.strip_prefix(".\\") {
        Some(user) => user,
        None => name,
    };
    if let Some(first) = run_as_user_name_errors(checked).first() {
        return Err(AccountError::InvalidName {
            name: name.to_string(),
            message: first.message(),
        });
    }
    Ok(match name.split_once('\\') {
        Some((domain, user)) => AccountName {
            domain: Some(domain.to_string()),
            user: user.to_string(),
        },
        None => AccountName {
            domain: None,
            user: name.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str) -> &'static str {
        match parse_run_as_user_name(name) {
            Err(AccountError::InvalidName { message, .. }) => message,
            other => panic!("{name:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_names_of_the_kubernetes_page() {
        for name in [
            "NT AUTHORITY\\SYSTEM",
            "NT AUTHORITY\\Local service",
            "NT AUTHORITY\\NetworkService",
            "hpc-localgroup",
            ".\\alice",
            "node-1.example.com\\bob",
        ] {
            parse_run_as_user_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn refuses_bad_names_with_the_apiserver_messages() {
        assert_eq!(message(""), "runAsUserName cannot be an empty string");
        assert_eq!(
            message("a\u{7}b"),
            "runAsUserName cannot contain control characters"
        );
        assert_eq!(
            message("a\\b\\c"),
            "runAsUserName cannot contain more than one backslash"
        );
        assert_eq!(
            message(&format!("{}\\u", "d".repeat(256))),
            "runAsUserName's Domain length must be under 256 characters"
        );
        assert_eq!(
            message("bad*domain\\u"),
            "runAsUserName's Domain doesn't match the NetBios nor the DNS format"
        );
        assert_eq!(message("DOMAIN\\"), "runAsUserName's User cannot be empty");
        assert_eq!(
            message(&"u".repeat(105)),
            "runAsUserName's User length must not be longer than 104 characters"
        );
        assert_eq!(
            message(". ."),
            "runAsUserName's User cannot contain only periods or spaces"
        );
        assert_eq!(
            message("us@er"),
            "runAsUserName's User cannot contain the following characters: \"/\\:;|=,+*?<>@[]"
        );
    }

    #[test]
    fn user_of_104_characters_is_the_longest_allowed() {
        assert!(parse_run_as_user_name(&"u".repeat(104)).is_ok());
    }

    #[test]
    fn well_known_accounts_ignore_case_and_spaces() {
        let name = |s| parse_run_as_user_name(s).unwrap().well_known();
        assert_eq!(name("NT AUTHORITY\\SYSTEM"), Some(WellKnownAccount::System));
        assert_eq!(
            name("nt authority\\Local service"),
            Some(WellKnownAccount::LocalService)
        );
        assert_eq!(
            name("NT AUTHORITY\\LocalService"),
            Some(WellKnownAccount::LocalService)
        );
        assert_eq!(
            name("NT AUTHORITY\\NETWORK SERVICE"),
            Some(WellKnownAccount::NetworkService)
        );
        assert_eq!(name("NT AUTHORITY\\Guest"), None);
        assert_eq!(name("SYSTEM"), None);
    }

    #[test]
    fn inherit_annotation_wins_over_the_user_name() {
        let mut spec = Spec::default();
        spec.annotations
            .insert(annotations::INHERIT_USER.into(), "true".into());
        spec.process = Some(crate::spec::Process {
            user: crate::spec::User {
                username: Some("alice".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(account_request(&spec).unwrap(), AccountRequest::Inherit);
    }

    #[test]
    fn numeric_ids_are_used_when_no_name_is_given() {
        let mut spec = Spec::default();
        spec.process = Some(crate::spec::Process {
            user: crate::spec::User {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5],
                username: None,
            },
            ..Default::default()
        });
        assert_eq!(
            account_request(&spec).unwrap(),
            AccountRequest::Ids {
                uid: 1000,
                gid: 100,
                additional_gids: vec![5]
            }
        );
    }

    #[test]
    fn run_as_user_annotation_is_validated_like_run_as_user_name() {
        let mut spec = Spec::default();
        spec.annotations
            .insert(annotations::RUN_AS_USER.into(), "a\\b\\c".into());
        assert!(matches!(
            account_request(&spec),
            Err(AccountError::InvalidName { .. })
        ));
    }

    fn named(annotations: &[(&str, &str)]) -> Result<AccountRequest, AccountError> {
        let mut spec = Spec::default();
        for (key, value) in annotations {
            spec.annotations.insert(key.to_string(), value.to_string());
        }
        account_request(&spec)
    }

    fn name(user: &str) -> AccountRequest {
        AccountRequest::Named(parse_run_as_user_name(user).unwrap())
    }

    #[test]
    fn a_containers_own_annotation_wins_over_the_pods() {
        let pod_wide = (annotations::RUN_AS_USER, "NT AUTHORITY\\SYSTEM");
        let key = format!("{}agent", annotations::RUN_AS_USER_OF_CONTAINER);
        let own = (key.as_str(), "hpc-localgroup");
        let other_key = format!("{}init", annotations::RUN_AS_USER_OF_CONTAINER);
        let other = (other_key.as_str(), "NT AUTHORITY\\Local service");
        let named_agent = (annotations::CRI_CONTAINER_NAME, "agent");
        assert_eq!(
            named(&[pod_wide, own, other, named_agent]).unwrap(),
            name("hpc-localgroup")
        );
        // Another container's key does not apply; the pod-wide annotation does.
        assert_eq!(
            named(&[pod_wide, other, named_agent]).unwrap(),
            name("NT AUTHORITY\\SYSTEM")
        );
        // Without the CRI's container name no per-container key can apply.
        assert_eq!(
            named(&[pod_wide, own]).unwrap(),
            name("NT AUTHORITY\\SYSTEM")
        );
        assert_eq!(named(&[own, named_agent]).unwrap(), name("hpc-localgroup"));
    }

    #[test]
    fn a_containers_own_annotation_is_validated_like_run_as_user_name() {
        let key = format!("{}agent", annotations::RUN_AS_USER_OF_CONTAINER);
        let err = named(&[
            (key.as_str(), "a\\b\\c"),
            (annotations::CRI_CONTAINER_NAME, "agent"),
        ])
        .unwrap_err();
        assert!(matches!(err, AccountError::InvalidName { .. }), "{err:?}");
    }
}
