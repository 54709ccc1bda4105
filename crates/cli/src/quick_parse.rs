//! The command lines a runtime is driven with (`create`, `start`, `run`, `state`, `kill`,
//! `delete` and their runc flags, as a runc shim or a script sends them) read without clap.
//! Building clap's command tree takes ~0.25 ms of every call, a tenth of a whole `run`; this
//! reads those lines in microseconds. Anything it is not sure of — help, version, an unknown,
//! repeated or clustered flag, a value that looks like a flag, a bad number — it leaves to clap,
//! which answers it or gives the error. A test checks the two read every line alike.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::commands::{create, delete, kill, run, start, state, BundleArgs, Command};
use crate::{Cli, LogFormat, DEFAULT_ROOT};

/// The command line read, or `None` when clap should read it.
pub fn cli(args: impl IntoIterator<Item = OsString>) -> Option<Cli> {
    let words: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect::<Option<_>>()?;
    let mut seen = Seen::default();
    let (verb, rest) = seen.read(&words, &[GLOBAL], true)?.split_first()?;
    seen.read(rest, verb_flags(verb)?, false)?;
    let command = seen.command(verb)?;
    Some(Cli {
        root: seen
            .path("root")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        log: seen.path("log"),
        log_format: match seen.value("log-format") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return None,
        },
        debug: seen.switch("debug"),
        systemd_cgroup: seen.switch("systemd-cgroup"),
        version: (),
        criu: seen.value("criu").map(String::from),
        rootless: match seen.value("rootless") {
            None => None,
            Some(value @ ("true" | "false" | "auto")) => Some(value.to_string()),
            Some(_) => return None,
        },
        command,
    })
}

#[derive(Clone, Copy)]
enum Takes {
    Nothing,
    Value,
}

struct Flag {
    long: &'static str,
    short: Option<char>,
    takes: Takes,
}

const fn switch(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        takes: Takes::Nothing,
    }
}

const fn valued(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        takes: Takes::Value,
    }
}

const GLOBAL: &[Flag] = &[
    valued("root", None),
    valued("log", None),
    valued("log-format", None),
    switch("debug", None),
    switch("systemd-cgroup", None),
    valued("criu", None),
    valued("rootless", None),
];

const BUNDLE: &[Flag] = &[
    valued("bundle", Some('b')),
    valued("pid-file", None),
    valued("console-socket", None),
    valued("preserve-fds", None),
    switch("no-pivot", None),
    switch("no-new-keyring", None),
];

const RUN: &[Flag] = &[switch("detach", Some('d')), switch("keep", None)];
const DELETE: &[Flag] = &[switch("force", Some('f'))];
const KILL: &[Flag] = &[switch("all", Some('a'))];

/// The flags a verb takes (global ones included: clap takes them after the verb too).
fn verb_flags(verb: &str) -> Option<&'static [&'static [Flag]]> {
    Some(match verb {
        "create" => &[GLOBAL, BUNDLE],
        "run" => &[GLOBAL, BUNDLE, RUN],
        "start" | "state" => &[GLOBAL],
        "delete" => &[GLOBAL, DELETE],
        "kill" => &[GLOBAL, KILL],
        _ => return None,
    })
}

#[derive(Default)]
struct Seen<'a> {
    flags: Vec<(&'static str, Option<&'a str>)>,
    positionals: Vec<&'a str>,
}

impl<'a> Seen<'a> {
    /// Takes the flags and positionals of `words`; `None` at the first thing to leave to clap.
    /// With `to_verb`, stops at the first positional (the verb) and returns it and the words
    /// after it.
    fn read(
        &mut self,
        words: &'a [String],
        tables: &[&'static [Flag]],
        to_verb: bool,
    ) -> Option<&'a [String]> {
        let mut at = 0;
        while let Some(word) = words.get(at) {
            at += 1;
            let (flag, inline) = if let Some(long) = word.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (long, None),
                };
                (find(tables, |f| f.long == name)?, inline)
            } else if let Some(short) = word.strip_prefix('-') {
                let mut chars = short.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return None;
                };
                (find(tables, |f| f.short == Some(c))?, None)
            } else if word.is_empty() {
                return None;
            } else if to_verb {
                return Some(&words[at - 1..]);
            } else {
                self.positionals.push(word);
                continue;
            };
            if self.flags.iter().any(|(long, _)| *long == flag.long) {
                return None;
            }
            let value = match (flag.takes, inline) {
                (Takes::Nothing, None) => None,
                (Takes::Nothing, Some(_)) => return None,
                (Takes::Value, Some(value)) => Some(value),
                (Takes::Value, None) => {
                    at += 1;
                    Some(words.get(at - 1)?.as_str())
                }
            };
            if value.is_some_and(|v| v.is_empty() || v.starts_with('-')) {
                return None;
            }
            self.flags.push((flag.long, value));
        }
        Some(&words[words.len()..])
    }

    fn switch(&self, long: &str) -> bool {
        self.flags.iter().any(|(name, _)| *name == long)
    }

    fn value(&self, long: &str) -> Option<&'a str> {
        self.flags
            .iter()
            .find(|(name, _)| *name == long)
            .and_then(|(_, value)| *value)
    }

    fn path(&self, long: &str) -> Option<PathBuf> {
        self.value(long).map(PathBuf::from)
    }

    /// The verb's arguments; `None` when the positionals do not fit it.
    fn command(&self, verb: &str) -> Option<Command> {
        let (id, rest) = self.positionals.split_first()?;
        let id = id.to_string();
        let only_id = rest.is_empty();
        Some(match verb {
            "create" if only_id => Command::Create(create::Args {
                bundle: self.bundle(id)?,
            }),
            "run" if only_id => Command::Run(run::Args {
                bundle: self.bundle(id)?,
                detach: self.switch("detach"),
                keep: self.switch("keep"),
            }),
            "start" if only_id => Command::Start(start::Args { id }),
            "state" if only_id => Command::State(state::Args { id }),
            "delete" if only_id => Command::Delete(delete::Args {
                id,
                force: self.switch("force"),
            }),
            "kill" if rest.len() <= 1 => Command::Kill(kill::Args {
                id,
                signal: rest.first().unwrap_or(&"SIGTERM").to_string(),
                all: self.switch("all"),
            }),
            _ => return None,
        })
    }

    fn bundle(&self, id: String) -> Option<BundleArgs> {
        Some(BundleArgs {
            id,
            bundle: self.path("bundle"),
            pid_file: self.path("pid-file"),
            console_socket: self.path("console-socket"),
            preserve_fds: match self.value("preserve-fds") {
                Some(n) => n.parse().ok()?,
                None => 0,
            },
            no_pivot: self.switch("no-pivot"),
            no_new_keyring: self.switch("no-new-keyring"),
        })
    }
}

fn find(tables: &[&'static [Flag]], matches: impl Fn(&Flag) -> bool) -> Option<&'static Flag> {
    tables.iter().flat_map(|t| t.iter()).find(|f| matches(f))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::arbitrary::Arbitrary;
    use proptest::strategy::Strategy;

    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        std::iter::once("hostprocess")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    /// The quick reading, checked against clap's: when it reads a line, clap reads it the same.
    fn quick(line: &str) -> Option<Cli> {
        let quick = cli(words(line));
        if let Some(quick) = &quick {
            match Cli::try_parse_from(words(line)) {
                Ok(clap) => assert_eq!(*quick, clap, "{line}"),
                Err(e) => panic!("{line}: read quickly, but clap refuses it: {e}"),
            }
        }
        quick
    }

    #[test]
    fn the_lines_a_runc_shim_sends_are_read_quickly() {
        for line in [
            "--root /run/containerd/runc/k8s.io --log /run/x/log.json --log-format json \
             create --bundle /run/b --pid-file /run/b/init.pid c1",
            "--root /r --log /l --log-format json --systemd-cgroup create -b /b \
             --console-socket /s/sock --pid-file /p --no-pivot c1",
            "--root /r --log /l --log-format json start c1",
            "--root /r --log /l --log-format json --criu /usr/sbin/criu --rootless=false \
             kill c1 9",
            "--rootless true --systemd-cgroup delete -f c1",
            "--root /r --log /l --log-format json kill c1 9",
            "--root /r --log /l --log-format json kill --all c1 SIGKILL",
            "--root /r --log /l --log-format json delete --force c1",
            "--root /r state c1",
            "--root /r run -b /b hp-bench",
            "run -d --pid-file /p --preserve-fds 2 --keep --no-new-keyring c1",
            "--debug run c1",
            "run c1 --root /r",
            "run c1 -b /b",
            "run --bundle=/b --root=/r c1",
            "--root=/r --log-format=json run c1",
            "--log-format text delete -f c1",
            "kill -a c1",
            "kill c1",
        ] {
            assert!(quick(line).is_some(), "{line} was left to clap");
        }
    }

    #[test]
    fn every_order_of_a_verbs_flags_reads_as_clap_reads_it() {
        let parts = [
            "--root /r",
            "-b /b",
            "--pid-file /p",
            "--console-socket /s",
            "--preserve-fds 3",
            "--no-pivot",
            "--no-new-keyring",
            "-d",
            "--keep",
            "c1",
        ];
        // A fixed walk through the orders (a small linear congruential sequence): the same
        // lines every run.
        let mut state: u64 = 7;
        for _ in 0..300 {
            let mut order: Vec<&str> = parts.to_vec();
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            let line = format!("run {}", order.join(" "));
            assert!(quick(&line).is_some(), "{line} was left to clap");
        }
    }

    #[test]
    fn what_it_is_not_sure_of_is_left_to_clap() {
        for line in [
            "",
            "--help",
            "-h",
            "--version",
            "-v",
            "--root /r -v",
            "run --help",
            "run",
            "run c1 c2",
            "kill c1 9 9",
            "run --bundle c1",
            "run --bundle= c1",
            "run --bundle -x c1",
            "run -b /b -b /c c1",
            "--root /a run --root /b c1",
            "run -dk c1",
            "run -b/b c1",
            "run --detach=true c1",
            "run --preserve-fds -1 c1",
            "run --preserve-fds many c1",
            "--log-format xml run c1",
            "--rootless=maybe run c1",
            "run --unknown c1",
            "--root run c1",
            "exec c1 ls",
            "list",
            "run -- c1",
            "run - c1",
            "--root=/r --log-format=xml run c1",
        ] {
            assert!(quick(line).is_none(), "{line:?} was read quickly");
        }
    }

    /// Flags (with their values) of the lines a runtime is driven with, and near misses.
    const UNITS: &[&[&str]] = &[
        &["--root", "/r"],
        &["--root=/r"],
        &["--log", "/l"],
        &["--log-format", "json"],
        &["--log-format=text"],
        &["--log-format", "xml"],
        &["--debug"],
        &["--systemd-cgroup"],
        &["-b", "/b"],
        &["--bundle", "/b"],
        &["--bundle=/b"],
        &["--pid-file", "/p"],
        &["--console-socket", "/s"],
        &["--preserve-fds", "2"],
        &["--preserve-fds", "-1"],
        &["--no-pivot"],
        &["--no-new-keyring"],
        &["-d"],
        &["--detach"],
        &["--keep"],
        &["-f"],
        &["--force"],
        &["-a"],
        &["--all"],
        &["-v"],
        &["--version"],
        &["-h"],
        &["--help"],
        &["-V"],
        &["--"],
        &["-"],
        &[""],
        &["-dk"],
        &["--detach=true"],
        &["9"],
        &["SIGKILL"],
        &["c2"],
        &["--criu", "/usr/sbin/criu"],
        &["--rootless=false"],
        &["--rootless", "auto"],
        &["--rootless", "maybe"],
    ];
    const VERBS: &[&str] = &[
        "create", "start", "run", "state", "kill", "delete", "exec", "list",
    ];

    /// A command line: global flags, a verb, then the verb's flags and the container id in
    /// any order, sometimes with a word that does not belong.
    fn command_line() -> impl Strategy<Value = Vec<String>> {
        let unit = || proptest::sample::select(UNITS);
        (
            proptest::collection::vec(unit(), 0..3),
            proptest::sample::select(VERBS),
            proptest::collection::vec(unit(), 0..5),
            proptest::sample::Index::arbitrary(),
            proptest::option::weighted(0.2, "[-=/a-z0-9]{0,6}"),
            proptest::sample::Index::arbitrary(),
        )
            .prop_map(|(before, verb, after, id_at, noise, noise_at)| {
                let mut words: Vec<String> =
                    before.concat().iter().map(|w| w.to_string()).collect();
                words.push(verb.to_string());
                let mut rest: Vec<String> = after.concat().iter().map(|w| w.to_string()).collect();
                rest.insert(id_at.index(rest.len() + 1), "c1".to_string());
                words.extend(rest);
                if let Some(noise) = noise {
                    words.insert(noise_at.index(words.len() + 1), noise);
                }
                words
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2048,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
            )),
            ..proptest::test_runner::Config::default()
        })]

        /// Any command line: the quick reader reads it as clap does, or leaves it to clap.
        #[test]
        fn any_line_reads_as_clap_reads_it_or_is_left_to_clap(words in command_line()) {
            let args: Vec<OsString> = std::iter::once("hostprocess".to_string())
                .chain(words)
                .map(OsString::from)
                .collect();
            if let Some(quick) = cli(args.clone()) {
                match Cli::try_parse_from(args.clone()) {
                    Ok(clap) => proptest::prop_assert_eq!(quick, clap, "{:?}", args),
                    Err(e) => proptest::prop_assert!(false, "{args:?}: read quickly, but clap refuses it: {e}"),
                }
            }
        }
    }

    #[test]
    fn a_word_that_is_not_utf8_is_left_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("hostprocess"),
            OsString::from("run"),
            OsString::from_vec(vec![b'c', 0xff]),
        ];
        assert!(cli(args).is_none());
    }
}
