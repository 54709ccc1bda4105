//! containerd's rootfs mounts (from the snapshotter) become the image of the container volume:
//! the shim never mounts them itself; the engine builds the volume from their directories.

use containerd_shim::protos::api::Mount;
use hostprocess_engine::plan::ImageSource;

/// Reads the image layers out of a Create request's rootfs mounts. No mounts: the bundle's
/// `root.path` is the image (`None`).
pub fn image_source(mounts: &[Mount]) -> Result<Option<ImageSource>, String> {
    let mount = match mounts {
        [] => return Ok(None),
        [mount] => mount,
        _ => {
            return Err(format!(
                "the rootfs has {} mounts; a HostProcess container volume is built from one \
                 snapshot mount (overlay, bind or windows-layer)",
                mounts.len()
            ))
        }
    };
    let option = |key: &str| {
        mount
            .options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    match mount.type_.as_str() {
        "overlay" => {
            let lower: Vec<_> = option("lowerdir")
                .map(|l| {
                    l.split(':')
                        .filter(|d| !d.is_empty())
                        .map(Into::into)
                        .collect()
                })
                .unwrap_or_default();
            if lower.is_empty() {
                return Err("overlay rootfs mount without lowerdir".into());
            }
            Ok(Some(ImageSource::Layers {
                lower,
                upper: option("upperdir").map(Into::into),
                work: option("workdir").map(Into::into),
            }))
        }
        // A snapshot with no parent, or a read-only view of one layer.
        "bind" | "rbind" => {
            if mount.source.is_empty() {
                return Err("bind rootfs mount without a source".into());
            }
            Ok(Some(ImageSource::Layers {
                lower: vec![mount.source.clone().into()],
                upper: None,
                work: None,
            }))
        }
        // Windows: the source is the container's scratch layer (first), then the image layers
        // it is made from; the Windows engine mounts the scratch layer over them.
        "windows-layer" => {
            let parents = option("parentLayerPaths").unwrap_or("[]");
            let parents: Vec<String> = serde_json::from_str(parents).map_err(|e| {
                format!("windows-layer rootfs mount: parentLayerPaths {parents:?}: {e}")
            })?;
            let lower = std::iter::once(mount.source.clone())
                .chain(parents)
                .map(Into::into)
                .collect();
            Ok(Some(ImageSource::Layers {
                lower,
                upper: None,
                work: None,
            }))
        }
        other => Err(format!(
            "rootfs mount type {other:?} is not a snapshot this shim can build a container \
             volume from (overlay, bind or windows-layer)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        let mut m = Mount::new();
        m.type_ = kind.into();
        m.source = source.into();
        m.options = options.iter().map(|o| o.to_string()).collect();
        m
    }

    #[test]
    fn no_mounts_means_the_bundle_root_is_the_image() {
        assert_eq!(image_source(&[]), Ok(None));
    }

    #[test]
    fn an_overlay_mount_gives_lower_layers_top_first_and_containerds_upper_and_work() {
        let m = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/s/9/work",
                "upperdir=/s/9/fs",
                "lowerdir=/s/2/fs:/s/1/fs",
            ],
        );
        assert_eq!(
            image_source(&[m]),
            Ok(Some(ImageSource::Layers {
                lower: vec![PathBuf::from("/s/2/fs"), PathBuf::from("/s/1/fs")],
                upper: Some("/s/9/fs".into()),
                work: Some("/s/9/work".into()),
            }))
        );
    }

    #[test]
    fn a_bind_mount_is_a_single_read_only_layer() {
        let m = mount("bind", "/s/1/fs", &["ro", "rbind"]);
        assert_eq!(
            image_source(&[m]),
            Ok(Some(ImageSource::Layers {
                lower: vec![PathBuf::from("/s/1/fs")],
                upper: None,
                work: None,
            }))
        );
    }

    #[test]
    fn windows_layers_put_the_scratch_layer_first() {
        let m = mount(
            "windows-layer",
            r"C:\s\9",
            &[r#"parentLayerPaths=["C:\\s\\2","C:\\s\\1"]"#],
        );
        assert_eq!(
            image_source(&[m]),
            Ok(Some(ImageSource::Layers {
                lower: vec![
                    PathBuf::from(r"C:\s\9"),
                    PathBuf::from(r"C:\s\2"),
                    PathBuf::from(r"C:\s\1")
                ],
                upper: None,
                work: None,
            }))
        );
    }

    #[test]
    fn unusable_rootfs_mounts_are_refused_with_what_is_accepted() {
        let err = image_source(&[mount("tmpfs", "tmpfs", &[])]).unwrap_err();
        assert!(err.contains("overlay, bind or windows-layer"), "{err}");
        let two = [mount("bind", "/a", &[]), mount("bind", "/b", &[])];
        assert!(image_source(&two).unwrap_err().contains("2 mounts"));
        assert!(image_source(&[mount("overlay", "overlay", &["upperdir=/u"])]).is_err());
    }
}
