//! The process's resource limits (§3, Linux's `setrlimit(2)`): each a known limit, checked when
//! the container is planned, before anything is made.

use serde::{Deserialize, Deserializer, Serialize};

use super::process::CommandError;
use crate::spec;

/// A resource limit of the process (Linux's `setrlimit(2)`), checked when planned. Stored as
/// `[name, soft, hard]`, as the plan always kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "(String, u64, u64)", try_from = "(String, u64, u64)")]
pub struct Rlimit {
    pub kind: RlimitKind,
    pub soft: u64,
    pub hard: u64,
}

/// The limits `setrlimit(2)` knows, by their `RLIMIT_*` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RlimitKind {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl RlimitKind {
    pub const ALL: [RlimitKind; 16] = [
        RlimitKind::As,
        RlimitKind::Core,
        RlimitKind::Cpu,
        RlimitKind::Data,
        RlimitKind::Fsize,
        RlimitKind::Locks,
        RlimitKind::Memlock,
        RlimitKind::Msgqueue,
        RlimitKind::Nice,
        RlimitKind::Nofile,
        RlimitKind::Nproc,
        RlimitKind::Rss,
        RlimitKind::Rtprio,
        RlimitKind::Rttime,
        RlimitKind::Sigpending,
        RlimitKind::Stack,
    ];

    /// The name the spec gives it (`RLIMIT_NOFILE`).
    pub fn name(self) -> &'static str {
        match self {
            RlimitKind::As => "RLIMIT_AS",
            RlimitKind::Core => "RLIMIT_CORE",
            RlimitKind::Cpu => "RLIMIT_CPU",
            RlimitKind::Data => "RLIMIT_DATA",
            RlimitKind::Fsize => "RLIMIT_FSIZE",
            RlimitKind::Locks => "RLIMIT_LOCKS",
            RlimitKind::Memlock => "RLIMIT_MEMLOCK",
            RlimitKind::Msgqueue => "RLIMIT_MSGQUEUE",
            RlimitKind::Nice => "RLIMIT_NICE",
            RlimitKind::Nofile => "RLIMIT_NOFILE",
            RlimitKind::Nproc => "RLIMIT_NPROC",
            RlimitKind::Rss => "RLIMIT_RSS",
            RlimitKind::Rtprio => "RLIMIT_RTPRIO",
            RlimitKind::Rttime => "RLIMIT_RTTIME",
            RlimitKind::Sigpending => "RLIMIT_SIGPENDING",
            RlimitKind::Stack => "RLIMIT_STACK",
        }
    }

    pub fn from_name(name: &str) -> Option<RlimitKind> {
        RlimitKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl From<Rlimit> for (String, u64, u64) {
    fn from(limit: Rlimit) -> Self {
        (limit.kind.name().to_string(), limit.soft, limit.hard)
    }
}

impl TryFrom<(String, u64, u64)> for Rlimit {
    type Error = CommandError;

    fn try_from((name, soft, hard): (String, u64, u64)) -> Result<Self, Self::Error> {
        match RlimitKind::from_name(&name) {
            Some(kind) => Ok(Rlimit { kind, soft, hard }),
            None => Err(CommandError::UnknownRlimit { name }),
        }
    }
}

/// The spec's limits, each a known one. They apply on Linux only: a Windows plan has none,
/// whatever the spec names (a Windows plan stored by an earlier release may hold any name,
/// and still loads).
pub(super) fn planned_rlimits(limits: &[spec::Rlimit]) -> Result<Vec<Rlimit>, CommandError> {
    if cfg!(windows) {
        if !limits.is_empty() {
            log::debug!("process.rlimits do not apply to a Windows HostProcess container");
        }
        return Ok(Vec::new());
    }
    limits
        .iter()
        .map(|spec::Rlimit { kind, hard, soft }| Rlimit::try_from((kind.clone(), *soft, *hard)))
        .collect()
}

pub(super) fn stored_rlimits<'de, D: Deserializer<'de>>(
    stored: D,
) -> Result<Vec<Rlimit>, D::Error> {
    let limits = Vec::<(String, u64, u64)>::deserialize(stored)?;
    if cfg!(windows) {
        return Ok(Vec::new());
    }
    limits
        .into_iter()
        .map(|limit| Rlimit::try_from(limit).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::process::ProcessPlan;

    /// A plan stored before limits were typed: `[name, soft, hard]` per limit.
    fn stored_plan(rlimits: &str) -> String {
        format!(
            r#"{{"args": ["/bin/true"], "env": [], "cwd": "/hpc", "terminal": false,
                "console_size": null, "rlimits": {rlimits}, "no_new_privileges": false}}"#
        )
    }

    #[test]
    fn a_plan_stored_with_limits_as_name_soft_hard_loads_and_is_stored_the_same_way() {
        let stored = stored_plan(r#"[["RLIMIT_NOFILE", 1024, 4096], ["RLIMIT_STACK", 8, 9]]"#);
        let plan: ProcessPlan = serde_json::from_str(&stored).unwrap();
        let expected = if cfg!(windows) {
            Vec::new()
        } else {
            vec![
                Rlimit {
                    kind: RlimitKind::Nofile,
                    soft: 1024,
                    hard: 4096,
                },
                Rlimit {
                    kind: RlimitKind::Stack,
                    soft: 8,
                    hard: 9,
                },
            ]
        };
        assert_eq!(plan.rlimits, expected);
        let again = serde_json::to_value(&plan).unwrap();
        if !cfg!(windows) {
            assert_eq!(
                again["rlimits"],
                serde_json::json!([["RLIMIT_NOFILE", 1024, 4096], ["RLIMIT_STACK", 8, 9]])
            );
        }
    }

    #[test]
    fn a_stored_plan_with_an_unknown_limit_is_refused_on_linux_and_loads_on_windows() {
        let loaded =
            serde_json::from_str::<ProcessPlan>(&stored_plan(r#"[["RLIMIT_BOGUS", 1, 1]]"#));
        if cfg!(windows) {
            assert_eq!(loaded.unwrap().rlimits, Vec::new());
        } else {
            let error = loaded.unwrap_err().to_string();
            assert!(error.contains("unknown limit \"RLIMIT_BOGUS\""), "{error}");
        }
    }

    #[test]
    fn every_limit_is_known_by_its_name() {
        for kind in RlimitKind::ALL {
            assert_eq!(RlimitKind::from_name(kind.name()), Some(kind));
            assert!(kind.name().starts_with("RLIMIT_"), "{kind:?}");
        }
        assert_eq!(RlimitKind::from_name("rlimit_nofile"), None);
        assert_eq!(RlimitKind::from_name("RLIMIT_BOGUS"), None);
    }
}
