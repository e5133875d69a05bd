//! A minimal reader of raw BTF (the format of `/sys/kernel/btf/vmlinux`):
//! just enough to find a struct by name and the byte offset of a member.
//!
//! Layout (kernel `include/uapi/linux/btf.h`, Documentation/bpf/btf.rst):
//! - header: `magic: u16 = 0xEB9F`, `version: u8`, `flags: u8`,
//!   `hdr_len: u32`, `type_off: u32`, `type_len: u32`, `str_off: u32`,
//!   `str_len: u32`; the section offsets count from the end of the header
//!   (`hdr_len`, which may grow in later versions);
//! - type section: type ids start at 1 (0 is `void`); each type is a 12-byte
//!   `btf_type` (`name_off`, `info`, `size`/`type`) followed by kind-specific
//!   data whose length depends on the kind and `vlen`;
//! - string section: NUL-terminated strings, `name_off` indexes into it.
//!
//! The byte order is the producer's: the magic read in the wrong order
//! (`0x9FEB`) means every field must be byte-swapped. Both orders are read.
//!
//! Hand-rolled because no permissively licensed crate exposes member lookup:
//! aya-obj's `Btf` keeps its types private, `btf-rs` is LGPL.

/// The BTF magic number, in the producer's byte order.
const BTF_MAGIC: u16 = 0xEB9F;
/// Size of the fixed part of the header this reader understands.
const MIN_HEADER_LEN: usize = 24;
/// Size of `struct btf_type`.
const TYPE_LEN: usize = 12;

/// BTF kinds (`BTF_KIND_*`) this reader needs by name.
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// Errors reading a BTF blob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The blob does not start with the BTF magic.
    #[error("not BTF: bad magic {0:#06x}")]
    BadMagic(u16),
    /// A header field or section points outside the blob.
    #[error("truncated BTF: {0}")]
    Truncated(&'static str),
    /// A type of a kind this reader does not know (a newer kernel): its
    /// length is unknown, so the types after it cannot be read.
    #[error("unknown BTF kind {kind} at type id {id}")]
    UnknownKind {
        /// The kind number.
        kind: u32,
        /// The type id.
        id: u32,
    },
    /// A type id that does not exist.
    #[error("BTF type id {0} out of range")]
    BadTypeId(u32),
    /// A chain of typedefs/modifiers that loops or is absurdly long.
    #[error("BTF type chain from id {0} too long")]
    TypeChain(u32),
}

/// One parsed `btf_type`.
#[derive(Clone, Copy, Debug)]
struct TypeHeader {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` for sized kinds (INT, STRUCT, UNION, ENUM, ...), `type` for
    /// referring kinds (PTR, TYPEDEF, modifiers, ...).
    size_or_type: u32,
    /// Byte offset of the kind-specific data following the header, within
    /// the type section.
    data_off: usize,
}

/// A member of a struct or union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Type id of the member.
    pub type_id: u32,
    /// Offset from the start of the outermost struct searched, in bits.
    pub bit_offset: u32,
}

/// A parsed BTF blob: the type index and the string section.
pub struct Btf<'a> {
    big_endian: bool,
    types: &'a [u8],
    strings: &'a [u8],
    /// `headers[id - 1]` is type `id`.
    headers: Vec<TypeHeader>,
}

impl<'a> Btf<'a> {
    /// Parses the header and indexes every type.
    ///
    /// # Errors
    /// On a bad magic, truncated sections or an unknown kind.
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic_bytes: [u8; 2] = data
            .get(..2)
            .and_then(|s| s.try_into().ok())
            .ok_or(BtfError::Truncated("header"))?;
        let big_endian = match u16::from_le_bytes(magic_bytes) {
            BTF_MAGIC => false,
            m if m == BTF_MAGIC.swap_bytes() => true,
            m => return Err(BtfError::BadMagic(m)),
        };
        let rd = |off: usize| read_u32(data, off, big_endian).ok_or(BtfError::Truncated("header"));
        let hdr_len = to_usize(rd(4)?);
        if hdr_len < MIN_HEADER_LEN || hdr_len > data.len() {
            return Err(BtfError::Truncated("header length"));
        }
        let section = |off: u32, len: u32, what: &'static str| {
            let start = hdr_len
                .checked_add(to_usize(off))
                .ok_or(BtfError::Truncated(what))?;
            let end = start
                .checked_add(to_usize(len))
                .ok_or(BtfError::Truncated(what))?;
            data.get(start..end).ok_or(BtfError::Truncated(what))
        };
        let types = section(rd(8)?, rd(12)?, "type section")?;
        let strings = section(rd(16)?, rd(20)?, "string section")?;
        let mut btf = Self {
            big_endian,
            types,
            strings,
            headers: Vec::new(),
        };
        btf.index()?;
        Ok(btf)
    }

    /// Walks the type section once, recording where each type starts.
    fn index(&mut self) -> Result<(), BtfError> {
        let mut off = 0;
        while off < self.types.len() {
            let id = u32::try_from(self.headers.len() + 1)
                .map_err(|_| BtfError::Truncated("too many types"))?;
            let word = |i: usize| self.u32_at(off + 4 * i).ok_or(BtfError::Truncated("type"));
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let data_off = off + TYPE_LEN;
            let data_len = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * to_usize(vlen),
                kind::ENUM | kind::FUNC_PROTO => 8 * to_usize(vlen),
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                _ => return Err(BtfError::UnknownKind { kind, id }),
            };
            let next = data_off + data_len;
            if next > self.types.len() {
                return Err(BtfError::Truncated("type data"));
            }
            self.headers.push(TypeHeader {
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                data_off,
            });
            off = next;
        }
        Ok(())
    }

    fn u32_at(&self, off: usize) -> Option<u32> {
        read_u32(self.types, off, self.big_endian)
    }

    fn header(&self, id: u32) -> Result<&TypeHeader, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.headers.get(to_usize(i)))
            .ok_or(BtfError::BadTypeId(id))
    }

    /// The string at `off` in the string section ("" if out of range or not
    /// valid UTF-8: such names match nothing).
    fn name(&self, off: u32) -> &'a str {
        let strings: &'a [u8] = self.strings;
        let tail = strings.get(to_usize(off)..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or_default()
    }

    /// Number of types (the highest type id).
    #[cfg(test)]
    #[must_use]
    pub fn type_count(&self) -> usize {
        self.headers.len()
    }

    /// The id of the complete (non-forward) struct called `name`.
    #[must_use]
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        self.headers
            .iter()
            .zip(1u32..)
            .find(|(h, _)| h.kind == kind::STRUCT && self.name(h.name_off) == name)
            .map(|(_, id)| id)
    }

    /// Follows typedefs and modifiers (const, volatile, restrict, type tags)
    /// to the type they name.
    ///
    /// # Errors
    /// On a bad id or a chain that does not end.
    pub fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        let start = id;
        // Real chains are a handful long; 64 bounds loops in corrupt input.
        for _ in 0..64 {
            if id == 0 {
                return Ok(0);
            }
            let h = self.header(id)?;
            match h.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = h.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TypeChain(start))
    }

    /// Size in bytes of an INT, STRUCT, UNION, ENUM, ENUM64 or FLOAT type
    /// (after resolving typedefs); 8 for pointers on 64-bit kernels is not
    /// recorded in BTF, so pointers return `None`.
    ///
    /// # Errors
    /// On a bad id.
    pub fn size_of(&self, id: u32) -> Result<Option<u32>, BtfError> {
        let h = self.header(self.resolve(id)?)?;
        Ok(match h.kind {
            kind::INT | kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 | kind::FLOAT => {
                Some(h.size_or_type)
            }
            _ => None,
        })
    }

    /// True if `id` (after typedefs) is a pointer.
    ///
    /// # Errors
    /// On a bad id.
    pub fn is_pointer(&self, id: u32) -> Result<bool, BtfError> {
        Ok(self.header(self.resolve(id)?)?.kind == kind::PTR)
    }

    /// Finds the member `name` of struct or union `id`, descending into
    /// anonymous struct and union members; the offset returned counts from
    /// the start of `id`.
    ///
    /// # Errors
    /// On a bad id or corrupt member data.
    pub fn find_member(&self, id: u32, name: &str) -> Result<Option<Member>, BtfError> {
        self.find_member_at(id, name, 0, 0)
    }

    fn find_member_at(
        &self,
        id: u32,
        name: &str,
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<Member>, BtfError> {
        // Anonymous nesting in kernel structs is a few levels deep at most.
        if depth > 16 {
            return Err(BtfError::TypeChain(id));
        }
        let h = *self.header(self.resolve(id)?)?;
        if h.kind != kind::STRUCT && h.kind != kind::UNION {
            return Ok(None);
        }
        let mut anonymous = Vec::new();
        for i in 0..to_usize(h.vlen) {
            let off = h.data_off + 12 * i;
            let word = |j: usize| {
                self.u32_at(off + 4 * j)
                    .ok_or(BtfError::Truncated("member"))
            };
            let (name_off, type_id, raw_offset) = (word(0)?, word(1)?, word(2)?);
            // With kind_flag the top 8 bits hold the bitfield size and the
            // low 24 the bit offset; without it the whole word is the offset.
            let bits = if h.kind_flag {
                raw_offset & 0x00ff_ffff
            } else {
                raw_offset
            };
            let bit_offset = base_bits
                .checked_add(bits)
                .ok_or(BtfError::Truncated("member offset"))?;
            if name_off == 0 {
                anonymous.push((type_id, bit_offset));
            } else if self.name(name_off) == name {
                return Ok(Some(Member {
                    type_id,
                    bit_offset,
                }));
            }
        }
        for (type_id, bit_offset) in anonymous {
            if let Some(m) = self.find_member_at(type_id, name, bit_offset, depth + 1)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}

fn read_u32(data: &[u8], off: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// u32 → usize: lossless on every target netmon builds for (≥ 32-bit).
fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Builds BTF blobs for tests, so the parser is checked against bytes laid
/// out independently of it.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
pub(crate) mod builder {
    /// A BTF blob under construction.
    #[derive(Default)]
    pub struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        pub big_endian: bool,
    }

    impl BtfBuilder {
        pub fn new() -> Self {
            Self {
                strings: vec![0],
                next_id: 1,
                ..Self::default()
            }
        }

        fn word(&mut self, v: u32) {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.types.extend_from_slice(&b);
        }

        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = u32::try_from(self.strings.len()).unwrap();
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
        ) -> u32 {
            let name_off = self.string(name);
            self.word(name_off);
            self.word((u32::from(kind_flag) << 31) | (kind << 24) | vlen);
            self.word(size_or_type);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.ty(name, 1, 0, false, size);
            self.word(size * 8); // encoding 0, offset 0, bits
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.ty("", 2, 0, false, to)
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.ty(name, 8, 0, false, to)
        }

        pub fn constant(&mut self, to: u32) -> u32 {
            self.ty("", 10, 0, false, to)
        }

        pub fn fwd(&mut self, name: &str) -> u32 {
            self.ty(name, 7, 0, false, 0)
        }

        pub fn enumeration(&mut self, name: &str, values: &[(&str, i32)]) -> u32 {
            let id = self.ty(name, 6, u32::try_from(values.len()).unwrap(), false, 4);
            for (n, v) in values {
                let off = self.string(n);
                self.word(off);
                self.word(v.cast_unsigned());
            }
            id
        }

        pub fn func_proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let id = self.ty("", 13, u32::try_from(params.len()).unwrap(), false, ret);
            for p in params {
                self.word(0);
                self.word(*p);
            }
            id
        }

        pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
            let id = self.ty("", 3, 0, false, 0);
            self.word(elem);
            self.word(index);
            self.word(n);
            id
        }

        /// Members: (name, type, offset in bits, bitfield size or 0).
        /// `kind_flag` selects the bitfield encoding of the offsets.
        pub fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kind = if union { 5 } else { 4 };
            let id = self.ty(
                name,
                kind,
                u32::try_from(members.len()).unwrap(),
                kind_flag,
                size,
            );
            for (n, t, off, bits) in members {
                let name_off = self.string(n);
                self.word(name_off);
                self.word(*t);
                self.word(if kind_flag { (bits << 24) | off } else { *off });
            }
            id
        }

        pub fn raw_type(&mut self, kind: u32) {
            self.ty("", kind, 0, false, 0);
        }

        pub fn build(&self) -> Vec<u8> {
            let w = |v: u32| {
                if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let mut out = Vec::new();
            let magic: u16 = 0xEB9F;
            out.extend_from_slice(&if self.big_endian {
                magic.to_be_bytes()
            } else {
                magic.to_le_bytes()
            });
            out.push(1); // version
            out.push(0); // flags
            let types_len = u32::try_from(self.types.len()).unwrap();
            let str_len = u32::try_from(self.strings.len()).unwrap();
            for v in [24, 0, types_len, types_len, str_len] {
                out.extend_from_slice(&w(v));
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests panic at the failing call")]
mod tests {
    use super::builder::BtfBuilder;
    use super::*;

    /// A small struct with a pointer, a typedef'd u64, a bitfield struct and
    /// an anonymous union, surrounded by types of other kinds.
    fn sample(big_endian: bool) -> (Vec<u8>, u32) {
        let mut b = BtfBuilder::new();
        b.big_endian = big_endian;
        let int = b.int("int", 4);
        let ull = b.int("long long unsigned int", 8);
        let u64t = b.typedef("u64", ull);
        let cu64 = b.constant(u64t);
        b.enumeration("state", &[("A", 0), ("B", 1)]);
        b.func_proto(int, &[int, ull]);
        let fwd = b.fwd("task_struct");
        let self_ptr = b.ptr(fwd);
        let arr = b.array(int, int, 16);
        let anon = b.composite(
            true,
            "",
            8,
            false,
            &[("alt_a", ull, 0, 0), ("start_boottime", cu64, 0, 0)],
        );
        let id = b.composite(
            false,
            "task_struct",
            104,
            false,
            &[
                ("state", int, 0, 0),
                ("comm", arr, 32, 0),
                ("group_leader", self_ptr, 576, 0),
                ("", anon, 640, 0),
                ("real_start_time", u64t, 704, 0),
            ],
        );
        (b.build(), id)
    }

    #[test]
    fn finds_members_little_and_big_endian() {
        for be in [false, true] {
            let (blob, id) = sample(be);
            let btf = Btf::parse(&blob).unwrap();
            assert_eq!(btf.type_count(), usize::try_from(id).unwrap());
            assert_eq!(
                btf.find_struct("task_struct"),
                Some(id),
                "the complete struct, not the fwd"
            );
            let gl = btf.find_member(id, "group_leader").unwrap().unwrap();
            assert_eq!(gl.bit_offset, 576);
            assert!(btf.is_pointer(gl.type_id).unwrap());
            // Found inside the anonymous union: offset of the union + 0.
            let sb = btf.find_member(id, "start_boottime").unwrap().unwrap();
            assert_eq!(sb.bit_offset, 640);
            assert_eq!(btf.size_of(sb.type_id).unwrap(), Some(8));
            assert!(!btf.is_pointer(sb.type_id).unwrap());
            assert_eq!(btf.find_member(id, "no_such_member").unwrap(), None);
        }
    }

    #[test]
    fn kind_flag_offsets_use_the_low_24_bits() {
        let mut b = BtfBuilder::new();
        let int = b.int("unsigned int", 4);
        let ptr = b.ptr(int);
        let id = b.composite(
            false,
            "s",
            32,
            true,
            &[("flag", int, 3, 1), ("p", ptr, 128, 0)],
        );
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.find_member(id, "flag").unwrap().unwrap().bit_offset, 3);
        assert_eq!(btf.find_member(id, "p").unwrap().unwrap().bit_offset, 128);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Btf::parse(&[]).err(), Some(BtfError::Truncated("header")));
        assert_eq!(
            Btf::parse(&[0x12, 0x34, 0, 0]).err(),
            Some(BtfError::BadMagic(0x3412))
        );
        let (blob, _) = sample(false);
        assert!(matches!(
            Btf::parse(&blob[..blob.len() - 3]),
            Err(BtfError::Truncated(_))
        ));
        let mut b = BtfBuilder::new();
        b.int("int", 4);
        b.raw_type(31);
        assert_eq!(
            Btf::parse(&b.build()).err(),
            Some(BtfError::UnknownKind { kind: 31, id: 2 })
        );
    }

    #[test]
    fn typedef_loops_are_reported() {
        let mut b = BtfBuilder::new();
        // id 1 → id 2 → id 1.
        b.typedef("a", 2);
        b.typedef("b", 1);
        let blob = b.build();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.resolve(1), Err(BtfError::TypeChain(1)));
        assert_eq!(btf.resolve(9), Err(BtfError::BadTypeId(9)));
    }
}
