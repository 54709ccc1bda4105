//! The runtime's settings from its environment (the `HOSTPROCESS_*` variables and `PATH`),
//! read once where a binary builds its [`PlanOptions`](super::PlanOptions) and carried from
//! there. Parsing takes the variables from a function, so it is tested without touching the
//! process's environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::account::AccountError;

/// How long an operation waits for another's lock on a container (whole seconds).
pub const LOCK_TIMEOUT_VAR: &str = "HOSTPROCESS_LOCK_TIMEOUT";
/// The Linux user `NT AUTHORITY\LOCAL SERVICE` maps to.
pub const LOCAL_SERVICE_VAR: &str = "HOSTPROCESS_LOCAL_SERVICE_ACCOUNT";
/// The Linux user `NT AUTHORITY\NETWORK SERVICE` maps to.
pub const NETWORK_SERVICE_VAR: &str = "HOSTPROCESS_NETWORK_SERVICE_ACCOUNT";
/// The range of ephemeral uids (`FIRST-LAST`).
pub const EPHEMERAL_UIDS_VAR: &str = "HOSTPROCESS_EPHEMERAL_UIDS";
/// Where ephemeral uid claims live; tests point this at a private directory.
pub const EPHEMERAL_CLAIMS_VAR: &str = "HOSTPROCESS_EPHEMERAL_UIDS_DIR";

/// The lock wait unless [`LOCK_TIMEOUT_VAR`] says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The account of both service accounts unless configured.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "nobody";
/// Where ephemeral uid claims live: host-wide, whatever the state root, so two runtimes never
/// hand out the same uid.
pub const EPHEMERAL_CLAIMS_DIR: &str = "/run/hostprocess-ephemeral-uids";
/// The reserved range (systemd's dynamic-user range).
pub const EPHEMERAL_UIDS: (u32, u32) = (61184, 65519);
/// The lowest uid a configured ephemeral range may start at: below are the system accounts
/// (Debian's SYS_UID_MAX is 999), which may own files without a passwd entry.
pub const FIRST_EPHEMERAL_UID: u32 = 1000;
/// `(uid_t)-1`: to setresuid/setresgid "leave this id unchanged", never an account.
pub const NO_ID: u32 = u32::MAX;
/// The 16-bit "no id" of old system calls, never handed out.
const NO_ID_16: u32 = 65535;

/// A variable of the runtime's environment, by name.
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// A variable as text; unset or not Unicode reads as unset (as `std::env::var` has it).
fn text(vars: Vars<'_>, name: &str) -> Option<String> {
    vars(name).and_then(|value| value.into_string().ok())
}

/// [`LOCK_TIMEOUT_VAR`]: whole seconds; anything else keeps the default.
pub fn lock_timeout(vars: Vars<'_>) -> Duration {
    text(vars, LOCK_TIMEOUT_VAR)
        .and_then(|v| v.trim().parse().ok())
        .map_or(DEFAULT_LOCK_TIMEOUT, Duration::from_secs)
}

/// How container accounts map to the host's users (Linux, §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSettings {
    /// The user `NT AUTHORITY\LOCAL SERVICE` runs as.
    pub local_service: String,
    /// The user `NT AUTHORITY\NETWORK SERVICE` runs as.
    pub network_service: String,
    /// Where group accounts claim their uids. A bad range is kept as its error and reported
    /// when a container needs the range: everything else still runs.
    pub ephemeral_uids: std::result::Result<EphemeralPool, AccountError>,
}

/// The uids group accounts are handed, and the directory of their claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralPool {
    pub first: u32,
    pub last: u32,
    pub claims_dir: PathBuf,
}

impl Default for EphemeralPool {
    fn default() -> EphemeralPool {
        EphemeralPool {
            first: EPHEMERAL_UIDS.0,
            last: EPHEMERAL_UIDS.1,
            claims_dir: PathBuf::from(EPHEMERAL_CLAIMS_DIR),
        }
    }
}

impl Default for AccountSettings {
    /// No variable set.
    fn default() -> AccountSettings {
        AccountSettings::from_vars(&|_| None)
    }
}

impl AccountSettings {
    /// The settings of the runtime's environment, for a command that checks them without
    /// planning a container (containers get theirs through `PlanOptions::from_env`).
    pub fn from_env() -> AccountSettings {
        AccountSettings::from_vars(&|name| std::env::var_os(name))
    }

    pub fn from_vars(vars: Vars<'_>) -> AccountSettings {
        let service =
            |name| text(vars, name).unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
        let claims_dir = vars(EPHEMERAL_CLAIMS_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(EPHEMERAL_CLAIMS_DIR));
        let range = match text(vars, EPHEMERAL_UIDS_VAR) {
            None => Ok(EPHEMERAL_UIDS),
            Some(value) => parse_uid_range(&value).map_err(|why| {
                AccountError::Other(format!(
                    "{EPHEMERAL_UIDS_VAR}={value:?}: {why}; give FIRST-LAST within {FIRST_EPHEMERAL_UID}-{} without {NO_ID_16} (default {}-{})",
                    NO_ID - 1,
                    EPHEMERAL_UIDS.0,
                    EPHEMERAL_UIDS.1
                ))
            }),
        };
        AccountSettings {
            local_service: service(LOCAL_SERVICE_VAR),
            network_service: service(NETWORK_SERVICE_VAR),
            ephemeral_uids: range.map(|(first, last)| EphemeralPool {
                first,
                last,
                claims_dir,
            }),
        }
    }

    /// The ephemeral uids, or why the configured range cannot be used.
    pub fn ephemeral_pool(&self) -> Result<&EphemeralPool> {
        self.ephemeral_uids
            .as_ref()
            .map_err(|e| Error::Account(e.clone()))
    }
}

/// `FIRST-LAST`: decimal uids, FIRST ≤ LAST, none a system uid or a "no id" value.
fn parse_uid_range(value: &str) -> std::result::Result<(u32, u32), &'static str> {
    let (first, last) = value.split_once('-').ok_or("not a range")?;
    let number = |text: &str| -> std::result::Result<u32, &'static str> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not a range of decimal uids");
        }
        text.parse().map_err(|_| "a uid is out of range")
    };
    let (first, last) = (number(first)?, number(last)?);
    if first > last {
        return Err("the first uid is above the last");
    }
    if first < FIRST_EPHEMERAL_UID {
        return Err("it includes system uids");
    }
    if last == NO_ID || (first..=last).contains(&NO_ID_16) {
        return Err("it includes a uid that means \"no change\"");
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The variables of a made-up environment.
    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_uid_range_must_leave_out_system_and_no_change_uids() {
        assert_eq!(parse_uid_range("61184-65519"), Ok((61184, 65519)));
        assert_eq!(parse_uid_range(" 70000 - 70010 "), Ok((70000, 70010)));
        assert_eq!(parse_uid_range("1000-1000"), Ok((1000, 1000)));
        for bad in [
            "",
            "61184",
            "a-b",
            "+5-9",
            "70010-70000",
            "1-1000000",
            "999-2000",
            "0-0",
            "4294967000-4294967295",
            "65000-66000",
            "1-99999999999",
        ] {
            assert!(parse_uid_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_variables_the_defaults_apply() {
        let settings = AccountSettings::from_vars(&vars(&[]));
        assert_eq!(settings.local_service, "nobody");
        assert_eq!(settings.network_service, "nobody");
        assert_eq!(
            settings.ephemeral_pool().unwrap(),
            &EphemeralPool::default()
        );
        assert_eq!(
            EphemeralPool::default(),
            EphemeralPool {
                first: 61184,
                last: 65519,
                claims_dir: PathBuf::from("/run/hostprocess-ephemeral-uids"),
            }
        );
        assert_eq!(settings, AccountSettings::default());
        assert_eq!(lock_timeout(&vars(&[])), Duration::from_secs(30));
    }

    #[test]
    fn each_variable_sets_its_setting() {
        let settings = AccountSettings::from_vars(&vars(&[
            ("HOSTPROCESS_LOCAL_SERVICE_ACCOUNT", "svc-local"),
            ("HOSTPROCESS_NETWORK_SERVICE_ACCOUNT", "svc-net"),
            ("HOSTPROCESS_EPHEMERAL_UIDS", "63100-63109"),
            ("HOSTPROCESS_EPHEMERAL_UIDS_DIR", "/tmp/claims"),
        ]));
        assert_eq!(settings.local_service, "svc-local");
        assert_eq!(settings.network_service, "svc-net");
        assert_eq!(
            settings.ephemeral_pool().unwrap(),
            &EphemeralPool {
                first: 63100,
                last: 63109,
                claims_dir: PathBuf::from("/tmp/claims"),
            }
        );
        let timeout = |value| lock_timeout(&vars(&[("HOSTPROCESS_LOCK_TIMEOUT", value)]));
        assert_eq!(timeout("1"), Duration::from_secs(1));
        assert_eq!(timeout(" 7 "), Duration::from_secs(7));
    }

    #[test]
    fn a_bad_lock_timeout_keeps_the_default() {
        for bad in ["", "soon", "-1", "1.5", "99999999999999999999"] {
            let timeout = lock_timeout(&vars(&[("HOSTPROCESS_LOCK_TIMEOUT", bad)]));
            assert_eq!(timeout, DEFAULT_LOCK_TIMEOUT, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_uid_range_is_reported_with_the_variable_and_what_to_give_when_it_is_needed() {
        let settings =
            AccountSettings::from_vars(&vars(&[("HOSTPROCESS_EPHEMERAL_UIDS", "999-2000")]));
        assert_eq!(settings.local_service, "nobody", "the rest still reads");
        assert_eq!(
            settings.ephemeral_pool().unwrap_err().to_string(),
            "account: HOSTPROCESS_EPHEMERAL_UIDS=\"999-2000\": it includes system uids; give FIRST-LAST within 1000-4294967294 without 65535 (default 61184-65519)"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_service_account_that_is_not_unicode_reads_as_unset() {
        use std::os::unix::ffi::OsStringExt;
        let settings = AccountSettings::from_vars(&|name: &str| {
            (name == LOCAL_SERVICE_VAR).then(|| OsString::from_vec(vec![0xff, 0xfe]))
        });
        assert_eq!(settings.local_service, "nobody");
    }
}
