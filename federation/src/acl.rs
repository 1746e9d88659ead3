//! Which servers may take part: glob patterns of server names, as room
//! server ACLs (`m.room.server_acl`) and the server's allow and deny lists
//! write them.

use std::net::IpAddr;

use serde_json::Value;

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters and `?` for one (case-insensitively, as server names are).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let name: Vec<char> = name.to_lowercase().chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The host of a server name, without its port (and IPv6 brackets).
pub fn host_of(server_name: &str) -> &str {
    if let Some(rest) = server_name.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    server_name
        .rsplit_once(':')
        .map_or(server_name, |(host, _)| host)
}

/// Whether a room's `m.room.server_acl` content lets `server_name` take
/// part, per the spec: IP literals only if allowed, a matching `deny`
/// refuses, and only servers matching some `allow` are let in.
pub fn server_acl_allows(content: &Value, server_name: &str) -> bool {
    let host = host_of(server_name);
    let patterns = |field: &str| -> Vec<&str> {
        content[field]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let allow_ip_literals = content["allow_ip_literals"].as_bool().unwrap_or(true);
    if !allow_ip_literals && host.parse::<IpAddr>().is_ok() {
        return false;
    }
    if patterns("deny").iter().any(|p| glob_matches(p, host)) {
        return false;
    }
    patterns("allow").iter().any(|p| glob_matches(p, host))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(glob_matches("*", "example.org"));
        assert!(glob_matches("*.example.org", "chat.example.org"));
        assert!(!glob_matches("*.example.org", "example.org"));
        assert!(glob_matches("ex?mple.org", "EXAMPLE.org"));
        assert!(!glob_matches("ex?mple.org", "exmple.org"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "a"));
    }

    #[test]
    fn server_acls_follow_the_spec() {
        let acl = json!({ "allow": ["*"], "deny": ["evil.org", "*.evil.org"], "allow_ip_literals": false });
        assert!(server_acl_allows(&acl, "good.org:8448"));
        assert!(!server_acl_allows(&acl, "evil.org"));
        assert!(!server_acl_allows(&acl, "chat.evil.org:443"));
        assert!(!server_acl_allows(&acl, "127.0.0.1:8448"));
        assert!(!server_acl_allows(&acl, "[::1]:8448"));
        let empty = json!({});
        assert!(
            !server_acl_allows(&empty, "good.org"),
            "no allow list lets nobody in"
        );
        let ips = json!({ "allow": ["*"] });
        assert!(
            server_acl_allows(&ips, "127.0.0.1:8448"),
            "IP literals are allowed by default"
        );
    }
}
