//! Image layers (§2): what the volume is made from when containerd's Windows snapshotter gives a
//! `windows-layer` mount (its scratch layer, then the image's layers, top first, from the
//! mount's `parentLayerPaths`). As the reference does for process-isolated containers
//! (hcsshim's `wclayer`), the scratch layer is activated and prepared over its parents through
//! the HCS storage API (`vmcompute.dll`), and the volume is the path it is mounted at; `delete`
//! unprepares and deactivates it.

use serde::{Deserialize, Serialize};

use super::cmdline::to_backslashes;

/// A layer as the storage API names it: the directory holding it and its folder name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The layer's full path.
    pub path: String,
    /// The directory the layer is in (the API's "home directory").
    pub home: String,
    /// The layer's folder name (the API's layer id; its GUID is derived from it).
    pub id: String,
}

/// The layers to mount: the writable scratch layer over its parents (top first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMount {
    pub scratch: Layer,
    pub parents: Vec<Layer>,
}

/// Where the container volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A directory used as it is (a bundle's root, or a single layer directory).
    Directory(String),
    /// A scratch layer with parents, to be mounted through the storage API.
    Layers(LayerMount),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("the rootfs names no layer directory: the snapshotter's volume is missing")]
    NoLayer,
    #[error("layer path {path:?} has no parent directory and folder name")]
    BadPath { path: String },
}

/// The layer at `path`, split as the storage API wants it.
pub fn layer(path: &str) -> Result<Layer, LayerError> {
    let bad = || LayerError::BadPath {
        path: path.to_string(),
    };
    let clean = to_backslashes(path.trim());
    let clean = clean.trim_end_matches('\\');
    let (home, id) = clean.rsplit_once('\\').ok_or_else(bad)?;
    if home.is_empty() || id.is_empty() {
        return Err(bad());
    }
    // `D:\layer`: the home directory is the drive's root.
    let home = if home.ends_with(':') {
        format!("{home}\\")
    } else {
        home.to_string()
    };
    Ok(Layer {
        path: clean.to_string(),
        home,
        id: id.to_string(),
    })
}

/// Decides how the volume is made from the rootfs's layer directories (scratch first, then the
/// parents top first): a single directory is the volume itself; a scratch layer with parents is
/// mounted through the storage API.
pub fn volume_source(lower: &[String]) -> Result<VolumeSource, LayerError> {
    match lower {
        [] => Err(LayerError::NoLayer),
        [only] => Ok(VolumeSource::Directory(to_backslashes(only))),
        [scratch, parents @ ..] => Ok(VolumeSource::Layers(LayerMount {
            scratch: layer(scratch)?,
            parents: parents.iter().map(|p| layer(p)).collect::<Result<_, _>>()?,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_scratch_layer_with_parents_is_mounted_over_them_in_order() {
        let source = volume_source(&strings(&[
            r"C:\snapshots\9",
            r"C:\snapshots\2",
            "C:/snapshots/1/",
        ]))
        .unwrap();
        let VolumeSource::Layers(mount) = source else {
            panic!("{source:?}");
        };
        assert_eq!(
            mount.scratch,
            Layer {
                path: r"C:\snapshots\9".into(),
                home: r"C:\snapshots".into(),
                id: "9".into(),
            }
        );
        let ids: Vec<&str> = mount.parents.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["2", "1"]);
        assert_eq!(mount.parents[1].path, r"C:\snapshots\1");
    }

    #[test]
    fn a_single_directory_is_the_volume_itself() {
        assert_eq!(
            volume_source(&strings(&["C:/images/app"])).unwrap(),
            VolumeSource::Directory(r"C:\images\app".into())
        );
    }

    #[test]
    fn a_layer_at_a_drive_root_has_the_root_as_home() {
        assert_eq!(layer(r"D:\layer").unwrap().home, r"D:\");
    }

    #[test]
    fn missing_or_unnamed_layers_are_refused() {
        assert_eq!(volume_source(&[]), Err(LayerError::NoLayer));
        for bad in ["layer", r"C:\", "C:", ""] {
            assert!(
                volume_source(&strings(&[r"C:\s\9", bad])).is_err(),
                "{bad:?}"
            );
        }
    }
}
