use anyhow::Result;
use serde_json::json;

pub fn run() -> Result<()> {
    let features = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [],
        "mountOptions": ["bind", "rbind", "ro", "rw", "private", "rprivate", "slave", "rslave", "shared", "rshared"],
        "linux": {
            "namespaces": [],
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "io.github.hostprocess.layouts": "bind,symlink",
            "microsoft.com/hostprocess-container": "true",
            "microsoft.com/hostprocess-inherit-user": "supported",
            "microsoft.com/hostprocess-rootfs-location": "supported"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(())
}
