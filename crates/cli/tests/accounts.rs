//! §4: the account a container runs as, privileges dropped correctly, the Kubernetes
//! `runAsUserName` rules, ephemeral uids for group names, and no runtime descriptor in the
//! workload.

mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use support::*;

const NO_CAPS: &str = "0000000000000000";

fn sleeper() -> Bundle {
    Bundle::new().args(&["/bin/sleep", "60"])
}

#[test]
fn numeric_root_runs_as_uid_0() {
    let rt = Runtime::new();
    let id = unique_id("root");
    let (_c, pid) = rt.started(&id, &sleeper().user_ids(0, 0));
    assert_eq!(status_ids(pid, "Uid"), vec![0, 0, 0, 0]);
    assert_eq!(status_ids(pid, "Gid"), vec![0, 0, 0, 0]);
    assert_ne!(
        status_field(pid, "CapEff"),
        NO_CAPS,
        "root keeps its capabilities"
    );
}

#[test]
fn nt_authority_system_is_root() {
    let rt = Runtime::new();
    let id = unique_id("system");
    let (_c, pid) = rt.started(&id, &sleeper().user_name("NT AUTHORITY\\SYSTEM"));
    assert_eq!(status_ids(pid, "Uid"), vec![0, 0, 0, 0]);
}

#[test]
fn a_passwd_user_gets_its_ids_groups_and_no_capabilities() {
    let user = HostUser::new();
    for name in [user.name.clone(), format!(".\\{}", user.name)] {
        let rt = Runtime::new();
        let id = unique_id("user");
        let (_c, pid) = rt.started(&id, &sleeper().user_name(&name));
        let (uid, gid) = (user.uid, user.primary.gid);
        assert_eq!(status_ids(pid, "Uid"), vec![uid; 4], "{name}");
        assert_eq!(status_ids(pid, "Gid"), vec![gid; 4], "{name}");
        let mut groups = status_ids(pid, "Groups");
        groups.sort_unstable();
        let mut want = vec![gid, user.extra.gid];
        want.sort_unstable();
        assert_eq!(
            groups, want,
            "{name}: supplementary groups of the user, no root's"
        );
        for cap in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(status_field(pid, cap), NO_CAPS, "{name}: {cap}");
        }
    }
}

#[test]
fn a_passwd_user_gets_its_login_environment() {
    let user = HostUser::new();
    let rt = Runtime::new();
    let id = unique_id("userenv");
    let bundle = Bundle::new()
        .user_name(&user.name)
        .sh("echo \"USER=$USER LOGNAME=$LOGNAME HOME=$HOME\"; id -un");
    let _c = rt.guard(&id);
    let out = rt.run(&id, &bundle).ok("run");
    assert_eq!(
        out.stdout_text(),
        format!("USER={0} LOGNAME={0} HOME=/nonexistent\n{0}\n", user.name)
    );
}

#[test]
fn a_group_name_gets_an_ephemeral_uid_in_the_configured_range() {
    let group = HostGroup::new();
    let rt = Runtime::new().with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63100-63109");
    let id = unique_id("eph");
    let guard = rt.guard(&id);
    rt.create(&id, &sleeper().user_name(&group.name))
        .ok("create");
    rt.start(&id).ok("start");
    let pid = rt.pid(&id);
    let uid = status_ids(pid, "Uid")[0];
    assert!(
        (63100..=63109).contains(&uid),
        "uid {uid} outside the range"
    );
    assert_eq!(status_ids(pid, "Uid"), vec![uid; 4]);
    assert_eq!(
        status_ids(pid, "Gid"),
        vec![group.gid; 4],
        "primary group is the group"
    );
    assert_eq!(status_ids(pid, "Groups"), vec![group.gid]);
    assert_eq!(status_field(pid, "CapEff"), NO_CAPS);
    let claim = rt.claims_dir().join(uid.to_string());
    assert_eq!(
        fs::read_to_string(&claim).unwrap_or_default(),
        format!("{id}\n{}\n", rt.root().join(&id).display()),
        "claim file while running: the container and its state directory"
    );
    drop(guard);
    assert!(!claim.exists(), "the claim is released on delete");
}

#[test]
fn a_group_name_uses_the_default_range_and_two_containers_get_different_uids() {
    let group = HostGroup::new();
    let rt = Runtime::new();
    let a = unique_id("epha");
    let b = unique_id("ephb");
    let (_ga, pid_a) = rt.started(&a, &sleeper().user_name(&group.name));
    let (_gb, pid_b) = rt.started(&b, &sleeper().user_name(&group.name));
    let uid_a = status_ids(pid_a, "Uid")[0];
    let uid_b = status_ids(pid_b, "Uid")[0];
    for uid in [uid_a, uid_b] {
        assert!(
            (61184..=65519).contains(&uid),
            "uid {uid} outside 61184-65519"
        );
    }
    assert_ne!(
        uid_a, uid_b,
        "two live containers never share an ephemeral uid"
    );
    assert_eq!(status_ids(pid_b, "Gid")[0], group.gid);
}

#[test]
fn an_exhausted_ephemeral_range_is_a_clear_error_and_leaves_nothing() {
    let group = HostGroup::new();
    let rt = Runtime::new().with_env("HOSTPROCESS_EPHEMERAL_UIDS", "63200-63200");
    let a = unique_id("full");
    let b = unique_id("full");
    let (_ga, _pid) = rt.started(&a, &sleeper().user_name(&group.name));
    let _gb = rt.guard(&b);
    rt.create(&b, &sleeper().user_name(&group.name))
        .fails_with("no free ephemeral uid");
    rt.assert_gone(&b);
}

#[test]
fn inherit_user_runs_as_the_runtimes_own_account() {
    let user = HostUser::new();
    let rt = Runtime::new();
    let id = unique_id("inherit");
    let bundle = sleeper()
        .user_name(&user.name)
        .annotation("microsoft.com/hostprocess-inherit-user", "true");
    let (_c, pid) = rt.started(&id, &bundle);
    assert_eq!(
        status_ids(pid, "Uid"),
        vec![0; 4],
        "the runtime runs as root"
    );
    assert_eq!(
        status_field(pid, "CapEff"),
        status_field(std::process::id(), "CapEff"),
        "the runtime's own privileges"
    );
}

#[test]
fn local_service_maps_to_nobody_or_the_configured_account() {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let rt = Runtime::new();
    let id = unique_id("locsvc");
    let (_c, pid) = rt.started(&id, &sleeper().user_name("NT AUTHORITY\\Local service"));
    assert_eq!(status_ids(pid, "Uid"), vec![nobody.uid.as_raw(); 4]);
    assert_eq!(status_ids(pid, "Gid"), vec![nobody.gid.as_raw(); 4]);
    assert_eq!(status_field(pid, "CapEff"), NO_CAPS);

    let user = HostUser::new();
    let rt = Runtime::new().with_env("HOSTPROCESS_LOCAL_SERVICE_ACCOUNT", &user.name);
    let id = unique_id("locsvc2");
    let (_c2, pid) = rt.started(&id, &sleeper().user_name("NT AUTHORITY\\LOCAL SERVICE"));
    assert_eq!(status_ids(pid, "Uid"), vec![user.uid; 4]);
}

#[test]
fn network_service_maps_to_nobody() {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let rt = Runtime::new();
    let id = unique_id("netsvc");
    let (_c, pid) = rt.started(&id, &sleeper().user_name("NT AUTHORITY\\NetworkService"));
    assert_eq!(status_ids(pid, "Uid"), vec![nobody.uid.as_raw(); 4]);
}

#[test]
fn bad_windows_names_are_refused_with_the_kubernetes_messages() {
    let long_user = "u".repeat(105);
    let long_domain = format!("{}\\u", "d".repeat(256));
    let cases: &[(&str, &str)] = &[
        (
            "a\\b\\c",
            "runAsUserName cannot contain more than one backslash",
        ),
        (
            "us@er",
            "runAsUserName's User cannot contain the following characters",
        ),
        ("DOMAIN\\", "runAsUserName's User cannot be empty"),
        (
            ". .",
            "runAsUserName's User cannot contain only periods or spaces",
        ),
        (
            "bad*domain\\u",
            "runAsUserName's Domain doesn't match the NetBios nor the DNS format",
        ),
        ("a\u{7}b", "runAsUserName cannot contain control characters"),
        (
            &long_user,
            "runAsUserName's User length must not be longer than 104 characters",
        ),
        (
            &long_domain,
            "runAsUserName's Domain length must be under 256 characters",
        ),
    ];
    let rt = Runtime::new();
    for (name, message) in cases {
        let id = unique_id("badname");
        let _c = rt.guard(&id);
        rt.create(&id, &sleeper().user_name(name))
            .fails_with(message);
        rt.assert_gone(&id);
    }
}

#[test]
fn unknown_accounts_and_domains_are_refused_clearly() {
    let rt = Runtime::new();
    let cases = [
        (unique_name("nosuchuser"), "no user or group of that name"),
        (
            "CORP\\alice".to_string(),
            "domain accounts are not supported",
        ),
        (
            "NT AUTHORITY\\Guest".to_string(),
            "SYSTEM, LOCAL SERVICE and NETWORK SERVICE",
        ),
    ];
    for (name, message) in cases {
        let id = unique_id("unknown");
        let _c = rt.guard(&id);
        rt.create(&id, &sleeper().user_name(&name))
            .fails_with(message);
        rt.assert_gone(&id);
    }
}

/// The fd numbers a container sees, excluding the one `ls` opens for the directory.
fn listed_fds(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[test]
fn no_runtime_descriptor_reaches_the_workload() {
    let user = HostUser::new();
    let rt = Runtime::new();
    let id = unique_id("fds");
    let out_dir = open_dir();
    let listing = out_dir.path().join("init-fds");
    let bundle = Bundle::new().user_name(&user.name).sh(&format!(
        "ls /proc/self/fd > {}; exec sleep 60",
        listing.display()
    ));
    // The CLI itself gets a stray inheritable descriptor (as from a careless caller) at 7.
    let stray = fs::File::open("/etc/hostname").unwrap();
    let stray_fd = stray.as_raw_fd();
    let with_stray = |cmd: &mut std::process::Command| {
        // SAFETY: dup2 and fcntl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto the same number would keep close-on-exec: clear it explicitly.
                if libc::dup2(stray_fd, 7) < 0 || libc::fcntl(7, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    // The fixture works: a plain program started this way has it.
    let mut probe = std::process::Command::new("/bin/ls");
    probe.arg("/proc/self/fd");
    with_stray(&mut probe);
    let probed = probe.output().unwrap().stdout_text();
    assert!(probed.lines().any(|l| l == "7"), "{probed}");
    let mut cmd = rt.command(&["create", "-b", &bundle.path().to_string_lossy(), &id]);
    with_stray(&mut cmd);
    let _c = rt.guard(&id);
    rt.output_of(cmd, CLI_TIMEOUT).ok("create");
    rt.start(&id).ok("start");
    let text = wait_for_file(&listing, Duration::from_secs(5));
    // 0, 1, 2 and the directory `ls` itself opened (3).
    assert_eq!(
        listed_fds(&text),
        vec!["0", "1", "2", "3"],
        "init sees: {text}"
    );
    let pid = rt.pid(&id);
    let mut open: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    open.sort_unstable();
    assert_eq!(open, vec![0, 1, 2], "the running init holds only stdio");

    let out = rt
        .exec(&id, &["/bin/sh", "-c", "ls /proc/self/fd"])
        .ok("exec");
    assert_eq!(
        listed_fds(&out.stdout_text()),
        vec!["0", "1", "2", "3"],
        "exec sees extra descriptors"
    );
    assert!(Path::new("/etc/hostname").exists());
}

#[test]
fn exec_runs_as_the_containers_account_whatever_it_asks_for() {
    let user = HostUser::new();
    let rt = Runtime::new();
    let id = unique_id("execuser");
    let (_c, _pid) = rt.started(&id, &sleeper().user_name(&user.name));
    let out = rt
        .cli(&[
            "exec",
            "--user",
            "0:0",
            &id,
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g; grep CapEff /proc/self/status",
        ])
        .ok("exec --user 0");
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], user.uid.to_string(), "{text}");
    assert_eq!(lines[1], user.primary.gid.to_string(), "{text}");
    assert!(lines[2].ends_with(NO_CAPS), "{text}");
}

#[test]
fn the_hosts_own_name_as_domain_means_a_local_user() {
    let user = HostUser::new();
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let rt = Runtime::new();
    let id = unique_id("hostdom");
    let name = format!("{}\\{}", host.to_uppercase(), user.name);
    let (_c, pid) = rt.started(&id, &sleeper().user_name(&name));
    assert_eq!(status_ids(pid, "Uid"), vec![user.uid; 4], "{name}");
}

#[test]
fn numeric_ids_with_additional_gids_are_applied() {
    let rt = Runtime::new();
    let id = unique_id("numeric");
    let bundle = sleeper().set(
        &["process", "user"],
        serde_json::json!({ "uid": 4321, "gid": 4322, "additionalGids": [4323, 4324] }),
    );
    let (_c, pid) = rt.started(&id, &bundle);
    assert_eq!(status_ids(pid, "Uid"), vec![4321; 4]);
    assert_eq!(status_ids(pid, "Gid"), vec![4322; 4]);
    let groups = status_ids(pid, "Groups");
    assert!(
        groups.contains(&4323) && groups.contains(&4324),
        "{groups:?}"
    );
    assert!(
        !groups.contains(&0),
        "root's groups are dropped: {groups:?}"
    );
    assert_eq!(status_field(pid, "CapEff"), NO_CAPS);
}

#[test]
fn a_local_service_account_missing_on_the_host_is_a_clear_error() {
    let missing = unique_name("hpt-nosvc");
    let rt = Runtime::new().with_env("HOSTPROCESS_LOCAL_SERVICE_ACCOUNT", &missing);
    let id = unique_id("nosvc");
    let _c = rt.guard(&id);
    let out = rt
        .create(&id, &sleeper().user_name("NT AUTHORITY\\LocalService"))
        .fails_with(&missing);
    assert!(
        out.stderr_text()
            .contains("HOSTPROCESS_LOCAL_SERVICE_ACCOUNT"),
        "names the setting: {}",
        out.stderr_text()
    );
    rt.assert_gone(&id);
}
