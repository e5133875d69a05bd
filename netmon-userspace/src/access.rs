//! Who may read what the daemon writes: root, and the members of the
//! [`GROUP`] group when that group exists; nobody else.
//!
//! The query socket, the history database and the database's directory all
//! follow this one rule ([`restrict`]): the database holds every process's
//! command line, so a world-readable file would bypass the socket's
//! permissions. With the group: socket 0660 (connecting needs write), file
//! 0640, directory 0750. Without it: 0600, 0600, 0700 (root only). The
//! owner is left as created (root when the daemon runs as root).
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Group allowed to query, when it exists.
pub const GROUP: &str = "netmon";

/// What is being restricted (each kind has its own mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The query socket.
    Socket,
    /// A file the daemon writes (the database).
    File,
    /// A directory holding such files.
    Dir,
}

impl Kind {
    /// The mode for this kind, with or without the group.
    #[must_use]
    pub const fn mode(self, with_group: bool) -> u32 {
        match (self, with_group) {
            (Self::Socket, true) => 0o660,
            (Self::File, true) => 0o640,
            (Self::Dir, true) => 0o750,
            (Self::Socket | Self::File, false) => 0o600,
            (Self::Dir, false) => 0o700,
        }
    }
}

/// The [`GROUP`] group, if it exists.
#[must_use]
pub fn group() -> Option<nix::unistd::Group> {
    nix::unistd::Group::from_name(GROUP).ok().flatten()
}

/// Gives `path` the [`GROUP`] group (when it exists) and its kind's mode;
/// returns the mode set.
///
/// # Errors
/// When chown or chmod fail (not the owner, not root).
pub fn restrict(path: &Path, kind: Kind) -> std::io::Result<u32> {
    let group = group();
    if let Some(g) = &group {
        nix::unistd::chown(path, None, Some(g.gid)).map_err(std::io::Error::from)?;
    }
    let mode = kind.mode(group.is_some());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn nobody_else_gets_any_bit() {
        for kind in [Kind::Socket, Kind::File, Kind::Dir] {
            for g in [true, false] {
                assert_eq!(kind.mode(g) & 0o007, 0, "{kind:?}");
                assert_eq!(kind.mode(g) & 0o600, 0o600, "{kind:?}: owner reads, writes");
            }
        }
    }

    #[test]
    fn restrict_fixes_a_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mode = restrict(&file, Kind::File).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o777, mode);
        assert_eq!(mode & 0o007, 0);
        if let Some(g) = group() {
            assert_eq!(meta.gid(), g.gid.as_raw());
        }
    }
}
