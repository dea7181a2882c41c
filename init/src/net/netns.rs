//! Named network namespaces as iproute2 keeps them: a namespace bind-mounted
//! on /run/netns/NAME, so `ip netns` of either tool sees the other's.

use std::fs::File;
use std::path::PathBuf;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use thiserror::Error;

use crate::util::io_error;

/// Where named namespaces are mounted.
pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("{0}: no such network namespace (ip netns add {0} makes one)")]
    NotFound(String),
    #[error("{0}: a network namespace of that name exists already")]
    Exists(String),
    #[error("{0:?}: a namespace name is letters, digits, '-', '_' and '.' (at most 64)")]
    BadName(String),
    #[error("{what}: {}", io_error(.source))]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {}", .errno.desc())]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
}

fn path(name: &str) -> Result<PathBuf, NetnsError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(NetnsError::BadName(name.to_string()));
    }
    Ok(PathBuf::from(NETNS_DIR).join(name))
}

/// Makes a new network namespace called `name`.
pub fn add(name: &str) -> Result<(), NetnsError> {
    let target = path(name)?;
    std::fs::create_dir_all(NETNS_DIR).map_err(|source| NetnsError::Io {
        what: NETNS_DIR.into(),
        source,
    })?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::Exists(name.into()))
        }
        Err(source) => {
            return Err(NetnsError::Io {
                what: target.display().to_string(),
                source,
            })
        }
    }
    // A namespace belongs to a thread: a short-lived one makes it, and
    // the bind mount keeps it after the thread is gone.
    let mount_on = target.clone();
    let made = std::thread::spawn(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Sys {
            what: "unshare(CLONE_NEWNET)".into(),
            errno,
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &mount_on,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| NetnsError::Sys {
            what: format!("bind mount on {}", mount_on.display()),
            errno,
        })
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Sys {
            what: "namespace thread".into(),
            errno: nix::errno::Errno::EIO,
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    made
}

/// Removes the name (the namespace lives on while something is in it).
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let target = path(name)?;
    if !target.exists() {
        return Err(NetnsError::NotFound(name.into()));
    }
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    std::fs::remove_file(&target).map_err(|source| NetnsError::Io {
        what: target.display().to_string(),
        source,
    })
}

/// The names, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The namespace called `name`, to move an interface into or enter.
pub fn open(name: &str) -> Result<File, NetnsError> {
    let target = path(name)?;
    File::open(&target).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NetnsError::NotFound(name.into()),
        _ => NetnsError::Io {
            what: target.display().to_string(),
            source,
        },
    })
}
