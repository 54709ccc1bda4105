//! Values at the edge of their range are refused at create with a message naming them, and
//! leave nothing behind: ids that mean "no change" to the kernel, ephemeral uid ranges that
//! reach system accounts, a grace period the clock cannot measure.

mod support;

use support::*;

#[test]
fn a_uid_or_gid_that_means_no_change_is_refused() {
    let rt = Runtime::new();
    for (uid, gid) in [(u32::MAX, 0), (0, u32::MAX), (1000, u32::MAX)] {
        let id = unique_id("noid");
        let _c = rt.guard(&id);
        let bundle = Bundle::new().user_ids(uid, gid);
        rt.create(&id, &bundle)
            .fails_with("4294967295 is no account");
        rt.assert_gone(&id);
    }
    let id = unique_id("noid");
    let _c = rt.guard(&id);
    let bundle = Bundle::new().set(
        &["process", "user", "additionalGids"],
        serde_json::json!([5, u32::MAX]),
    );
    rt.create(&id, &bundle)
        .fails_with("additionalGids entry 4294967295 is no account");
}

#[test]
fn an_ephemeral_uid_range_that_is_invalid_or_reaches_system_uids_is_refused() {
    let group = HostGroup::new();
    for (range, why) in [
        ("1-1000000", "it includes system uids"),
        ("70010-70000", "the first uid is above the last"),
        ("lots", "not a range"),
        ("63000-70000", "no change"),
        ("4294967000-4294967295", "no change"),
    ] {
        let rt = Runtime::new().with_env("HOSTPROCESS_EPHEMERAL_UIDS", range);
        let id = unique_id("range");
        let _c = rt.guard(&id);
        let bundle = Bundle::new().user_name(&group.name);
        let out = rt.create(&id, &bundle).fails_with(why);
        assert!(
            out.stderr_text().contains("HOSTPROCESS_EPHEMERAL_UIDS"),
            "{}",
            out.stderr_text()
        );
        rt.assert_gone(&id);
    }
}

#[test]
fn a_grace_period_beyond_a_day_is_refused() {
    let rt = Runtime::new();
    for grace in ["86401", "9223372036854775808"] {
        let id = unique_id("grace");
        let _c = rt.guard(&id);
        let bundle = Bundle::new()
            .sh("sleep 60 & exit 0")
            .annotation("hostprocess.io/grace-period-seconds", grace);
        rt.run(&id, &bundle)
            .fails_with("hostprocess.io/grace-period-seconds");
        rt.assert_gone(&id);
    }
}

#[test]
fn a_memory_limit_too_small_to_start_the_command_is_reported() {
    let rt = Runtime::new();
    let bundle = Bundle::new().set(
        &["linux", "resources", "memory"],
        serde_json::json!({ "limit": 4096 }),
    );
    // run: the step that ran out of memory, not a silent 127.
    let id = unique_id("tinymem");
    let c = rt.guard(&id);
    let out = rt.run(&id, &bundle).fails_with("Cannot allocate memory");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    drop(c);
    // create: its held init never got ready, so create fails and leaves nothing.
    let id = unique_id("tinymem");
    let _c = rt.guard(&id);
    let out = rt.create(&id, &bundle);
    assert!(
        !out.status.success(),
        "create succeeded: {}",
        rt.describe(&id)
    );
    let text = out.stderr_text();
    assert!(
        text.contains("memory limit") || text.contains("Cannot allocate memory"),
        "{text}"
    );
    rt.assert_gone(&id);
}
