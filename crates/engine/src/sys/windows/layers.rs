//! Mounting image layers through the HCS storage API (`vmcompute.dll`, loaded at run time), as
//! hcsshim's `wclayer` does for process-isolated containers: `ActivateLayer` and `PrepareLayer`
//! make the scratch layer a volume over its parents, `GetLayerMountPath` names that volume;
//! `UnprepareLayer` and `DeactivateLayer` undo it. The decisions are `winlogic::layers`'.

use std::io;
use std::sync::OnceLock;

use windows_sys::core::{GUID, HRESULT, PCWSTR};
use windows_sys::Win32::System::LibraryLoader::GetProcAddress;

use super::win::{from_wide, hresult_error, system_module, wide};
use crate::error::{Error, Result};
use crate::sys::winlogic::layers::{Layer, LayerMount};

/// The storage API's `DriverInfo`: the filter driver flavour and the layers' home directory.
#[repr(C)]
struct DriverInfo {
    flavour: isize,
    home_dir: PCWSTR,
}

/// `WC_LAYER_DESCRIPTOR`: a parent layer.
#[repr(C)]
struct LayerDescriptor {
    layer_id: GUID,
    flags: u32,
    path: PCWSTR,
}

const FILTER_DRIVER: isize = 1;

type LayerCall = unsafe extern "system" fn(*const DriverInfo, PCWSTR) -> HRESULT;
type PrepareLayer =
    unsafe extern "system" fn(*const DriverInfo, PCWSTR, *const LayerDescriptor, u32) -> HRESULT;
type GetLayerMountPath =
    unsafe extern "system" fn(*const DriverInfo, PCWSTR, *mut usize, *mut u16) -> HRESULT;
type NameToGuid = unsafe extern "system" fn(PCWSTR, *mut GUID) -> HRESULT;

struct StorageApi {
    activate: LayerCall,
    prepare: PrepareLayer,
    mount_path: GetLayerMountPath,
    unprepare: LayerCall,
    deactivate: LayerCall,
    name_to_guid: NameToGuid,
}

/// The storage API, loaded once from System32; `None` where there is none (Wine, hosts without
/// the Containers feature).
fn storage_api() -> Option<&'static StorageApi> {
    static API: OnceLock<Option<StorageApi>> = OnceLock::new();
    API.get_or_init(|| {
        let module = system_module("vmcompute.dll")?;
        type Export = unsafe extern "system" fn() -> isize;
        // SAFETY: NUL-terminated export names.
        let find =
            |name: &std::ffi::CStr| unsafe { GetProcAddress(module, name.as_ptr() as *const u8) };
        let (activate, prepare, mount_path, unprepare, deactivate, name_to_guid) = (
            find(c"ActivateLayer")?,
            find(c"PrepareLayer")?,
            find(c"GetLayerMountPath")?,
            find(c"UnprepareLayer")?,
            find(c"DeactivateLayer")?,
            find(c"NameToGuid")?,
        );
        // SAFETY: the exports have these signatures (as hcsshim declares them).
        unsafe {
            Some(StorageApi {
                activate: std::mem::transmute::<Export, LayerCall>(activate),
                prepare: std::mem::transmute::<Export, PrepareLayer>(prepare),
                mount_path: std::mem::transmute::<Export, GetLayerMountPath>(mount_path),
                unprepare: std::mem::transmute::<Export, LayerCall>(unprepare),
                deactivate: std::mem::transmute::<Export, LayerCall>(deactivate),
                name_to_guid: std::mem::transmute::<Export, NameToGuid>(name_to_guid),
            })
        }
    })
    .as_ref()
}

fn api() -> Result<&'static StorageApi> {
    storage_api().ok_or_else(|| {
        Error::sys(
            "mount the image layers",
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this host has no HCS storage API (vmcompute.dll, the Containers feature)",
            ),
        )
    })
}

fn check(hr: HRESULT, op: &'static str, layer: &Layer) -> Result<()> {
    if hr < 0 {
        return Err(Error::io(op, &layer.path, hresult_error(hr)));
    }
    Ok(())
}

/// Calls `f` with the layer's driver info and id, kept alive for the call.
fn with_layer<T>(layer: &Layer, f: impl FnOnce(&DriverInfo, PCWSTR) -> T) -> T {
    let home = wide(&layer.home);
    let id = wide(&layer.id);
    let info = DriverInfo {
        flavour: FILTER_DRIVER,
        home_dir: home.as_ptr(),
    };
    f(&info, id.as_ptr())
}

/// Activates and prepares the scratch layer over its parents and returns the volume path it is
/// mounted at. What it did is undone when a step fails.
pub fn mount(layers: &LayerMount) -> Result<String> {
    let api = api()?;
    let scratch = &layers.scratch;
    // SAFETY: valid driver info and id for the call.
    let hr = with_layer(scratch, |info, id| unsafe { (api.activate)(info, id) });
    check(hr, "activate layer", scratch)?;
    let mounted = prepare(api, layers).and_then(|()| mount_path(api, scratch));
    if mounted.is_err() {
        if let Err(e) = unmount(layers) {
            log::warn!("layer {}: undo a failed mount: {e}", scratch.path);
        }
    }
    mounted
}

fn prepare(api: &StorageApi, layers: &LayerMount) -> Result<()> {
    let paths: Vec<Vec<u16>> = layers.parents.iter().map(|l| wide(&l.path)).collect();
    let mut descriptors = Vec::with_capacity(layers.parents.len());
    for (parent, path) in layers.parents.iter().zip(&paths) {
        let name = wide(&parent.id);
        let mut guid = GUID::from_u128(0);
        // SAFETY: a NUL-terminated name and an out-parameter.
        check(
            unsafe { (api.name_to_guid)(name.as_ptr(), &mut guid) },
            "derive the layer id",
            parent,
        )?;
        descriptors.push(LayerDescriptor {
            layer_id: guid,
            flags: 0,
            path: path.as_ptr(),
        });
    }
    let scratch = &layers.scratch;
    // SAFETY: the descriptors and their paths outlive the call.
    let hr = with_layer(scratch, |info, id| unsafe {
        (api.prepare)(info, id, descriptors.as_ptr(), descriptors.len() as u32)
    });
    check(hr, "prepare layer", scratch)
}

fn mount_path(api: &StorageApi, scratch: &Layer) -> Result<String> {
    let mut length = 0usize;
    // SAFETY: the sizing call, with a null buffer.
    let hr = with_layer(scratch, |info, id| unsafe {
        (api.mount_path)(info, id, &mut length, std::ptr::null_mut())
    });
    check(hr, "get the layer's mount path", scratch)?;
    let mut buffer = vec![0u16; length.max(1)];
    // SAFETY: a buffer of the length asked for.
    let hr = with_layer(scratch, |info, id| unsafe {
        (api.mount_path)(info, id, &mut length, buffer.as_mut_ptr())
    });
    check(hr, "get the layer's mount path", scratch)?;
    let path = from_wide(&buffer);
    if path.is_empty() {
        return Err(Error::io(
            "get the layer's mount path",
            &scratch.path,
            io::Error::new(io::ErrorKind::NotFound, "the layer has no mount path"),
        ));
    }
    Ok(path)
}

/// Unprepares and deactivates the scratch layer; a layer that is not active is left as it is.
pub fn unmount(layers: &LayerMount) -> Result<()> {
    let Some(api) = storage_api() else {
        // Nothing can have been mounted on a host without the API.
        return Ok(());
    };
    let scratch = &layers.scratch;
    // SAFETY: valid driver info and id for the calls.
    let unprepared = with_layer(scratch, |info, id| unsafe { (api.unprepare)(info, id) });
    if unprepared < 0 {
        log::debug!(
            "layer {}: unprepare: {}",
            scratch.path,
            hresult_error(unprepared)
        );
    }
    // SAFETY: as above.
    let hr = with_layer(scratch, |info, id| unsafe { (api.deactivate)(info, id) });
    if hr < 0 && unprepared < 0 {
        // Neither prepared nor active: already unmounted (a second delete).
        log::debug!("layer {}: deactivate: {}", scratch.path, hresult_error(hr));
        return Ok(());
    }
    check(hr, "deactivate layer", scratch)
}
