//! Users and groups from the root filesystem's `/etc/passwd` and
//! `/etc/group`.
//!
//! The agent is a static binary without NSS, so it reads the files itself. A
//! user spec is `user[:group]`, each part a name or a numeric id, with
//! Docker's rules: a name must exist in the files, a numeric id need not
//! (it then has group 0 and home `/`), and the supplementary groups are the
//! primary group plus every group that lists the user as a member.

use std::path::Path;

/// Errors resolving a user spec.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No passwd entry has this name.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// No group entry has this name.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// The spec has an empty user or group part.
    #[error("bad user spec {0:?}")]
    BadSpec(String),
}

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Names of the members.
    pub members: Vec<String>,
}

/// Who a process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids, the primary one first.
    pub groups: Vec<u32>,
    /// Home directory, for `HOME`.
    pub home: String,
}

/// Parses `/etc/passwd`, skipping comments and malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping comments and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0].is_empty() {
                return None;
            }
            let members = fields[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            Some(GroupEntry {
                name: fields[0].to_owned(),
                gid: fields[2].parse().ok()?,
                members,
            })
        })
        .collect()
}

/// Resolves a user spec against the files under `etc` (a missing file reads
/// as empty).
///
/// # Errors
///
/// Fails when a name is not found or the spec is malformed.
pub fn resolve_in(spec: &str, etc: &Path) -> Result<User, UserError> {
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    resolve(spec, &parse_passwd(&passwd), &parse_group(&group))
}

/// Resolves `user[:group]` against parsed passwd and group entries; an empty
/// spec is root.
///
/// # Errors
///
/// Fails when a name is not found or the spec is malformed.
pub fn resolve(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<User, UserError> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (if spec.is_empty() { "0" } else { spec }, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(UserError::BadSpec(spec.to_owned()));
    }

    let (uid, entry) = match user_part.parse::<u32>() {
        Ok(uid) => (uid, passwd.iter().find(|e| e.uid == uid).cloned()),
        Err(_) => {
            let entry = passwd
                .iter()
                .find(|e| e.name == user_part)
                .cloned()
                .ok_or_else(|| UserError::UnknownUser(user_part.to_owned()))?;
            (entry.uid, Some(entry))
        }
    };

    let gid = match group_part {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| UserError::UnknownGroup(group.to_owned()))?,
        },
    };

    let mut supplementary = vec![gid];
    if let Some(entry) = &entry {
        for group in groups.iter().filter(|g| g.members.contains(&entry.name)) {
            if !supplementary.contains(&group.gid) {
                supplementary.push(group.gid);
            }
        }
    }

    let home = match entry {
        Some(entry) if !entry.home.is_empty() => entry.home,
        _ => "/".to_owned(),
    };
    Ok(User {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App,,,:/home/app:/bin/bash
broken line
nohome:x:1001:1001::::
";

    const GROUP: &str = "\
root:x:0:
staff:x:50:app,other
app:x:1000:
docker:x:999: app
";

    fn resolve_spec(spec: &str) -> Result<User, UserError> {
        resolve(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn passwd_and_group_lines_parse() {
        let passwd = parse_passwd(PASSWD);
        assert_eq!(passwd.len(), 4);
        assert_eq!(
            passwd[2],
            PasswdEntry {
                name: "app".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/app".into()
            }
        );
        let group = parse_group(GROUP);
        assert_eq!(group[1].members, vec!["app", "other"]);
        assert_eq!(group[3].members, vec!["app"]);
    }

    #[test]
    fn empty_spec_is_root() {
        let user = resolve_spec("").expect("root");
        assert_eq!((user.uid, user.gid, user.home.as_str()), (0, 0, "/root"));
        assert_eq!(user.groups, vec![0]);
    }

    #[test]
    fn a_name_gets_its_primary_and_member_groups() {
        let user = resolve_spec("app").expect("app");
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.groups, vec![1000, 50, 999]);
        assert_eq!(user.home, "/home/app");
    }

    #[test]
    fn a_known_uid_reads_like_its_name() {
        assert_eq!(
            resolve_spec("1000").expect("uid"),
            resolve_spec("app").expect("name")
        );
    }

    #[test]
    fn an_unknown_uid_gets_group_zero_and_home_slash() {
        let user = resolve_spec("4242").expect("uid");
        assert_eq!((user.uid, user.gid, user.home.as_str()), (4242, 0, "/"));
        assert_eq!(user.groups, vec![0]);
    }

    #[test]
    fn an_explicit_group_replaces_the_primary_one() {
        let user = resolve_spec("app:staff").expect("named group");
        assert_eq!((user.uid, user.gid), (1000, 50));
        assert_eq!(user.groups, vec![50, 999]);

        let user = resolve_spec("4242:4343").expect("numeric");
        assert_eq!((user.uid, user.gid), (4242, 4343));
    }

    #[test]
    fn unknown_names_are_errors_that_name_them() {
        let err = resolve_spec("nobody").expect_err("unknown user");
        assert_eq!(
            err.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        let err = resolve_spec("app:wheel").expect_err("unknown group");
        assert!(err.to_string().contains("group wheel"), "{err}");
        assert!(matches!(resolve_spec("app:"), Err(UserError::BadSpec(_))));
    }

    #[test]
    fn an_entry_without_home_gets_slash() {
        assert_eq!(resolve_spec("nohome").expect("user").home, "/");
    }
}
