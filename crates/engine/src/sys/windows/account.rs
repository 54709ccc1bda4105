//! The container's account (§4): the token its processes run with, the ephemeral local user of
//! a group name, and the account's default environment.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::Once;

use windows_sys::Win32::Foundation::{ERROR_MEMBER_IN_ALIAS, ERROR_NO_SUCH_ALIAS, HANDLE, LUID};
use windows_sys::Win32::NetworkManagement::NetManagement::{
    NERR_GroupNotFound as NERR_GROUP_NOT_FOUND, NERR_PasswordTooShort as NERR_PASSWORD_TOO_SHORT,
    NERR_UserExists as NERR_USER_EXISTS, NERR_UserNotFound as NERR_USER_NOT_FOUND,
    NetApiBufferFree, NetLocalGroupAddMembers, NetLocalGroupGetInfo, NetUserAdd, NetUserDel,
    NetUserGetInfo, NetUserSetInfo, LOCALGROUP_MEMBERS_INFO_3, UF_DONT_EXPIRE_PASSWD,
    UF_NORMAL_ACCOUNT, UF_SCRIPT, USER_INFO_1, USER_INFO_1003, USER_PRIV_USER,
};
use windows_sys::Win32::Security::{
    AdjustTokenPrivileges, LogonUserW, LookupPrivilegeValueW, LOGON32_LOGON_INTERACTIVE,
    LOGON32_LOGON_SERVICE, LOGON32_PROVIDER_DEFAULT, LUID_AND_ATTRIBUTES,
    SE_ASSIGNPRIMARYTOKEN_NAME, SE_INCREASE_QUOTA_NAME, SE_PRIVILEGE_ENABLED,
    TOKEN_ADJUST_PRIVILEGES, TOKEN_ALL_ACCESS, TOKEN_PRIVILEGES, TOKEN_QUERY,
};
use windows_sys::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::win::{from_wide, last_error, owned, random_bytes, raw, wide};
use crate::error::{Error, Result};
use crate::sys::winlogic::account::{
    ephemeral_comment, ephemeral_user_name, password_from_random, AccountPlan,
    PASSWORD_RANDOM_BYTES, SERVICE_DOMAIN,
};
use crate::sys::winlogic::env::parse_block;

/// A `NET_API_STATUS` as an I/O error; the `NERR_*` codes have no system message.
fn net_error(code: u32) -> io::Error {
    let text = match code {
        NERR_USER_EXISTS => "the account already exists",
        NERR_USER_NOT_FOUND => "the user name could not be found",
        NERR_GROUP_NOT_FOUND => "the group name could not be found",
        NERR_PASSWORD_TOO_SHORT => "the password does not meet the password policy",
        code if code < 2100 => return io::Error::from_raw_os_error(code as i32),
        _ => "network management error",
    };
    io::Error::other(format!("{text} (NET_API_STATUS {code})"))
}

/// Enables the privileges `CreateProcessAsUserW` checks (held by LocalSystem, not always
/// enabled). Failures are left for `CreateProcessAsUserW` to report.
pub fn enable_process_privileges() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut token = std::ptr::null_mut();
        // SAFETY: our own process token, an out-parameter.
        if unsafe {
            OpenProcessToken(
                GetCurrentProcess(),
                TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY,
                &mut token,
            )
        } == 0
        {
            return;
        }
        let Some(token) = owned(token) else { return };
        for name in [SE_ASSIGNPRIMARYTOKEN_NAME, SE_INCREASE_QUOTA_NAME] {
            let mut luid = LUID::default();
            // SAFETY: a constant privilege name and an out-parameter.
            if unsafe { LookupPrivilegeValueW(std::ptr::null(), name, &mut luid) } == 0 {
                continue;
            }
            let privileges = TOKEN_PRIVILEGES {
                PrivilegeCount: 1,
                Privileges: [LUID_AND_ATTRIBUTES {
                    Luid: luid,
                    Attributes: SE_PRIVILEGE_ENABLED,
                }],
            };
            // SAFETY: a complete TOKEN_PRIVILEGES; no previous state asked for.
            unsafe {
                AdjustTokenPrivileges(
                    raw(&token),
                    0,
                    &privileges,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    });
}

fn logon(user: &str, domain: &str, password: Option<&str>, kind: u32) -> Result<OwnedHandle> {
    let user_w = wide(user);
    let domain_w = wide(domain);
    let password_w = password.map(wide);
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings (or null for no password) and an out-parameter.
    let ok = unsafe {
        LogonUserW(
            user_w.as_ptr(),
            domain_w.as_ptr(),
            password_w.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
            kind,
            LOGON32_PROVIDER_DEFAULT,
            &mut token,
        )
    };
    if ok == 0 {
        return Err(Error::sys(
            format!(
                "failed to create user process token for {domain}\\{user}: failed to logon user"
            ),
            last_error(),
        ));
    }
    owned(token).ok_or_else(|| Error::sys("LogonUserW", last_error()))
}

/// The token of the account `plan` names. An ephemeral user logs on with `password`, the one
/// it was made (or reset) with.
pub fn token(plan: &AccountPlan, password: Option<&str>) -> Result<OwnedHandle> {
    match plan {
        AccountPlan::Inherit => {
            let mut token: HANDLE = std::ptr::null_mut();
            // SAFETY: our own process token, an out-parameter.
            if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_ALL_ACCESS, &mut token) } == 0 {
                return Err(Error::sys("open the runtime's own token", last_error()));
            }
            owned(token).ok_or_else(|| Error::sys("OpenProcessToken", last_error()))
        }
        AccountPlan::Service { user } => logon(user, SERVICE_DOMAIN, None, LOGON32_LOGON_SERVICE),
        AccountPlan::Local { user } => logon(user, ".", None, LOGON32_LOGON_INTERACTIVE),
        AccountPlan::Domain { domain, user } => {
            logon(user, domain, None, LOGON32_LOGON_INTERACTIVE)
        }
        AccountPlan::Ephemeral { user, .. } => {
            let password = password.ok_or_else(|| {
                Error::sys(
                    format!("log on ephemeral user {user}"),
                    io::Error::new(io::ErrorKind::InvalidInput, "no password"),
                )
            })?;
            logon(user, ".", Some(password), LOGON32_LOGON_INTERACTIVE)
        }
    }
}

/// Is `name` a local group of this machine?
pub fn is_local_group(name: &str) -> Result<bool> {
    let name_w = wide(name);
    let mut buffer: *mut u8 = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name and an out-parameter freed below.
    let status = unsafe { NetLocalGroupGetInfo(std::ptr::null(), name_w.as_ptr(), 1, &mut buffer) };
    if !buffer.is_null() {
        // SAFETY: a buffer NetLocalGroupGetInfo allocated.
        unsafe { NetApiBufferFree(buffer as *const _) };
    }
    match status {
        0 => Ok(true),
        NERR_GROUP_NOT_FOUND | ERROR_NO_SUCH_ALIAS => Ok(false),
        code => Err(Error::sys(
            format!("look up local group {name:?}"),
            net_error(code),
        )),
    }
}

/// Was the local user `user` made for container `id`? `None` when there is no such user.
fn made_for(user: &str, id: &str) -> Result<Option<bool>> {
    let user_w = wide(user);
    let mut buffer: *mut u8 = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name and an out-parameter freed below.
    let status = unsafe { NetUserGetInfo(std::ptr::null(), user_w.as_ptr(), 1, &mut buffer) };
    if status == NERR_USER_NOT_FOUND {
        return Ok(None);
    }
    if status != 0 || buffer.is_null() {
        return Err(Error::sys(
            format!("look up local user {user}"),
            net_error(status),
        ));
    }
    // SAFETY: level 1 returns a USER_INFO_1 whose comment is NUL-terminated or null.
    let comment = unsafe {
        let info = &*(buffer as *const USER_INFO_1);
        let comment = if info.usri1_comment.is_null() {
            String::new()
        } else {
            let mut len = 0;
            while *info.usri1_comment.add(len) != 0 {
                len += 1;
            }
            from_wide(std::slice::from_raw_parts(info.usri1_comment, len))
        };
        NetApiBufferFree(buffer as *const _);
        comment
    };
    Ok(Some(comment == ephemeral_comment(id)))
}

fn new_password() -> Result<String> {
    Ok(password_from_random(
        &random_bytes::<PASSWORD_RANDOM_BYTES>()?,
    ))
}

/// Makes the ephemeral user of container `id` in `group` (the reference's level-1 user:
/// `USER_PRIV_USER`, `UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD`) and returns its password. A
/// leftover user made for the same container (a crash) is replaced; any other user of that
/// name is left alone and the container refused.
pub fn create_ephemeral(id: &str, user: &str, group: &str) -> Result<String> {
    let password = new_password()?;
    let mut name_w = wide(user);
    let mut password_w = wide(&password);
    let mut comment_w = wide(ephemeral_comment(id));
    let info = USER_INFO_1 {
        usri1_name: name_w.as_mut_ptr(),
        usri1_password: password_w.as_mut_ptr(),
        usri1_password_age: 0,
        usri1_priv: USER_PRIV_USER,
        usri1_home_dir: std::ptr::null_mut(),
        usri1_comment: comment_w.as_mut_ptr(),
        usri1_flags: UF_SCRIPT | UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD,
        usri1_script_path: std::ptr::null_mut(),
    };
    let add = || {
        let mut bad_field = 0u32;
        // SAFETY: a complete USER_INFO_1 whose strings outlive the call.
        unsafe {
            NetUserAdd(
                std::ptr::null(),
                1,
                &info as *const USER_INFO_1 as *const u8,
                &mut bad_field,
            )
        }
    };
    let mut status = add();
    if status == NERR_USER_EXISTS {
        match made_for(user, id)? {
            Some(true) => {
                log::info!("container {id}: replacing ephemeral user {user} left by an earlier run");
                delete_user(user)?;
                status = add();
            }
            _ => {
                return Err(Error::container(
                    id,
                    format!(
                        "the local user {user:?} (the first 20 characters of the container id) already exists and was not made for this container; remove it or use another container id"
                    ),
                ))
            }
        }
    }
    if status != 0 {
        return Err(Error::sys(
            format!("create ephemeral user {user}"),
            net_error(status),
        ));
    }
    let member = LOCALGROUP_MEMBERS_INFO_3 {
        lgrmi3_domainandname: name_w.as_mut_ptr(),
    };
    let group_w = wide(group);
    // SAFETY: one LOCALGROUP_MEMBERS_INFO_3 whose string outlives the call.
    let status = unsafe {
        NetLocalGroupAddMembers(
            std::ptr::null(),
            group_w.as_ptr(),
            3,
            &member as *const LOCALGROUP_MEMBERS_INFO_3 as *const u8,
            1,
        )
    };
    if status != 0 && status != ERROR_MEMBER_IN_ALIAS {
        let error = Error::sys(
            format!("add ephemeral user {user} to group {group:?}"),
            net_error(status),
        );
        if let Err(cleanup) = delete_user(user) {
            log::warn!("container {id}: {cleanup}");
        }
        return Err(error);
    }
    Ok(password)
}

/// Gives the ephemeral user a new random password, for a process other than the one that made
/// it (no password is ever stored).
pub fn reset_password(user: &str) -> Result<String> {
    let password = new_password()?;
    let mut password_w = wide(&password);
    let info = USER_INFO_1003 {
        usri1003_password: password_w.as_mut_ptr(),
    };
    let user_w = wide(user);
    let mut bad_field = 0u32;
    // SAFETY: a complete USER_INFO_1003 whose string outlives the call.
    let status = unsafe {
        NetUserSetInfo(
            std::ptr::null(),
            user_w.as_ptr(),
            1003,
            &info as *const USER_INFO_1003 as *const u8,
            &mut bad_field,
        )
    };
    if status != 0 {
        return Err(Error::sys(
            format!("set the password of ephemeral user {user}"),
            net_error(status),
        ));
    }
    Ok(password)
}

fn delete_user(user: &str) -> Result<()> {
    let user_w = wide(user);
    // SAFETY: a NUL-terminated name.
    match unsafe { NetUserDel(std::ptr::null(), user_w.as_ptr()) } {
        0 | NERR_USER_NOT_FOUND => Ok(()),
        code => Err(Error::sys(
            format!("delete ephemeral user {user}"),
            net_error(code),
        )),
    }
}

/// Deletes the ephemeral user of container `id` if it exists and was made for it.
pub fn delete_ephemeral(id: &str, user: &str) -> Result<()> {
    match made_for(user, id)? {
        None => Ok(()),
        Some(true) => delete_user(user),
        Some(false) => {
            log::warn!(
                "container {id}: local user {user} was not made for this container; leaving it"
            );
            Ok(())
        }
    }
}

/// Removes the ephemeral account a container of this id may have left (the shim's `delete`
/// after a crash, as the reference's shim does). Missing accounts and accounts not made for
/// this container are left alone.
pub fn sweep_ephemeral_account(container_id: &str) -> Result<()> {
    delete_ephemeral(container_id, &ephemeral_user_name(container_id))
}

/// The account's default environment (`CreateEnvironmentBlock`, without the runtime's).
pub fn environment(token: HANDLE) -> Result<Vec<String>> {
    let mut block: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: a valid token and an out-parameter destroyed below.
    if unsafe { CreateEnvironmentBlock(&mut block, token, 0) } == 0 {
        return Err(Error::sys(
            "failed to get default environment block",
            last_error(),
        ));
    }
    // SAFETY: the block is a sequence of NUL-terminated strings ending with an empty one.
    let entries = unsafe {
        let start = block as *const u16;
        let mut len = 0usize;
        while !(*start.add(len) == 0 && (len == 0 || *start.add(len - 1) == 0)) {
            len += 1;
        }
        let entries = parse_block(std::slice::from_raw_parts(start, len + 1));
        DestroyEnvironmentBlock(block);
        entries
    };
    Ok(entries)
}

/// The ephemeral user of a plan, if any.
pub fn ephemeral_user(plan: &AccountPlan) -> Option<&str> {
    match plan {
        AccountPlan::Ephemeral { user, .. } => Some(user),
        _ => None,
    }
}
