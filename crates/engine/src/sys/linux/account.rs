//! Accounts on Linux (§4): Windows-form names map to passwd users, `NT AUTHORITY` accounts to
//! root or a configured account, and a group name to an ephemeral uid claimed from a reserved
//! range for the container's lifetime.

use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::account::{AccountError, AccountName, AccountRequest, WellKnownAccount};

/// Where ephemeral uid claims live: host-wide, whatever the state root, so two runtimes never
/// hand out the same uid.
pub const EPHEMERAL_CLAIMS_DIR: &str = "/run/hostprocess-ephemeral-uids";
/// The reserved range (systemd's dynamic-user range).
pub const EPHEMERAL_UIDS: (u32, u32) = (61184, 65519);
/// Environment settings of the runtime for the service accounts and the range.
pub const LOCAL_SERVICE_ENV: &str = "HOSTPROCESS_LOCAL_SERVICE_ACCOUNT";
pub const NETWORK_SERVICE_ENV: &str = "HOSTPROCESS_NETWORK_SERVICE_ACCOUNT";
pub const EPHEMERAL_UIDS_ENV: &str = "HOSTPROCESS_EPHEMERAL_UIDS";
/// Tests point this at a private directory.
pub const EPHEMERAL_CLAIMS_ENV: &str = "HOSTPROCESS_EPHEMERAL_UIDS_DIR";

/// The resolved account a container's processes run as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub name: String,
    /// Empty: the sandbox mount point.
    pub home: String,
    /// Run with the runtime's own credentials: no change at all.
    pub inherit: bool,
    /// The claim file of an ephemeral uid, released on delete.
    pub ephemeral_claim: Option<PathBuf>,
}

/// What `prepare` found: a fixed account, or a group that needs an ephemeral uid at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    Fixed(Account),
    EphemeralInGroup { group: String, gid: u32 },
}

fn unresolvable(name: &AccountName, message: impl Into<String>) -> Error {
    Error::Account(AccountError::Unresolvable {
        name: name.to_string(),
        message: message.into(),
    })
}

fn groups_of(user: &User) -> Vec<u32> {
    let Ok(name) = CString::new(user.name.as_str()) else {
        return vec![user.gid.as_raw()];
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|_| vec![user.gid.as_raw()])
}

fn from_user(user: &User) -> Account {
    Account {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups_of(user),
        name: user.name.clone(),
        home: user.dir.to_string_lossy().into_owned(),
        inherit: false,
        ephemeral_claim: None,
    }
}

fn lookup_user(name: &str) -> Option<User> {
    User::from_name(name).ok().flatten()
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Looks the account up on the host. No side effects.
pub fn resolve(request: &AccountRequest) -> Result<Resolution> {
    match request {
        AccountRequest::Inherit => {
            let uid = Uid::current();
            let user = User::from_uid(uid).ok().flatten();
            Ok(Resolution::Fixed(Account {
                uid: uid.as_raw(),
                gid: Gid::current().as_raw(),
                groups: nix::unistd::getgroups()
                    .map(|g| g.into_iter().map(Gid::as_raw).collect())
                    .unwrap_or_default(),
                name: user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
                home: user
                    .map(|u| u.dir.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                inherit: true,
                ephemeral_claim: None,
            }))
        }
        AccountRequest::Ids {
            uid,
            gid,
            additional_gids,
        } => {
            let user = User::from_uid(Uid::from_raw(*uid)).ok().flatten();
            let mut groups = vec![*gid];
            groups.extend(additional_gids.iter().filter(|g| *g != gid));
            Ok(Resolution::Fixed(Account {
                uid: *uid,
                gid: *gid,
                groups,
                name: user
                    .as_ref()
                    .map_or_else(|| uid.to_string(), |u| u.name.clone()),
                home: user
                    .map(|u| u.dir.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                inherit: false,
                ephemeral_claim: None,
            }))
        }
        AccountRequest::Named(name) => resolve_name(name),
    }
}

fn resolve_name(name: &AccountName) -> Result<Resolution> {
    if let Some(well_known) = name.well_known() {
        let (user, env) = match well_known {
            WellKnownAccount::System => ("root".to_string(), None),
            WellKnownAccount::LocalService => (
                std::env::var(LOCAL_SERVICE_ENV).unwrap_or_else(|_| "nobody".into()),
                Some(LOCAL_SERVICE_ENV),
            ),
            WellKnownAccount::NetworkService => (
                std::env::var(NETWORK_SERVICE_ENV).unwrap_or_else(|_| "nobody".into()),
                Some(NETWORK_SERVICE_ENV),
            ),
        };
        let found = lookup_user(&user).ok_or_else(|| {
            unresolvable(
                name,
                match env {
                    Some(env) => format!(
                        "it maps to the user {user:?} ({env}), which this host does not have"
                    ),
                    None => format!("this host has no user {user:?}"),
                },
            )
        })?;
        return Ok(Resolution::Fixed(from_user(&found)));
    }
    match name.domain.as_deref() {
        None | Some(".") => {}
        Some(domain) if domain.eq_ignore_ascii_case(&host_name()) => {}
        Some(domain) if domain.eq_ignore_ascii_case("NT AUTHORITY") => {
            return Err(unresolvable(
                name,
                "the NT AUTHORITY accounts are SYSTEM, LOCAL SERVICE and NETWORK SERVICE",
            ))
        }
        Some(_) => {
            return Err(unresolvable(
                name,
                "domain accounts are not supported on Linux; use a local user or group",
            ))
        }
    }
    // On Linux every user usually has a group of the same name, so users win over groups.
    if let Some(user) = lookup_user(&name.user) {
        return Ok(Resolution::Fixed(from_user(&user)));
    }
    if let Ok(Some(group)) = Group::from_name(&name.user) {
        return Ok(Resolution::EphemeralInGroup {
            group: group.name,
            gid: group.gid.as_raw(),
        });
    }
    Err(unresolvable(
        name,
        "this host has no user or group of that name",
    ))
}

/// The directory of ephemeral uid claims (one file per claimed uid).
pub fn claims_dir() -> PathBuf {
    std::env::var_os(EPHEMERAL_CLAIMS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(EPHEMERAL_CLAIMS_DIR))
}

/// The reserved range of ephemeral uids, first and last.
pub fn uid_range() -> (u32, u32) {
    std::env::var(EPHEMERAL_UIDS_ENV)
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .filter(|(a, b)| a <= b)
        .unwrap_or(EPHEMERAL_UIDS)
}

/// Claims the first free uid of the range for `container_id` (a file created with O_EXCL, so
/// concurrent claims never collide) and returns the account.
pub fn claim_ephemeral(container_id: &str, group: &str, gid: u32) -> Result<Account> {
    let dir = claims_dir();
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let (first, last) = uid_range();
    for uid in first..=last {
        if User::from_uid(Uid::from_raw(uid)).ok().flatten().is_some() {
            continue;
        }
        let claim = dir.join(uid.to_string());
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut file) => {
                file.write_all(container_id.as_bytes())
                    .map_err(|e| Error::io("write", &claim, e))?;
                log::debug!("container {container_id}: ephemeral uid {uid} in group {group}");
                return Ok(Account {
                    uid,
                    gid,
                    groups: vec![gid],
                    name: container_id.chars().take(20).collect(),
                    home: String::new(),
                    inherit: false,
                    ephemeral_claim: Some(claim),
                });
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("create", &claim, e)),
        }
    }
    Err(Error::container(
        container_id,
        format!(
            "no free ephemeral uid in {first}-{last} (claims in {}); delete stopped containers or widen {EPHEMERAL_UIDS_ENV}",
            dir.display()
        ),
    ))
}

/// Releases a claim if it is this container's.
pub fn release_claim(claim: &Path, container_id: &str) -> Result<()> {
    match fs::read_to_string(claim) {
        Ok(owner) if owner == container_id => fs::remove_file(claim).or_else(|e| match e.kind() {
            ErrorKind::NotFound => Ok(()),
            _ => Err(Error::io("remove", claim, e)),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("read", claim, e)),
    }
}

/// Releases every claim of `container_id` (after a crash, the state may not name its claim).
pub fn sweep_claims(container_id: &str) -> Result<()> {
    let dir = claims_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        release_claim(&entry.path(), container_id)?;
    }
    Ok(())
}
