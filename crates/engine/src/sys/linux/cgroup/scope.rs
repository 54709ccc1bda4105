//! The job as a systemd transient scope, where systemd is PID 1 and its bus answers: systemd
//! then knows the job's cgroup as the unit `<prefix>-<name>.scope` (and does not undo its
//! limits on a reload), as runc's systemd driver arranges it. The calls are systemd's D-Bus
//! API (`org.freedesktop.systemd1.Manager`): `StartTransientUnit` with the first process, and
//! `StopUnit` when the container goes.

use std::path::Path;
use std::time::Duration;

use zbus::blocking::Connection;
use zbus::zvariant::Value;

use super::layout::Kind;
use crate::error::{Error, Result};
use crate::plan::resources::ResourceRequest;
use crate::sys::linuxlogic::cgroup::settings::{cfs_quota, cpu_shares, cpu_weight};

const DESTINATION: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's CPU quota period (µs) when a unit sets none.
const SYSTEMD_CPU_PERIOD: u64 = 100_000;

/// Whether systemd is this host's init, as `sd_booted(3)` (and runc) tell it.
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// How long a call to systemd may take before the runtime gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to systemd's manager when systemd is init and its bus answers.
pub fn connect_to_systemd() -> Option<Connection> {
    if !systemd_is_init() {
        return None;
    }
    zbus::blocking::connection::Builder::system()
        .ok()?
        .method_timeout(CALL_TIMEOUT)
        .build()
        .ok()
}

fn bus_error(operation: &str, unit: &str, e: zbus::Error) -> Error {
    Error::sys(
        format!("{operation} systemd unit {unit}"),
        std::io::Error::other(e.to_string()),
    )
}

/// The properties of a new scope: its slice, its first process, delegation of its cgroup to
/// the runtime, accounting, and the limits systemd manages itself (it would reset the files
/// to its own values on a reload otherwise), in the names of this host's cgroup version.
pub fn scope_properties<'a>(
    slice: &'a str,
    pid: u32,
    layout: Kind,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<(&'static str, Value<'a>)> {
    let mut out: Vec<(&'static str, Value<'a>)> = vec![
        ("Description", Value::from("hostprocess container")),
        ("Slice", Value::from(slice)),
        ("PIDs", Value::from(vec![pid])),
        ("Delegate", Value::from(true)),
        ("DefaultDependencies", Value::from(false)),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
    ];
    out.extend(limit_properties(layout, request, host_cpus));
    out
}

/// The limits as unit properties (also what `update` sets).
pub fn limit_properties(
    layout: Kind,
    request: &ResourceRequest,
    host_cpus: u64,
) -> Vec<(&'static str, Value<'static>)> {
    let mut out: Vec<(&'static str, Value<'static>)> = Vec::new();
    if let Some(limit) = request.memory_limit {
        let name = match layout {
            Kind::V2 => "MemoryMax",
            Kind::Hybrid | Kind::V1 => "MemoryLimit",
        };
        out.push((name, Value::from(limit)));
    }
    if let Some(cap) = request.cpu_cap {
        let (quota, period) = cfs_quota(cap, host_cpus);
        // systemd counts the quota per second of wall time; its period is the kernel's
        // 100 ms unless told (a property systemd before 242 refuses, so only when needed).
        out.push((
            "CPUQuotaPerSecUSec",
            Value::from(quota * 1_000_000 / period),
        ));
        if period != SYSTEMD_CPU_PERIOD {
            out.push(("CPUQuotaPeriodUSec", Value::from(period)));
        }
    }
    if let Some(weight) = request.cpu_weight {
        out.push(match layout {
            Kind::V2 => ("CPUWeight", Value::from(cpu_weight(weight))),
            Kind::Hybrid | Kind::V1 => ("CPUShares", Value::from(cpu_shares(weight))),
        });
    }
    if let Some(pids) = request.pids_limit {
        out.push(("TasksMax", Value::from(pids)));
    }
    out
}

/// Starts the transient scope `unit` holding `pid` (mode "replace", no auxiliary units).
pub fn start(bus: &Connection, unit: &str, properties: &[(&'static str, Value<'_>)]) -> Result<()> {
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    bus.call_method(
        Some(DESTINATION),
        PATH,
        Some(MANAGER),
        "StartTransientUnit",
        &(unit, "replace", properties, aux),
    )
    .map(drop)
    .map_err(|e| bus_error("start", unit, e))
}

/// Sets limits on a running scope (`runtime`: not persisted across systemd's restarts).
pub fn set_limits(
    bus: &Connection,
    unit: &str,
    properties: &[(&'static str, Value<'_>)],
) -> Result<()> {
    bus.call_method(
        Some(DESTINATION),
        PATH,
        Some(MANAGER),
        "SetUnitProperties",
        &(unit, true, properties),
    )
    .map(drop)
    .map_err(|e| bus_error("set properties of", unit, e))
}

/// Stops the scope; a unit systemd no longer has (it drops an empty scope itself) is gone.
pub fn stop(bus: &Connection, unit: &str) -> Result<()> {
    match bus.call_method(
        Some(DESTINATION),
        PATH,
        Some(MANAGER),
        "StopUnit",
        &(unit, "replace"),
    ) {
        Ok(_) => Ok(()),
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
        {
            Ok(())
        }
        Err(e) => Err(bus_error("stop", unit, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};

    use zbus::zvariant::{OwnedObjectPath, OwnedValue};

    use super::*;
    use crate::plan::resources::{CpuCap, CpuWeight};

    /// A bus of the test's own: a `dbus-daemon` on a socket in a temp dir, ended when dropped.
    struct PrivateBus {
        daemon: Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl PrivateBus {
        fn start() -> std::result::Result<PrivateBus, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let config = dir.path().join("bus.conf");
            std::fs::write(
                &config,
                format!(
                    "<busconfig><type>custom</type><listen>unix:path={}</listen>\
                     <auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>\
                     <allow own=\"*\"/><allow send_destination=\"*\"/>\
                     <allow receive_sender=\"*\"/></policy></busconfig>",
                    dir.path().join("socket").display()
                ),
            )
            .map_err(|e| e.to_string())?;
            let mut daemon = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--print-address"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("dbus-daemon: {e}"))?;
            let mut address = String::new();
            let read = daemon
                .stdout
                .take()
                .map(|out| BufReader::new(out).read_line(&mut address));
            let bus = PrivateBus {
                daemon,
                address: address.trim().to_string(),
                _dir: dir,
            };
            match read {
                Some(Ok(n)) if n > 0 => Ok(bus),
                _ => Err("dbus-daemon printed no address".into()),
            }
        }

        fn connect(&self) -> Connection {
            zbus::blocking::connection::Builder::address(self.address.as_str())
                .and_then(|b| b.build())
                .expect("connect to the private bus")
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    /// NOT systemd: a test service that owns `org.freedesktop.systemd1` on the private bus and
    /// answers the manager's methods the runtime calls as systemd would (a job path, or
    /// `NoSuchUnit` for a unit it does not have), writing down each call it gets.
    #[derive(Default, Clone)]
    struct NotSystemd {
        calls: Arc<Mutex<Vec<String>>>,
        units: Arc<Mutex<Vec<String>>>,
    }

    #[derive(Debug, zbus::DBusError)]
    #[zbus(prefix = "org.freedesktop.systemd1")]
    enum SystemdError {
        #[zbus(error)]
        ZBus(zbus::Error),
        NoSuchUnit(String),
    }

    fn job() -> OwnedObjectPath {
        OwnedObjectPath::try_from("/org/freedesktop/systemd1/job/1").expect("a job path")
    }

    fn show(properties: &[(String, OwnedValue)]) -> String {
        properties
            .iter()
            .map(|(name, value)| format!("{name}:{}={}", value.value_signature(), **value))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl NotSystemd {
        fn start_transient_unit(
            &self,
            name: String,
            mode: String,
            properties: Vec<(String, OwnedValue)>,
            aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        ) -> OwnedObjectPath {
            self.calls.lock().unwrap().push(format!(
                "StartTransientUnit {name} {mode} aux={} {}",
                aux.len(),
                show(&properties)
            ));
            self.units.lock().unwrap().push(name);
            job()
        }

        fn stop_unit(&self, name: String, mode: String) -> Result<OwnedObjectPath, SystemdError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("StopUnit {name} {mode}"));
            let mut units = self.units.lock().unwrap();
            let Some(at) = units.iter().position(|u| *u == name) else {
                return Err(SystemdError::NoSuchUnit(format!("Unit {name} not loaded.")));
            };
            units.remove(at);
            Ok(job())
        }

        fn set_unit_properties(
            &self,
            name: String,
            runtime: bool,
            properties: Vec<(String, OwnedValue)>,
        ) {
            self.calls.lock().unwrap().push(format!(
                "SetUnitProperties {name} runtime={runtime} {}",
                show(&properties)
            ));
        }
    }

    #[test]
    fn a_scope_is_started_updated_and_stopped_with_systemds_calls_on_a_bus_that_is_not_systemd() {
        let bus = match PrivateBus::start() {
            Ok(bus) => bus,
            Err(why) => {
                testkit::kernel::skipped(
                    "a_scope_is_started_updated_and_stopped_with_systemds_calls_on_a_bus_that_is_not_systemd",
                    &why,
                );
                return;
            }
        };
        let not_systemd = NotSystemd::default();
        let _service = zbus::blocking::connection::Builder::address(bus.address.as_str())
            .and_then(|b| b.name(DESTINATION))
            .and_then(|b| b.serve_at(PATH, not_systemd.clone()))
            .and_then(|b| b.build())
            .expect("serve the test service");
        let runtime = bus.connect();
        let request = ResourceRequest {
            memory_limit: Some(64 << 20),
            cpu_cap: Some(CpuCap::Count(1)),
            cpu_weight: Some(CpuWeight::WindowsShares(500)),
            pids_limit: Some(16),
            ..ResourceRequest::default()
        };
        let unit = "cri-containerd-abc.scope";
        let slice = "kubepods-besteffort-pod12.slice";
        start(
            &runtime,
            unit,
            &scope_properties(slice, 4242, Kind::V2, &request, 2),
        )
        .expect("StartTransientUnit");
        set_limits(&runtime, unit, &limit_properties(Kind::Hybrid, &request, 2))
            .expect("SetUnitProperties");
        stop(&runtime, unit).expect("StopUnit");
        stop(&runtime, unit).expect("a unit systemd no longer has is stopped already");

        let calls = not_systemd.calls.lock().unwrap().clone();
        let common = "Description:s=\"hostprocess container\" \
                      Slice:s=\"kubepods-besteffort-pod12.slice\" PIDs:au=[uint32 4242] \
                      Delegate:b=true DefaultDependencies:b=false MemoryAccounting:b=true \
                      CPUAccounting:b=true TasksAccounting:b=true";
        assert_eq!(
            calls,
            [
                format!(
                    "StartTransientUnit {unit} replace aux=0 {common} MemoryMax:t=uint64 67108864 \
                     CPUQuotaPerSecUSec:t=uint64 1000000 CPUWeight:t=uint64 500 \
                     TasksMax:t=uint64 16"
                ),
                format!(
                    "SetUnitProperties {unit} runtime=true MemoryLimit:t=uint64 67108864 \
                     CPUQuotaPerSecUSec:t=uint64 1000000 \
                     CPUShares:t=uint64 {} TasksMax:t=uint64 16",
                    cpu_shares(CpuWeight::WindowsShares(500))
                ),
                format!("StopUnit {unit} replace"),
                format!("StopUnit {unit} replace"),
            ]
        );
    }
}
