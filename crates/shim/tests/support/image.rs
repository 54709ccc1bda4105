//! OCI image-layout tarballs built in Rust, so tests need no registry: one uncompressed layer with
//! static busybox, its applet links and a marker file, imported with `ctr images import`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ensure_installed;

/// The busybox test image.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/hpc-busybox:latest";
/// The CRI sandbox image containerd's default config asks for.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.6";
/// A pause process made of busybox: sleeps until SIGTERM/SIGINT, then exits 0.
pub const PAUSE_CMD: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];
/// The marker file at the image root, and its content.
pub const HELLO_PATH: &str = "hello.txt";
pub const HELLO_TEXT: &str = "hello from the hostprocess test image\n";

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "env", "id", "true", "false", "pwd", "mount", "umount",
    "ps", "hostname", "grep", "readlink", "stat", "head", "tail", "wc", "kill", "ln", "mkdir",
    "rm", "touch", "test", "printf", "tr", "dd", "sed", "awk", "uname", "whoami", "cut", "sort",
    "nproc", "seq", "yes", "timeout", "find", "basename", "dirname", "tty", "stty", "xargs",
    "setsid", "nohup", "mkfifo", "chmod", "cp", "mv", "date", "tee",
];

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Writes an OCI image-layout tarball named `reference` whose config runs `cmd` with
/// `PATH=/bin`. Installs Debian's busybox-static when it is missing.
pub fn write_busybox_image(out: &Path, reference: &str, cmd: &[&str]) -> io::Result<()> {
    ensure_installed(busybox_is_static, &["busybox-static"]);
    let layer = busybox_layer()?;
    let layer_digest = sha256_hex(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": cmd, "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "hostprocess shim tests" }],
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = sha256_hex(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let manifest_digest = sha256_hex(&manifest);
    let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let index = serde_json::to_vec(&index)?;

    let mut layout = tar::Builder::new(Vec::new());
    append_file(
        &mut layout,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    append_file(&mut layout, "index.json", &index, 0o644)?;
    append_dir(&mut layout, "blobs")?;
    append_dir(&mut layout, "blobs/sha256")?;
    for (digest, blob) in [
        (&manifest_digest, &manifest),
        (&config_digest, &config),
        (&layer_digest, &layer),
    ] {
        append_file(&mut layout, &format!("blobs/sha256/{digest}"), blob, 0o644)?;
    }
    let bytes = layout.into_inner()?;
    let mut file = fs::File::create(out)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

/// The image's only layer: `/bin/busybox`, its applets as symlinks, the usual empty top-level
/// directories and the marker file.
fn busybox_layer() -> io::Result<Vec<u8>> {
    let busybox = fs::read(BUSYBOX)?;
    let mut layer = tar::Builder::new(Vec::new());
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp"] {
        append_dir(&mut layer, dir)?;
    }
    append_file(&mut layer, "bin/busybox", &busybox, 0o755)?;
    for applet in APPLETS {
        let mut header = header(tar::EntryType::Symlink, 0o777);
        header.set_size(0);
        layer.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    append_file(&mut layer, HELLO_PATH, HELLO_TEXT.as_bytes(), 0o644)?;
    append_file(
        &mut layer,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    append_file(&mut layer, "etc/group", b"root:x:0:\n", 0o644)?;
    layer.into_inner()
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, mode);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, path, data)
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str) -> io::Result<()> {
    let mut header = header(tar::EntryType::Directory, 0o755);
    header.set_size(0);
    builder.append_data(&mut header, format!("{path}/"), io::empty())
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Debian's `busybox` package also installs /bin/busybox, but linked dynamically: an image
/// needs the static one (no ELF interpreter).
fn busybox_is_static() -> bool {
    let Ok(elf) = fs::read(BUSYBOX) else {
        return false;
    };
    !elf.windows(b"ld-linux".len())
        .take(4096)
        .any(|w| w == b"ld-linux")
}
