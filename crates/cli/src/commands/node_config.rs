//! The edits `node install` makes to containerd's configuration, and their exact undoing.
//!
//! The runtime handler goes into a drop-in file that the config imports, or, for a version 2
//! config that has a CRI plugin table of its own, into a marked block at the end of the config:
//! containerd 1.6 and 1.7 replace a plugin's whole table with an imported one, so a drop-in
//! would drop the operator's CRI settings there (2.x merges them). Every edit is marked, so
//! uninstall removes exactly what install added and keeps every other byte, including edits the
//! operator made in between. Pure text in, text out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The CRI runtime handler name (a RuntimeClass's `handler`).
pub const HANDLER: &str = "hostprocess";
/// The shipped handler configurations, installed as they are.
pub const SHIPPED_V2: &str = include_str!("../../../../deploy/containerd-hostprocess.toml");
pub const SHIPPED_V3: &str = include_str!("../../../../deploy/containerd-hostprocess-v3.toml");
const DROP_IN_NAME: &str = "hostprocess.toml";
const IMPORTS_COMMENT: &str =
    "# imports added by `hostprocess node install`; `hostprocess node uninstall` removes them.";
const CREATED_COMMENT: &str =
    "# Written by `hostprocess node install`; `hostprocess node uninstall` removes it.";
const BLOCK_BEGIN: &str = "# BEGIN hostprocess: written by `hostprocess node install`; `hostprocess node uninstall` removes it.";
const BLOCK_END: &str = "# END hostprocess";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigVersion {
    /// containerd 1.6 and 1.7.
    V2,
    /// containerd 2.x.
    V3,
}

impl ConfigVersion {
    pub fn from_number(number: i64) -> Result<ConfigVersion> {
        match number {
            2 => Ok(ConfigVersion::V2),
            3 => Ok(ConfigVersion::V3),
            other => bail!(
                "containerd config version {other} is not supported: use version 2 (containerd 1.6/1.7) or 3 (2.x)"
            ),
        }
    }

    /// The version containerd `1.x` (2) or `2.x` and later (3) reads natively.
    pub fn for_containerd(version: &str) -> ConfigVersion {
        if version.starts_with("1.") {
            ConfigVersion::V2
        } else {
            ConfigVersion::V3
        }
    }

    pub fn number(self) -> u8 {
        match self {
            ConfigVersion::V2 => 2,
            ConfigVersion::V3 => 3,
        }
    }

    /// The plugin that holds CRI runtimes in this version.
    pub fn runtime_plugin(self) -> &'static str {
        match self {
            ConfigVersion::V2 => "io.containerd.grpc.v1.cri",
            ConfigVersion::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    fn shipped(self) -> &'static str {
        match self {
            ConfigVersion::V2 => SHIPPED_V2,
            ConfigVersion::V3 => SHIPPED_V3,
        }
    }
}

fn parse(text: &str) -> Result<toml_edit::Document<&str>> {
    toml_edit::Document::parse(text).context("not valid TOML")
}

/// The config's top-level `version`, if it declares one.
pub fn declared_version(text: &str) -> Result<Option<i64>> {
    let doc = parse(text)?;
    Ok(doc.get("version").and_then(|v| v.as_integer()))
}

/// Where install keeps the config as it was before its first change.
pub fn backup_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".hostprocess-backup");
    PathBuf::from(name)
}

/// The drop-in files install may write in `dir`.
pub fn drop_in_paths(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join(DROP_IN_NAME)]
}

/// Whether a drop-in holds the hostprocess runtime handler and nothing else (what install of
/// this or any release wrote, so uninstall may remove it).
pub fn is_our_drop_in(text: &str) -> bool {
    let Ok(doc) = parse(text) else {
        return false;
    };
    let top = doc.as_table();
    if top
        .iter()
        .any(|(key, _)| key != "version" && key != "plugins")
    {
        return false;
    }
    [ConfigVersion::V2, ConfigVersion::V3]
        .iter()
        .any(|version| {
            let plugin = only(top.get("plugins"), version.runtime_plugin());
            let runtimes = only(only(plugin, "containerd"), "runtimes");
            only(runtimes, HANDLER).is_some()
        })
}

/// The item under `key` of a table that has no other key.
fn only<'a>(item: Option<&'a toml_edit::Item>, key: &str) -> Option<&'a toml_edit::Item> {
    let table = item?.as_table_like()?;
    if table.len() == 1 {
        table.get(key)
    } else {
        None
    }
}

/// Where the marked block install appended (this or any release's) is in a config.
fn block_range(text: &str) -> Option<std::ops::Range<usize>> {
    let begin = format!("\n{BLOCK_BEGIN}\n");
    let end = format!("\n{BLOCK_END}\n");
    let start = text.find(&begin)?;
    let stop = start + 1 + text[start + 1..].find(&end)? + end.len();
    Some(start..stop)
}

/// What install changes: a drop-in to write, the config's new text, and what changed in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InstallPlan {
    pub drop_in: Option<(PathBuf, String)>,
    pub config: Option<String>,
    pub changes: Vec<String>,
}

/// Plans the registration of the handler for a config (`None`: there is none yet).
pub fn plan_install(
    original: Option<&str>,
    version: ConfigVersion,
    drop_in_dir: &Path,
) -> Result<InstallPlan> {
    let created = format!("{CREATED_COMMENT}\nversion = {}\n", version.number());
    let text = original.unwrap_or(&created);
    let mut plan = InstallPlan::default();
    if original.is_none() {
        plan.changes
            .push(format!("create it (config version {})", version.number()));
    }
    if let Some(range) = block_range(text) {
        // Installed inline before: bring the block to this release's.
        let block = inline_block();
        if text[range.clone()] != block {
            let mut config = text.to_string();
            config.replace_range(range, &block);
            plan.config = Some(config);
            plan.changes.push(format!(
                "update the runtime handler \"{HANDLER}\" it appended"
            ));
        }
        return Ok(plan);
    }
    let doc = parse(text)?;
    let plugins = doc.get("plugins").and_then(|p| p.as_table_like());
    let plugin = |name: &str| {
        plugins
            .and_then(|p| p.get(name))
            .and_then(|p| p.as_table_like())
    };
    for name in [
        ConfigVersion::V2.runtime_plugin(),
        ConfigVersion::V3.runtime_plugin(),
    ] {
        let registered = plugin(name)
            .and_then(|p| p.get("containerd"))
            .and_then(|c| c.as_table_like())
            .and_then(|c| c.get("runtimes"))
            .and_then(|r| r.as_table_like())
            .is_some_and(|r| r.contains_key(HANDLER));
        if registered {
            bail!(
                "it already registers a runtime handler \"{HANDLER}\" under plugins.\"{name}\"; remove that table (or keep it and skip install)"
            );
        }
    }
    if doc.get("version").is_none() && plugin("cri").is_some() {
        bail!(
            "it is a version 1 config (a plugins.cri table and no `version`): rewrite it as version 2 first (`containerd config dump` prints it so)"
        );
    }
    let mut config = text.to_string();
    if version == ConfigVersion::V2 && plugin(ConfigVersion::V2.runtime_plugin()).is_some() {
        config.push_str(&inline_block());
        plan.changes.push(format!(
            "append the runtime handler \"{HANDLER}\" between '{BLOCK_END}'-marked lines (a drop-in would replace its CRI plugin table in containerd 1.6/1.7)"
        ));
    } else {
        let drop_in = drop_in_dir.join(DROP_IN_NAME);
        let entry = import_entry(drop_in_dir)?;
        let imports: Vec<&str> = doc
            .get("imports")
            .and_then(|i| i.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let path = drop_in.to_string_lossy();
        if !imports.iter().any(|pattern| glob_matches(pattern, &path)) {
            config = add_import(&config, &doc, &entry)?;
            plan.changes.push(format!("import \"{entry}\""));
        }
        plan.drop_in = Some((drop_in, version.shipped().to_string()));
    }
    if config != text || original.is_none() {
        plan.config = Some(config);
    }
    Ok(plan)
}

/// What uninstall does to the config.
#[derive(Debug, PartialEq, Eq)]
pub enum Uninstall {
    Unchanged,
    Rewrite {
        config: String,
        changes: Vec<String>,
    },
    /// Install created the config and nothing else is in it.
    Remove,
}

pub fn plan_uninstall(original: Option<&str>, drop_in_dir: &Path) -> Uninstall {
    let Some(text) = original else {
        return Uninstall::Unchanged;
    };
    let mut config = text.to_string();
    let mut changes = Vec::new();
    if let Some(range) = block_range(&config) {
        config.replace_range(range, "");
        changes.push(format!(
            "remove the runtime handler \"{HANDLER}\" it appended"
        ));
    }
    if let Ok(entry) = import_entry(drop_in_dir) {
        if let Some(without) = remove_import(&config, &entry) {
            config = without;
            changes.push(format!("remove the import \"{entry}\""));
        }
    }
    if changes.is_empty() {
        return Uninstall::Unchanged;
    }
    for version in [ConfigVersion::V2, ConfigVersion::V3] {
        if config == format!("{CREATED_COMMENT}\nversion = {}\n", version.number()) {
            return Uninstall::Remove;
        }
    }
    Uninstall::Rewrite { config, changes }
}

/// The handler's tables of the shipped version 2 file, between markers.
fn inline_block() -> String {
    let tables: Vec<&str> = SHIPPED_V2
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("version"))
        .skip(1)
        .collect();
    format!(
        "\n{BLOCK_BEGIN}\n{}\n{BLOCK_END}\n",
        tables.join("\n").trim_matches('\n')
    )
}

/// The import pattern covering the drop-ins of `dir`.
fn import_entry(dir: &Path) -> Result<String> {
    let entry = format!("{}/*.toml", dir.display());
    if entry.contains(['"', '\\', '\n']) {
        bail!(
            "the drop-in directory '{}' has a quote, backslash or newline in its name",
            dir.display()
        );
    }
    Ok(entry)
}

/// The comment install appends to an `imports` line it extended.
fn import_marker(entry: &str) -> String {
    format!(" # \"{entry}\" added by `hostprocess node install`")
}

/// Adds `entry` to the config's `imports` (a new marked line after `version`, or the entry
/// appended to a one-line array and the line marked).
fn add_import(text: &str, doc: &toml_edit::Document<&str>, entry: &str) -> Result<String> {
    let mut config = text.to_string();
    let Some(imports) = doc.get("imports") else {
        let lines = format!("{IMPORTS_COMMENT}\nimports = [\"{entry}\"]\n");
        let at = version_line_end(text).unwrap_or(0);
        config.insert_str(at, &lines);
        return Ok(config);
    };
    let (Some(array), Some(span)) = (
        imports.as_array(),
        imports.as_value().and_then(|v| v.span()),
    ) else {
        bail!("its `imports` is not an array");
    };
    let close = span.end.saturating_sub(1);
    let value = &text[span.clone()];
    if value.contains('\n') || array.trailing_comma() || text.as_bytes().get(close) != Some(&b']') {
        bail!(
            "its `imports` spans several lines or ends with a comma: add \"{entry}\" to it by hand and run install again"
        );
    }
    let item = if array.is_empty() {
        format!("\"{entry}\"")
    } else {
        format!(", \"{entry}\"")
    };
    let line_end = text[close..].find('\n').map_or(text.len(), |i| close + i);
    config.insert_str(line_end, &import_marker(entry));
    config.insert_str(close, &item);
    Ok(config)
}

/// Undoes [`add_import`]; `None` when the config has no import install added.
fn remove_import(text: &str, entry: &str) -> Option<String> {
    let lines = format!("{IMPORTS_COMMENT}\nimports = [\"{entry}\"]\n");
    if let Some(start) = text.find(&lines) {
        let mut config = text.to_string();
        config.replace_range(start..start + lines.len(), "");
        return Some(config);
    }
    let marker = import_marker(entry);
    let at = text.match_indices(&marker).map(|(i, _)| i).find(|&i| {
        let after = &text[i + marker.len()..];
        after.is_empty() || after.starts_with('\n')
    })?;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..at];
    let restored = [format!(", \"{entry}\"]"), format!("\"{entry}\"]")]
        .iter()
        .find_map(|added| {
            let i = line.rfind(added.as_str())?;
            Some(format!("{}]{}", &line[..i], &line[i + added.len()..]))
        })?;
    Some(format!(
        "{}{restored}{}",
        &text[..line_start],
        &text[at + marker.len()..]
    ))
}

/// The byte offset just past the top-level `version = N` line, when it ends with a newline.
fn version_line_end(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            return None;
        }
        let is_version = trimmed
            .strip_prefix("version")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        offset += line.len();
        if is_version {
            return line.ends_with('\n').then_some(offset);
        }
    }
    None
}

/// Whether a containerd import pattern (a path with `*` wildcards) names `path`.
fn glob_matches(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last {
            return rest.ends_with(part) && !rest[..rest.len() - part.len()].contains('/');
        }
        match rest.find(part) {
            Some(at) if !rest[..at].contains('/') => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/etc/containerd/conf.d";

    fn install(original: Option<&str>, version: ConfigVersion) -> InstallPlan {
        plan_install(original, version, Path::new(DIR)).unwrap()
    }

    fn round_trip(original: &str, version: ConfigVersion) -> String {
        let plan = install(Some(original), version);
        let installed = plan.config.unwrap_or_else(|| original.to_string());
        match plan_uninstall(Some(&installed), Path::new(DIR)) {
            Uninstall::Rewrite { config, .. } => config,
            Uninstall::Unchanged => installed,
            Uninstall::Remove => panic!("uninstall removed a config install did not create"),
        }
    }

    #[test]
    fn a_version_3_config_gets_a_drop_in_and_an_import_line_after_version() {
        let original = "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"x\"\n";
        let plan = install(Some(original), ConfigVersion::V3);
        let config = plan.config.unwrap();
        assert_eq!(
            config,
            format!("version = 3\n{IMPORTS_COMMENT}\nimports = [\"{DIR}/*.toml\"]\n\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"x\"\n")
        );
        let (path, contents) = plan.drop_in.unwrap();
        assert_eq!(path, Path::new(DIR).join("hostprocess.toml"));
        assert_eq!(contents, SHIPPED_V3);
        assert_eq!(round_trip(original, ConfigVersion::V3), original);
    }

    #[test]
    fn an_existing_imports_array_gains_the_entry_and_loses_it_again() {
        for original in [
            "version = 3\nimports = [\"/opt/a.toml\"]\n",
            "version = 3\nimports = []   # operator's\n",
            "imports = [ '/x/*.toml' ]\nversion = 3",
        ] {
            let config = install(Some(original), ConfigVersion::V3).config.unwrap();
            let doc = parse(&config).unwrap();
            let imports: Vec<&str> = doc["imports"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            assert!(
                imports.contains(&"/etc/containerd/conf.d/*.toml"),
                "{config}"
            );
            assert_eq!(round_trip(original, ConfigVersion::V3), original);
        }
    }

    #[test]
    fn an_import_that_already_covers_the_drop_in_is_left_alone() {
        let original = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
        let plan = install(Some(original), ConfigVersion::V2);
        assert_eq!(plan.config, None);
        assert!(plan.drop_in.is_some());
    }

    #[test]
    fn a_version_2_config_with_a_cri_table_gets_an_inline_block_not_a_drop_in() {
        let original =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"p\"";
        let plan = install(Some(original), ConfigVersion::V2);
        assert_eq!(plan.drop_in, None);
        let config = plan.config.unwrap();
        let doc = parse(&config).unwrap();
        let runtime =
            &doc["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"][HANDLER];
        assert_eq!(
            runtime["runtime_type"].as_str(),
            Some("io.containerd.hostprocess.v1")
        );
        assert_eq!(
            doc["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(),
            Some("p")
        );
        assert_eq!(round_trip(original, ConfigVersion::V2), original);
        // Installing again changes nothing.
        assert_eq!(
            install(Some(&config), ConfigVersion::V2),
            InstallPlan::default()
        );
    }

    #[test]
    fn another_releases_block_is_updated_by_install_and_removed_by_uninstall() {
        let original = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n";
        let older = format!(
            "{original}\n{BLOCK_BEGIN}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostprocess]\n  runtime_type = \"io.containerd.hostprocess.v1\"\n{BLOCK_END}\n"
        );
        let updated = install(Some(&older), ConfigVersion::V2).config.unwrap();
        assert_eq!(updated, format!("{original}{}", inline_block()));
        let Uninstall::Rewrite { config, .. } = plan_uninstall(Some(&older), Path::new(DIR)) else {
            panic!("uninstall left another release's block");
        };
        assert_eq!(config, original);
    }

    #[test]
    fn a_drop_in_is_ours_when_it_holds_only_the_handler() {
        assert!(is_our_drop_in(SHIPPED_V2));
        assert!(is_our_drop_in(SHIPPED_V3));
        let edited = SHIPPED_V3.replace("\"hostprocess.io/*\", ", "");
        assert!(is_our_drop_in(&edited));
        let more = format!(
            "{SHIPPED_V3}\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.other]\n"
        );
        assert!(!is_our_drop_in(&more));
        assert!(!is_our_drop_in(&format!(
            "{SHIPPED_V3}\n[debug]\n  level = \"info\"\n"
        )));
    }

    #[test]
    fn edits_made_after_install_survive_uninstall() {
        let original = "version = 3\n";
        let installed = install(Some(original), ConfigVersion::V3).config.unwrap();
        let edited = format!("{installed}[debug]\n  level = \"debug\"\n");
        let Uninstall::Rewrite { config, .. } = plan_uninstall(Some(&edited), Path::new(DIR))
        else {
            panic!("uninstall changed nothing");
        };
        assert_eq!(config, "version = 3\n[debug]\n  level = \"debug\"\n");
    }

    #[test]
    fn a_missing_config_is_created_and_removed_again() {
        let plan = install(None, ConfigVersion::V3);
        let config = plan.config.unwrap();
        assert_eq!(declared_version(&config).unwrap(), Some(3));
        assert_eq!(
            plan_uninstall(Some(&config), Path::new(DIR)),
            Uninstall::Remove
        );
    }

    #[test]
    fn a_handler_registered_by_hand_is_refused() {
        let original = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hostprocess]\n  runtime_type = \"x\"\n";
        let err = plan_install(Some(original), ConfigVersion::V2, Path::new(DIR)).unwrap_err();
        assert!(err.to_string().contains("already registers"), "{err}");
    }

    #[test]
    fn a_version_1_config_is_refused() {
        let original = "[plugins.cri]\n  sandbox_image = \"p\"\n";
        let err = plan_install(Some(original), ConfigVersion::V2, Path::new(DIR)).unwrap_err();
        assert!(err.to_string().contains("version 1"), "{err}");
    }

    #[test]
    fn a_multi_line_imports_array_is_left_to_the_operator() {
        let original = "version = 3\nimports = [\n  \"/a.toml\",\n]\n";
        let err = plan_install(Some(original), ConfigVersion::V3, Path::new(DIR)).unwrap_err();
        assert!(err.to_string().contains("by hand"), "{err}");
    }

    #[test]
    fn import_patterns_match_like_containerds_globs() {
        assert!(glob_matches(
            "/etc/containerd/conf.d/*.toml",
            "/etc/containerd/conf.d/hostprocess.toml"
        ));
        assert!(glob_matches(
            "/etc/containerd/conf.d/*",
            "/etc/containerd/conf.d/hostprocess.toml"
        ));
        assert!(glob_matches("/a/hostprocess.toml", "/a/hostprocess.toml"));
        assert!(!glob_matches(
            "/etc/*.toml",
            "/etc/containerd/conf.d/hostprocess.toml"
        ));
        assert!(!glob_matches(
            "/etc/containerd/conf.d/*.conf",
            "/etc/containerd/conf.d/hostprocess.toml"
        ));
    }

    #[test]
    fn the_config_version_follows_containerds() {
        assert_eq!(
            ConfigVersion::for_containerd("1.6.20~ds1"),
            ConfigVersion::V2
        );
        assert_eq!(
            ConfigVersion::for_containerd("1.7.24~ds1"),
            ConfigVersion::V2
        );
        assert_eq!(
            ConfigVersion::for_containerd("2.1.9+unknown"),
            ConfigVersion::V3
        );
        assert!(ConfigVersion::from_number(1).is_err());
    }
}
