//! Accounts on Linux (§4): Windows-form names map to passwd users, `NT AUTHORITY` accounts to
//! root or a configured account, and a group name to an ephemeral uid claimed from a reserved
//! range for the container's lifetime.

use std::ffi::CString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::plan::account::{AccountError, AccountName, AccountRequest, WellKnownAccount};
use crate::plan::settings::{
    AccountSettings, EphemeralPool, EPHEMERAL_UIDS_VAR, LOCAL_SERVICE_VAR, NETWORK_SERVICE_VAR,
    NO_ID,
};

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
    EphemeralInGroup {
        group: String,
        gid: u32,
        /// Where the uid is claimed from (a record stored before it was kept here: the
        /// default range and directory).
        #[serde(default)]
        pool: EphemeralPool,
    },
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

/// Looks the account up on the host, mapped as `settings` say. No side effects.
pub fn resolve(request: &AccountRequest, settings: &AccountSettings) -> Result<Resolution> {
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
            for (what, id) in [("uid", uid), ("gid", gid)]
                .into_iter()
                .chain(additional_gids.iter().map(|g| ("additionalGids entry", g)))
            {
                if *id == NO_ID {
                    return Err(Error::Account(AccountError::Other(format!(
                        "process.user {what} {NO_ID} is no account (the kernel reads it as \"leave unchanged\"); give a real {}",
                        if what == "uid" { "uid" } else { "gid" }
                    ))));
                }
            }
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
        AccountRequest::Named(name) => resolve_name(name, settings),
    }
}

fn resolve_name(name: &AccountName, settings: &AccountSettings) -> Result<Resolution> {
    if let Some(well_known) = name.well_known() {
        let (user, env) = match well_known {
            WellKnownAccount::System => ("root".to_string(), None),
            WellKnownAccount::LocalService => {
                (settings.local_service.clone(), Some(LOCAL_SERVICE_VAR))
            }
            WellKnownAccount::NetworkService => {
                (settings.network_service.clone(), Some(NETWORK_SERVICE_VAR))
            }
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
        // The range is checked now, before create makes anything.
        let pool = settings.ephemeral_pool()?.clone();
        return Ok(Resolution::EphemeralInGroup {
            group: group.name,
            gid: group.gid.as_raw(),
            pool,
        });
    }
    Err(unresolvable(
        name,
        "this host has no user or group of that name",
    ))
}

/// Who holds an ephemeral uid: the container and its state directory, so the same id in
/// another state root is another owner. A claim file holds `<id>\n<state dir>\n`.
#[derive(Debug, Clone, Copy)]
pub struct ClaimOwner<'a> {
    pub id: &'a str,
    pub state_dir: &'a Path,
}

impl ClaimOwner<'_> {
    fn content(&self) -> Vec<u8> {
        let mut content = Vec::with_capacity(self.id.len() + 64);
        content.extend_from_slice(self.id.as_bytes());
        content.push(b'\n');
        content.extend_from_slice(self.state_dir.as_os_str().as_bytes());
        content.push(b'\n');
        content
    }
}

/// A claim whose owner is provably gone: an empty file (claims are written whole before they
/// appear, so this is one a crash or a full disk cut short) or one whose container's state
/// directory no longer exists. A claim in the older form (the id alone) proves nothing.
fn is_stale(content: &[u8]) -> bool {
    if content.is_empty() {
        return true;
    }
    let Some(newline) = content.iter().position(|b| *b == b'\n') else {
        return false;
    };
    let Some(dir) = content[newline + 1..].strip_suffix(b"\n") else {
        return false;
    };
    !dir.is_empty() && !Path::new(std::ffi::OsStr::from_bytes(dir)).exists()
}

/// Holds the claims directory's lock while stale claims are judged and removed, so a claim
/// made meanwhile is never taken for the stale one it replaced.
fn lock_claims(dir: &Path) -> Result<fs::File> {
    let file = fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    // SAFETY: flock on a descriptor the file owns; the lock goes when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
        return Err(Error::io("lock", dir, std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// Makes `claim` with `content`, whole: written to a file of this call's own first, then
/// linked under the uid's name, which fails if it exists (like O_EXCL). False when it exists;
/// a write that fails (a full /run) leaves nothing.
fn make_claim(dir: &Path, claim: &Path, content: &[u8]) -> std::io::Result<bool> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".claim-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let open = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
    };
    let mut file = match open() {
        // Left by a process that had this pid before and died half-way.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp)?;
            open()?
        }
        opened => opened?,
    };
    let made = file
        .write_all(content)
        .and_then(|()| fs::hard_link(&tmp, claim));
    let _ = fs::remove_file(&tmp);
    match made {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Claims the first free uid of the pool for `owner` and returns the account. A claim whose
/// owner is provably gone is taken over.
pub fn claim_ephemeral(
    owner: ClaimOwner<'_>,
    group: &str,
    gid: u32,
    pool: &EphemeralPool,
) -> Result<Account> {
    let dir = &pool.claims_dir;
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let (first, last) = (pool.first, pool.last);
    let content = owner.content();
    let mut lock = None;
    for uid in first..=last {
        if User::from_uid(Uid::from_raw(uid)).ok().flatten().is_some() {
            continue;
        }
        let claim = dir.join(uid.to_string());
        let mut retried = false;
        loop {
            match make_claim(dir, &claim, &content) {
                Ok(true) => {
                    log::debug!(
                        "container {}: ephemeral uid {uid} in group {group}",
                        owner.id
                    );
                    return Ok(Account {
                        uid,
                        gid,
                        groups: vec![gid],
                        name: owner.id.chars().take(20).collect(),
                        home: String::new(),
                        inherit: false,
                        ephemeral_claim: Some(claim),
                    });
                }
                Ok(false) if !retried => {
                    retried = true;
                    if lock.is_none() {
                        lock = Some(lock_claims(dir)?);
                    }
                    match fs::read(&claim) {
                        Ok(held) if is_stale(&held) => {
                            log::debug!(
                                "ephemeral uid {uid}: releasing the stale claim '{}'",
                                claim.display()
                            );
                            fs::remove_file(&claim)
                                .or_else(|e| match e.kind() {
                                    ErrorKind::NotFound => Ok(()),
                                    _ => Err(e),
                                })
                                .map_err(|e| Error::io("remove", &claim, e))?;
                        }
                        _ => break,
                    }
                }
                Ok(false) => break,
                Err(e) => return Err(Error::io("create", &claim, e)),
            }
        }
    }
    Err(Error::container(
        owner.id,
        format!(
            "no free ephemeral uid in {first}-{last} (claims in {}); delete stopped containers or widen {EPHEMERAL_UIDS_VAR}",
            dir.display()
        ),
    ))
}

/// Releases the claim a container's state names, if it is `owner`'s (or, made by an older
/// runtime, holds its id alone).
pub fn release_claim(claim: &Path, owner: ClaimOwner<'_>) -> Result<()> {
    release_if(claim, |held| {
        held == owner.content().as_slice() || held == owner.id.as_bytes()
    })
}

/// Releases every claim of `owner` in the pool (after a crash, the state may not name its
/// claim), and only those: the same id in another state root is another container.
pub fn sweep_claims(owner: ClaimOwner<'_>, pool: &EphemeralPool) -> Result<()> {
    let Ok(entries) = fs::read_dir(&pool.claims_dir) else {
        return Ok(());
    };
    let content = owner.content();
    for entry in entries.flatten() {
        release_if(&entry.path(), |held| held == content.as_slice())?;
    }
    Ok(())
}

fn release_if(claim: &Path, owned: impl Fn(&[u8]) -> bool) -> Result<()> {
    match fs::read(claim) {
        Ok(held) if owned(&held) => fs::remove_file(claim).or_else(|e| match e.kind() {
            ErrorKind::NotFound => Ok(()),
            _ => Err(Error::io("remove", claim, e)),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("read", claim, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(domain: &str, user: &str) -> AccountRequest {
        AccountRequest::Named(AccountName {
            domain: Some(domain.into()),
            user: user.into(),
        })
    }

    #[test]
    fn the_service_accounts_map_to_the_users_the_settings_name() {
        let settings = AccountSettings {
            local_service: "root".into(),
            network_service: "hpc-no-such-user".into(),
            ..AccountSettings::default()
        };
        match resolve(&named("NT AUTHORITY", "LOCAL SERVICE"), &settings).unwrap() {
            Resolution::Fixed(account) => {
                assert_eq!((account.uid, account.name), (0, "root".into()))
            }
            other => panic!("{other:?}"),
        }
        let error = resolve(&named("NT AUTHORITY", "NETWORK SERVICE"), &settings)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"hpc-no-such-user\" (HOSTPROCESS_NETWORK_SERVICE_ACCOUNT)"),
            "{error}"
        );
    }

    #[test]
    fn a_record_stored_before_the_pool_was_kept_claims_from_the_default_pool() {
        let stored = r#"{"EphemeralInGroup": {"group": "staff", "gid": 50}}"#;
        assert_eq!(
            serde_json::from_str::<Resolution>(stored).unwrap(),
            Resolution::EphemeralInGroup {
                group: "staff".into(),
                gid: 50,
                pool: EphemeralPool::default(),
            }
        );
    }

    #[test]
    fn of_threads_claiming_one_uid_exactly_one_wins_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let claim = dir.path().join("63000");
        let won: Vec<bool> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|n| {
                    let (dir, claim) = (dir.path(), &claim);
                    scope.spawn(move || {
                        make_claim(dir, claim, format!("c{n}\n/s\n").as_bytes()).unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let winner = won.iter().position(|w| *w).unwrap();
        assert_eq!(
            fs::read_to_string(&claim).unwrap(),
            format!("c{winner}\n/s\n")
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("63000")]);
    }

    #[test]
    fn a_claim_is_stale_only_when_its_owner_is_provably_gone() {
        let dir = tempfile::tempdir().unwrap();
        let live = ClaimOwner {
            id: "c1",
            state_dir: dir.path(),
        };
        let gone_dir = dir.path().join("gone");
        let gone = ClaimOwner {
            id: "c1",
            state_dir: &gone_dir,
        };
        assert!(!is_stale(&live.content()));
        assert!(is_stale(&gone.content()));
        assert!(is_stale(b""));
        assert!(!is_stale(b"c1"), "the older form proves nothing");
    }
}
