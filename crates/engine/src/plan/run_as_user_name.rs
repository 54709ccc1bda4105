//! The syntax rules the apiserver applies to a Windows-form account name
//! (`windowsOptions.runAsUserName`), with its messages.
//!
//! Like the apiserver, an empty name, a control character or a second backslash stop the check
//! at once; the domain and user rules after that are all reported together.

/// Longest domain, exclusive, in bytes.
const DOMAIN_LIMIT: usize = 256;
/// Longest user name, inclusive, in bytes.
const USER_LIMIT: usize = 104;
/// Characters a NetBIOS domain name cannot contain.
const NETBIOS_FORBIDDEN: &[char] = &['\\', '/', ':', '*', '?', '"', '<', '>', '|'];
/// Characters a user name cannot contain.
const USER_FORBIDDEN: &[char] = &[
    '"', '/', '\\', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@', '[', ']',
];

/// One broken `runAsUserName` rule; `Display` is the apiserver's message, word for word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAsUserNameError {
    Empty,
    ControlCharacters,
    MoreThanOneBackslash,
    DomainTooLong,
    DomainFormat,
    UserEmpty,
    UserTooLong,
    UserOnlyPeriodsOrSpaces,
    UserForbiddenCharacters,
}

impl std::fmt::Display for RunAsUserNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RunAsUserNameError {}

impl RunAsUserNameError {
    /// The apiserver's message.
    pub fn message(self) -> &'static str {
        match self {
            RunAsUserNameError::Empty => "runAsUserName cannot be an empty string",
            RunAsUserNameError::ControlCharacters => {
                "runAsUserName cannot contain control characters"
            }
            RunAsUserNameError::MoreThanOneBackslash => {
                "runAsUserName cannot contain more than one backslash"
            }
            RunAsUserNameError::DomainTooLong => {
                "runAsUserName's Domain length must be under 256 characters"
            }
            RunAsUserNameError::DomainFormat => {
                "runAsUserName's Domain doesn't match the NetBios nor the DNS format"
            }
            RunAsUserNameError::UserEmpty => "runAsUserName's User cannot be empty",
            RunAsUserNameError::UserTooLong => {
                "runAsUserName's User length must not be longer than 104 characters"
            }
            RunAsUserNameError::UserOnlyPeriodsOrSpaces => {
                "runAsUserName's User cannot contain only periods or spaces"
            }
            RunAsUserNameError::UserForbiddenCharacters => {
                "runAsUserName's User cannot contain the following characters: \"/\\:;|=,+*?<>@[]"
            }
        }
    }
}

/// Every rule `name` breaks, in the apiserver's order; empty when the name is acceptable.
pub fn run_as_user_name_errors(name: &str) -> Vec<RunAsUserNameError> {
    use RunAsUserNameError::*;

    if name.is_empty() {
        return vec![Empty];
    }
    // POSIX [[:cntrl:]]: ASCII only.
    if name.chars().any(|c| c.is_ascii_control()) {
        return vec![ControlCharacters];
    }
    if name.matches('\\').count() > 1 {
        return vec![MoreThanOneBackslash];
    }

    let mut errors = Vec::new();
    let user = match name.split_once('\\') {
        Some((domain, user)) => {
            if domain.len() >= DOMAIN_LIMIT {
                errors.push(DomainTooLong);
            }
            if !is_netbios_domain(domain) && !is_dns_domain(domain) {
                errors.push(DomainFormat);
            }
            user
        }
        None => name,
    };
    if user.is_empty() {
        errors.push(UserEmpty);
    } else if user.len() > USER_LIMIT {
        errors.push(UserTooLong);
    }
    if !user.is_empty() && user.chars().all(|c| c == '.' || c == ' ') {
        errors.push(UserOnlyPeriodsOrSpaces);
    }
    if user.contains(USER_FORBIDDEN) {
        errors.push(UserForbiddenCharacters);
    }
    errors
}

/// NetBIOS form: 1 to 15 characters, none of `\/:*?"<>|`, and not starting with a period.
/// Spaces are allowed, which is why `NT AUTHORITY` passes.
fn is_netbios_domain(domain: &str) -> bool {
    let mut chars = domain.chars();
    match chars.next() {
        Some(first) if first != '.' && !NETBIOS_FORBIDDEN.contains(&first) => {}
        _ => return false,
    }
    let mut rest = 0;
    for c in chars {
        if NETBIOS_FORBIDDEN.contains(&c) {
            return false;
        }
        rest += 1;
    }
    rest <= 14
}

/// DNS form (RFC 1123 subdomain, either case): dot-separated labels of 1 to 63 ASCII letters,
/// digits and hyphens that start and end with a letter or digit. No limit on the total length
/// beyond the domain length rule.
fn is_dns_domain(domain: &str) -> bool {
    domain.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                bytes.len() <= 63
                    && first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::RunAsUserNameError::*;
    use super::*;

    #[test]
    fn the_documented_accounts_and_local_groups_are_accepted() {
        for name in [
            r"NT AUTHORITY\SYSTEM",
            r"NT AUTHORITY\Local service",
            r"NT AUTHORITY\NetworkService",
            r"NT AUTHORITY\LOCAL SERVICE",
            "hpc-localgroup",
            r"corp.example.com\svc-agent",
            r"WORKGROUP\user name",
        ] {
            assert_eq!(run_as_user_name_errors(name), vec![], "{name}");
        }
    }

    #[test]
    fn empty_control_and_backslash_rules_stop_the_check() {
        assert_eq!(run_as_user_name_errors(""), vec![Empty]);
        assert_eq!(run_as_user_name_errors("a\tb@c"), vec![ControlCharacters]);
        assert_eq!(run_as_user_name_errors("a\u{7f}"), vec![ControlCharacters]);
        assert_eq!(
            run_as_user_name_errors(r"a\b\c@"),
            vec![MoreThanOneBackslash]
        );
    }

    #[test]
    fn non_ascii_control_characters_are_not_control_characters_here() {
        // Go's [[:cntrl:]] is ASCII only.
        assert_eq!(run_as_user_name_errors("user\u{85}"), vec![]);
    }

    #[test]
    fn domain_rules_accept_netbios_with_spaces_and_dns_with_long_total_length() {
        assert_eq!(run_as_user_name_errors(r"ABCDEFGHIJKLMNO\u"), vec![]); // 15 chars
        assert_eq!(
            run_as_user_name_errors(r"ABCDEFGHIJKLMNOP\u"), // 16 chars: DNS form saves it
            vec![]
        );
        assert_eq!(
            run_as_user_name_errors(r"ABCDEFGHIJKLMNO P\u"),
            vec![DomainFormat]
        );
        assert_eq!(run_as_user_name_errors(r".hidden\u"), vec![DomainFormat]);
        // So the apiserver refuses the `.\user` form of a local account.
        assert_eq!(run_as_user_name_errors(r".\user"), vec![DomainFormat]);
        assert_eq!(run_as_user_name_errors(r"bad/domain\u"), vec![DomainFormat]);
        assert_eq!(run_as_user_name_errors(r"-corp\u"), vec![]); // NetBIOS allows it
        assert_eq!(
            run_as_user_name_errors(r"-corp.example.com\u"),
            vec![DomainFormat]
        );
        let label = "a".repeat(63);
        let dns = [label.as_str(); 4].join(".") + ".b"; // 257 bytes, every label valid
        assert_eq!(
            run_as_user_name_errors(&format!(r"{dns}\u")),
            vec![DomainTooLong]
        );
        let dns = [label.as_str(); 4].join("."); // 255 bytes
        assert_eq!(run_as_user_name_errors(&format!(r"{dns}\u")), vec![]);
    }

    #[test]
    fn domain_and_user_rules_are_all_reported_together() {
        assert_eq!(run_as_user_name_errors("\\"), vec![DomainFormat, UserEmpty]);
        assert_eq!(
            run_as_user_name_errors(r"a:b\@"),
            vec![DomainFormat, UserForbiddenCharacters]
        );
    }

    #[test]
    fn user_rules_count_bytes_and_reject_only_periods_or_spaces() {
        assert_eq!(run_as_user_name_errors(&"u".repeat(104)), vec![]);
        assert_eq!(run_as_user_name_errors(&"u".repeat(105)), vec![UserTooLong]);
        assert_eq!(run_as_user_name_errors(&"é".repeat(53)), vec![UserTooLong]);
        assert_eq!(run_as_user_name_errors(r"NT AUTHORITY\"), vec![UserEmpty]);
        assert_eq!(
            run_as_user_name_errors(". ."),
            vec![UserOnlyPeriodsOrSpaces]
        );
        assert_eq!(run_as_user_name_errors("a.b c"), vec![]);
        for c in USER_FORBIDDEN.iter().filter(|c| **c != '\\') {
            assert_eq!(
                run_as_user_name_errors(&format!("us{c}er")),
                vec![UserForbiddenCharacters],
                "{c}"
            );
        }
    }

    #[test]
    fn messages_are_the_apiservers() {
        assert_eq!(
            UserForbiddenCharacters.to_string(),
            r#"runAsUserName's User cannot contain the following characters: "/\:;|=,+*?<>@[]"#
        );
        assert_eq!(
            DomainFormat.to_string(),
            "runAsUserName's Domain doesn't match the NetBios nor the DNS format"
        );
    }
}
