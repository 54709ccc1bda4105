//! The Linux backend's decisions that are not system calls: how the host mounts cgroups and
//! where a job's directories go, the file writes each limit becomes, systemd's cgroup paths,
//! the mount table as typed entries, and the ordered actions that build a container's view.
//! Plain functions over plain data (the host's facts are passed in), compiled on every platform
//! so their unit tests run on any host without root; `sys::linux` reads the host and executes
//! what they decide.

pub mod cgroup;
pub mod mountinfo;
pub mod view;
