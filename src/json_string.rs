//! JSON strings written straight into a String, as `serde_json` writes them (byte for byte),
//! for the two texts every logged review writes by hand: the response and the log line.
//!
//! `serde_json` looks at a string one byte at a time. The texts here are mostly long plain
//! prose (a warning is 150–300 bytes), so the scan goes sixteen bytes at a time, which the
//! compiler turns into a few vector instructions. A patched review's response and log line
//! together spent about 4,000 instructions in `serde_json`'s byte loop and the per-call set-up
//! of the previous scanner (`benches/profile.sh`).

use std::fmt;

/// Appends `value` quoted and escaped.
pub fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

/// Appends `value` escaped for the inside of a JSON string (RFC 8259 §7): `"`, `\` and the
/// control characters, with serde_json's short forms (`\n`, `\t`, …) and lower-case `\u00xx`
/// for the others.
pub fn push_escaped(out: &mut String, value: &str) {
    let mut rest = value;
    loop {
        let plain = plain_prefix(rest.as_bytes());
        out.push_str(&rest[..plain]);
        let Some(&byte) = rest.as_bytes().get(plain) else {
            return;
        };
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        // The byte is ASCII, so the rest starts on a character boundary.
        rest = &rest[plain + 1..];
    }
}

/// A `fmt::Write` that escapes what it is given, for values that are written with
/// `Display` or `Debug`.
pub struct Escaped<'a>(pub &'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// Which bytes need escaping, as a table: one load per byte when looking for the first one,
/// where three comparisons cost twice as much.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        // The bytes `has_escape` flags.
        table[byte] = byte < 0x20 || byte == b'"' as usize || byte == b'\\' as usize;
        byte += 1;
    }
    table
};

/// Whether any character of `value` is escaped in a JSON string.
pub fn needs_escaping(value: &str) -> bool {
    plain_prefix(value.as_bytes()) < value.len()
}

/// How many leading bytes need no escaping. Inlined into its two callers: called on its own
/// (as `needs_escaping` made the compiler do), it and the block check it then also left out
/// of line cost 40 calls a logged review.
#[inline(always)]
fn plain_prefix(bytes: &[u8]) -> usize {
    let Some(last) = bytes.last_chunk::<16>() else {
        return short_plain_prefix(bytes);
    };
    let (blocks, _) = bytes.as_chunks::<16>();
    for (i, block) in blocks.iter().enumerate() {
        if has_escape(block) {
            return i * 16 + first_escape(block);
        }
    }
    // The last sixteen bytes, overlapping blocks already found plain: an escape in them is
    // past those.
    let start = bytes.len() - 16;
    if has_escape(last) {
        start + first_escape(last)
    } else {
        bytes.len()
    }
}

/// Whether any of sixteen bytes needs escaping. Written as an OR of byte flags, which the
/// compiler turns into a few vector compares wherever it is inlined; a `fold` over `bool`s was
/// compiled into a mix of vector and byte compares when inlined into the loop, dearer than a
/// byte loop (measured with callgrind).
#[inline(always)]
fn has_escape(block: &[u8; 16]) -> bool {
    let mut any = 0u8;
    for &b in block {
        any |= u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    }
    any != 0
}

/// `plain_prefix` of fewer than sixteen bytes: a log line's field names and most of its values
/// (`uid`, `mutate`, `CREATE`). They are read as two overlapping words, in place, and only
/// scanned byte by byte when they hold something to escape. (Padding them into a block first
/// cost a `memcpy` call per string, seventeen per logged review.)
fn short_plain_prefix(bytes: &[u8]) -> usize {
    let any = if let (Some(head), Some(tail)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>())
    {
        word_has_escape(u64::from_le_bytes(*head)) || word_has_escape(u64::from_le_bytes(*tail))
    } else if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        // Both halves in one word; overlapping bytes are checked twice, which is harmless.
        let (head, tail) = (u32::from_le_bytes(*head), u32::from_le_bytes(*tail));
        word_has_escape(u64::from(head) | u64::from(tail) << 32)
    } else {
        bytes.iter().any(|&b| NEEDS_ESCAPE[usize::from(b)])
    };
    if any {
        first_escape(bytes)
    } else {
        bytes.len()
    }
}

/// Whether any of the eight bytes of `word` needs escaping, with the bit tricks of "Bit
/// Twiddling Hacks" (`hasless`, `haszero`): exact as a yes/no, whatever the other bytes hold.
#[inline(always)]
fn word_has_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |n: u8, x: u64| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let control = below(0x20, word);
    let quote = below(1, word ^ (ONES * u64::from(b'"')));
    let backslash = below(1, word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// The first byte of `bytes` to escape, or its length.
fn first_escape(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &str) -> String {
        let mut out = String::new();
        push_quoted(&mut out, value);
        out
    }

    #[test]
    fn every_string_is_written_as_serde_json_writes_it() {
        // Escapes at, around and across block edges, in runs, alone, and after multi-byte
        // characters, in strings shorter and longer than a block.
        let mut cases = vec![String::new(), "\"".to_owned(), "x".repeat(40)];
        cases.extend((0u8..0x80).map(|b| char::from(b).to_string()));
        for at in [0, 1, 14, 15, 16, 17, 31, 32, 33, 47] {
            for special in [
                "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}", "\u{7f}",
                "\"\\\n",
            ] {
                let mut s = "ä✓".to_owned() + &"a".repeat(at);
                s.push_str(special);
                s.push_str(&"b".repeat(50 - at));
                cases.push(s.clone());
                cases.push(s[..s.len() - (50 - at)].to_owned());
                cases.push(special.to_owned() + &"c".repeat(at));
            }
        }
        for case in cases {
            let out = quoted(&case);
            assert_eq!(out, serde_json::to_string(&case).unwrap(), "{case:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), case);
        }
    }

    #[test]
    fn short_strings_are_escaped_at_every_length_and_position() {
        // Below a block, each length has its own path (bytes, two half-words, two words):
        // every byte that needs escaping, and its plain neighbours, at every position.
        let specials = [
            "\"", "\\", "\n", "\u{0}", "\u{1f}", " ", "!", "#", "[", "]", "\u{7f}", "é",
        ];
        for len in 0..=17 {
            for at in 0..len {
                for special in specials {
                    for filler in ["a", "ÿ"] {
                        let mut s: String = filler.repeat(at);
                        s.push_str(special);
                        while s.len() < len {
                            s.push('z');
                        }
                        let out = quoted(&s);
                        assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn displayed_values_are_escaped_as_they_are_written() {
        use std::fmt::Write as _;
        let mut out = String::new();
        let (debugged, displayed) = ("a\"b", "c\\d\n");
        write!(Escaped(&mut out), "{debugged:?} and {displayed}").unwrap();
        assert_eq!(out, r#"\"a\\\"b\" and c\\d\n"#);
    }
}
