//! Container or service name derived from a cgroup v2 path.
//!
//! The last path component that names something is used:
//! - `docker-<id>.scope` → `docker:<id, 12 chars>` (also `libpod-` →
//!   `podman:`, `cri-containerd-` → `containerd:`, `crio-` → `crio:`);
//! - `.../docker/<64 hex>` (cgroupfs driver) → `docker:<12 chars>`;
//! - `<name>.service` → `<name>.service`;
//! - any other `<name>.scope` → `<name>.scope` (user sessions, apps).
//!
//! The root (`/`) and paths of plain slices give `None`.

/// The unit (service or container) a cgroup path belongs to.
#[must_use]
pub fn unit_of_cgroup(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate().rev() {
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "crio"),
        ] {
            if let Some(id) = part
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".scope"))
            {
                return Some(format!("{runtime}:{}", short(id)));
            }
        }
        if i > 0
            && parts[i - 1] == "docker"
            && part.len() == 64
            && part.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Some(format!("docker:{}", short(part)));
        }
        if part.ends_with(".service") || part.ends_with(".scope") {
            return Some((*part).to_owned());
        }
    }
    None
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_containers_and_sessions() {
        assert_eq!(
            unit_of_cgroup("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            unit_of_cgroup(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some("docker:0123456789ab")
        );
        assert_eq!(
            unit_of_cgroup(&format!("/docker/{id}")).as_deref(),
            Some("docker:0123456789ab")
        );
        assert_eq!(
            unit_of_cgroup("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        // A process in a service's sub-cgroup still belongs to the service.
        assert_eq!(
            unit_of_cgroup("/system.slice/foo.service/worker").as_deref(),
            Some("foo.service")
        );
        assert_eq!(unit_of_cgroup("/"), None);
        assert_eq!(unit_of_cgroup("/user.slice"), None);
    }
}
