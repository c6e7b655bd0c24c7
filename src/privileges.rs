//! Dropping root: the master binds as root (ports below 1024), the
//! workers switch to `server.user` / `server.group` right after the fork,
//! before they touch a client byte.

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::{Config, ConfigError};

/// The ids the workers switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// Target user id.
    pub uid: Uid,
    /// Target group id.
    pub gid: Gid,
}

/// Looks up `server.user` and `server.group`; `None` when no user is set.
pub fn resolve(config: &Config) -> Result<Option<Ids>, ConfigError> {
    let file = &config.source;
    let Some(name) = &config.server.user else {
        if config.server.group.is_some() {
            return Err(ConfigError::new(
                file,
                "server.group",
                "group without user: set server.user too",
            ));
        }
        return Ok(None);
    };
    let user = lookup_user(name)
        .ok_or_else(|| ConfigError::new(file, "server.user", format!("no such user \"{name}\"")))?;
    let gid = match &config.server.group {
        None => user.gid,
        Some(g) => {
            lookup_group(g)
                .ok_or_else(|| {
                    ConfigError::new(file, "server.group", format!("no such group \"{g}\""))
                })?
                .gid
        }
    };
    let (euid, egid) = (Uid::effective(), Gid::effective());
    if !euid.is_root() && (user.uid != euid || gid != egid) {
        // Only root can switch; failing here beats workers that die on
        // setuid() in a restart loop.
        let key = if user.uid != euid {
            "server.user"
        } else {
            "server.group"
        };
        return Err(ConfigError::new(
            file,
            key,
            format!(
                "wssd runs as uid {euid} gid {egid}, not as root, so its workers cannot \
                 switch to uid {} gid {gid}: remove server.user (the systemd unit already runs \
                 wssd as its own user) or start wssd as root",
                user.uid
            ),
        ));
    }
    Ok(Some(Ids { uid: user.uid, gid }))
}

fn lookup_user(name: &str) -> Option<User> {
    match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => User::from_name(name).ok().flatten(),
    }
}

fn lookup_group(name: &str) -> Option<Group> {
    match name.parse::<u32>() {
        Ok(gid) => Group::from_gid(Gid::from_raw(gid)).ok().flatten(),
        Err(_) => Group::from_name(name).ok().flatten(),
    }
}

/// Switches this process to `ids`. Already running as them is fine; any
/// failure is an error, so a worker never serves as root by accident.
pub fn apply(ids: Ids) -> Result<(), String> {
    if Uid::effective() == ids.uid && Gid::effective() == ids.gid {
        return Ok(());
    }
    nix::unistd::setgroups(&[ids.gid])
        .map_err(|e| format!("setgroups({}) failed: {e}", ids.gid))?;
    nix::unistd::setgid(ids.gid).map_err(|e| format!("setgid({}) failed: {e}", ids.gid))?;
    nix::unistd::setuid(ids.uid).map_err(|e| format!("setuid({}) failed: {e}", ids.uid))?;
    if Uid::effective() != ids.uid
        || (ids.uid.as_raw() != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok())
    {
        return Err("privileges could not be dropped for good".into());
    }
    Ok(())
}
