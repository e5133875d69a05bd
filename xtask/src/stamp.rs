//! `.tools/setup.stamp`: what the last successful `cargo xtask setup`
//! installed, so the next one can tell in milliseconds that nothing changed.
//!
//! Format: one `key=value` line per field, lists comma-separated:
//!
//! ```text
//! stable=1.99.1
//! stable-components=rustfmt,clippy
//! nightly=nightly-2026-10-29
//! nightly-components=rust-src
//! llvm-major=23
//! bpf-linker=0.13.0
//! ```
//!
//! Invariant: the stamp is written only after every step of setup succeeded
//! (toolchains installed, bpf-linker built and runs), and it is the last
//! thing setup writes. A missing or unreadable stamp just means "set up
//! again".

use std::path::Path;

use anyhow::Context as _;

/// What a completed setup installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Stable toolchain channel.
    pub stable: String,
    /// Components installed for the stable toolchain.
    pub stable_components: Vec<String>,
    /// Nightly toolchain channel (the eBPF crate's).
    pub nightly: String,
    /// Components installed for the nightly toolchain.
    pub nightly_components: Vec<String>,
    /// LLVM major of the nightly, which bpf-linker was built against.
    pub llvm_major: u32,
    /// bpf-linker version installed in `.tools/bpf-linker`.
    pub bpf_linker: String,
}

impl Stamp {
    /// The file text (see the module docs).
    pub fn render(&self) -> String {
        format!(
            "stable={}\nstable-components={}\nnightly={}\nnightly-components={}\nllvm-major={}\nbpf-linker={}\n",
            self.stable,
            self.stable_components.join(","),
            self.nightly,
            self.nightly_components.join(","),
            self.llvm_major,
            self.bpf_linker,
        )
    }

    /// Parses [`Stamp::render`]'s output; `None` if any field is missing or
    /// malformed (setup then simply runs again).
    pub fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        };
        let list = |key: &str| {
            field(key).map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        };
        Some(Self {
            stable: field("stable")?.to_owned(),
            stable_components: list("stable-components")?,
            nightly: field("nightly")?.to_owned(),
            nightly_components: list("nightly-components")?,
            llvm_major: field("llvm-major")?.parse().ok()?,
            bpf_linker: field("bpf-linker")?.to_owned(),
        })
    }

    /// Whether the bpf-linker installed for `old` is still right for `self`:
    /// same bpf-linker version, built against the same nightly's libLLVM
    /// (whose path is baked into the binary's rpath) of the same major.
    pub fn linker_reusable_from(&self, old: &Self) -> bool {
        self.bpf_linker == old.bpf_linker
            && self.nightly == old.nightly
            && self.llvm_major == old.llvm_major
    }
}

/// Reads the stamp; `None` when absent or unparsable.
pub fn read(path: &Path) -> Option<Stamp> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| Stamp::parse(&text))
}

/// Writes the stamp (atomically: a crash leaves the old stamp or the new one).
pub fn write(path: &Path, stamp: &Stamp) -> anyhow::Result<()> {
    let tmp = path.with_extension("stamp.tmp");
    std::fs::write(&tmp, stamp.render()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stamp {
        Stamp {
            stable: "1.99.1".into(),
            stable_components: vec!["rustfmt".into(), "clippy".into()],
            nightly: "nightly-2026-10-29".into(),
            nightly_components: vec!["rust-src".into()],
            llvm_major: 23,
            bpf_linker: "0.13.0".into(),
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let stamp = sample();
        assert_eq!(Stamp::parse(&stamp.render()), Some(stamp));
    }

    #[test]
    fn empty_component_lists_round_trip() {
        let stamp = Stamp {
            stable_components: Vec::new(),
            ..sample()
        };
        assert_eq!(Stamp::parse(&stamp.render()), Some(stamp));
    }

    #[test]
    fn prefix_keys_are_not_confused() {
        // `stable` must not be read from the `stable-components` line.
        let text = "stable-components=rustfmt\nstable=1.99.1\nnightly-components=\n\
                    nightly=n\nllvm-major=23\nbpf-linker=0.13.0\n";
        let stamp = Stamp::parse(text).unwrap_or_else(|| panic!("must parse"));
        assert_eq!(stamp.stable, "1.99.1");
        assert_eq!(stamp.nightly, "n");
        assert!(stamp.nightly_components.is_empty());
    }

    #[test]
    fn missing_or_malformed_fields_mean_no_stamp() {
        let full = sample().render();
        for key in [
            "stable=",
            "stable-components=",
            "nightly=",
            "nightly-components=",
            "llvm-major=",
            "bpf-linker=",
        ] {
            let without: String = full
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(Stamp::parse(&without), None, "without {key}");
        }
        assert_eq!(
            Stamp::parse(&full.replace("llvm-major=23", "llvm-major=x")),
            None
        );
    }

    #[test]
    fn any_changed_field_makes_stamps_differ() {
        let base = sample();
        let changed = [
            Stamp {
                stable: "1.100.0".into(),
                ..sample()
            },
            Stamp {
                stable_components: vec!["rustfmt".into()],
                ..sample()
            },
            Stamp {
                nightly: "nightly-2026-11-01".into(),
                ..sample()
            },
            Stamp {
                nightly_components: Vec::new(),
                ..sample()
            },
            Stamp {
                llvm_major: 24,
                ..sample()
            },
            Stamp {
                bpf_linker: "0.14.0".into(),
                ..sample()
            },
        ];
        for other in changed {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn linker_is_rebuilt_only_when_it_depends_on_what_changed() {
        let old = sample();
        // Stable toolchain or components changing does not touch bpf-linker.
        let new_stable = Stamp {
            stable: "1.100.0".into(),
            nightly_components: Vec::new(),
            ..sample()
        };
        assert!(new_stable.linker_reusable_from(&old));
        for new in [
            Stamp {
                nightly: "nightly-2026-11-01".into(),
                ..sample()
            },
            Stamp {
                llvm_major: 24,
                ..sample()
            },
            Stamp {
                bpf_linker: "0.14.0".into(),
                ..sample()
            },
        ] {
            assert!(!new.linker_reusable_from(&old), "{new:?}");
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = tmp.path();
        let path = dir.join("setup.stamp");
        assert_eq!(read(&path), None);
        write(&path, &sample()).unwrap_or_else(|e| panic!("write: {e:#}"));
        assert_eq!(read(&path), Some(sample()));
    }
}
