//! Builds `shared/data/breached-passwords.bin` from a frequency-ordered password list (one
//! password per line, most frequent first), e.g. the Xato/Burnett top-1M list that `fetch.sh`
//! extracts. See `../README.md` and the format description in `shared/src/breached.rs`.
//!
//! ```text
//! breached-filter-gen --input LIST --output FILE
//!     [--min-chars 8]                 drop entries shorter than this (characters, after lower-casing)
//!     [--max-entries N]               keep only the N most frequent remaining entries
//!     [--sections 8-11:8,12-:16]      length ranges (chars, inclusive) and fingerprint bits (8|16)
//! ```

#[path = "../../../shared/src/breached.rs"]
#[allow(dead_code)]
mod breached;

/// The lookup Gatehouse does (`shared/src/breached.rs`), on `bytes`.
mod reader {
    pub fn contains(bytes: &[u8], password_lowercase: &str) -> bool {
        super::breached::Filter::parse(bytes).is_some_and(|f| f.contains(password_lowercase))
    }
}

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use xorf::{BinaryFuse8, BinaryFuse16, Filter};

const MAGIC: [u8; 8] = *b"GHBREACH";
const VERSION: u16 = 1;
const KEY_SCHEME_SHA256_LE64: u8 = 1;
const HEADER_LEN: usize = 16;
const SECTION_LEN: usize = 40;

struct Args {
    input: String,
    output: String,
    min_chars: usize,
    max_entries: Option<usize>,
    sections: Vec<SectionSpec>,
}

#[derive(Clone, Copy, Debug)]
struct SectionSpec {
    min_chars: u16,
    max_chars: u16, // inclusive; u16::MAX = unbounded
    bits: u8,
}

struct Built {
    spec: SectionSpec,
    entries: usize,
    seed: u64,
    segment_length: u32,
    segment_length_mask: u32,
    segment_count_length: u32,
    fingerprints: Vec<u8>, // little endian
    fingerprint_count: usize,
    keys: Vec<u64>,
    xorf: XorfFilter,
}

enum XorfFilter {
    Eight(BinaryFuse8),
    Sixteen(BinaryFuse16),
}

impl XorfFilter {
    fn contains(&self, key: u64) -> bool {
        match self {
            Self::Eight(f) => f.contains(&key),
            Self::Sixteen(f) => f.contains(&key),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut input = None;
    let mut output = None;
    let mut min_chars = 8;
    let mut max_entries = None;
    let mut sections = "8-11:8,12-:16".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--input" => input = Some(value()?),
            "--output" => output = Some(value()?),
            "--min-chars" => {
                min_chars = value()?.parse().map_err(|e| format!("--min-chars: {e}"))?
            }
            "--max-entries" => {
                max_entries = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-entries: {e}"))?,
                )
            }
            "--sections" => sections = value()?,
            "-h" | "--help" => {
                return Err("usage: breached-filter-gen --input LIST --output FILE \
                            [--min-chars 8] [--max-entries N] [--sections 8-11:8,12-:16]"
                    .into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let sections = sections
        .split(',')
        .map(parse_section)
        .collect::<Result<Vec<_>, _>>()?;
    if sections.is_empty() || sections.len() > 8 {
        return Err("1 to 8 sections".into());
    }
    for (i, a) in sections.iter().enumerate() {
        for b in &sections[i + 1..] {
            if a.min_chars <= b.max_chars && b.min_chars <= a.max_chars {
                return Err(format!("sections {a:?} and {b:?} overlap"));
            }
        }
    }
    Ok(Args {
        input: input.ok_or("--input is required")?,
        output: output.ok_or("--output is required")?,
        min_chars,
        max_entries,
        sections,
    })
}

/// `8-11:8`, `12-:16`, `8-:8`.
fn parse_section(s: &str) -> Result<SectionSpec, String> {
    let (range, bits) = s
        .split_once(':')
        .ok_or(format!("section {s:?}: expected LO-HI:BITS"))?;
    let (lo, hi) = range
        .split_once('-')
        .ok_or(format!("section {s:?}: expected LO-HI"))?;
    let min_chars: u16 = lo.parse().map_err(|e| format!("section {s:?}: {e}"))?;
    let max_chars: u16 = if hi.is_empty() {
        u16::MAX
    } else {
        hi.parse().map_err(|e| format!("section {s:?}: {e}"))?
    };
    let bits: u8 = bits.parse().map_err(|e| format!("section {s:?}: {e}"))?;
    if bits != 8 && bits != 16 {
        return Err(format!("section {s:?}: fingerprint bits must be 8 or 16"));
    }
    if min_chars > max_chars {
        return Err(format!("section {s:?}: empty range"));
    }
    Ok(SectionSpec {
        min_chars,
        max_chars,
        bits,
    })
}

fn key_of(lowercase: &str) -> u64 {
    let digest = Sha256::digest(lowercase.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn length_bucket(chars: usize) -> &'static str {
    match chars {
        0..=7 => "<8",
        8 => "8",
        9 => "9",
        10 => "10",
        11 => "11",
        12..=15 => "12-15",
        16..=19 => "16-19",
        _ => "20+",
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let raw = std::fs::read(&args.input).map_err(|e| format!("{}: {e}", args.input))?;

    // 1. Entries in list order (most frequent first), lower-cased, first occurrence kept.
    let mut lines = 0usize;
    let mut not_utf8 = 0usize;
    let mut seen = HashSet::new();
    let mut distinct = Vec::new();
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let Ok(text) = std::str::from_utf8(line) else {
            not_utf8 += 1;
            continue;
        };
        let lower = text.to_lowercase();
        if seen.insert(lower.clone()) {
            distinct.push(lower);
        }
    }
    let distinct_total = distinct.len();
    let mut chosen: Vec<(String, usize)> = distinct
        .into_iter()
        .map(|p| {
            let n = p.chars().count();
            (p, n)
        })
        .filter(|(_, n)| *n >= args.min_chars)
        .collect();
    let long_enough = chosen.len();
    if let Some(cap) = args.max_entries {
        chosen.truncate(cap);
    }
    let uncovered = chosen
        .iter()
        .filter(|(_, n)| !args.sections.iter().any(|s| covers(s, *n)))
        .count();
    if uncovered > 0 {
        return Err(format!("{uncovered} chosen entries fall in no section"));
    }

    println!("input: {} ({} bytes)", args.input, raw.len());
    println!(
        "lines: {lines}, not UTF-8 (skipped): {not_utf8}, distinct lower-cased: {distinct_total}"
    );
    println!(
        "length >= {}: {long_enough}; kept: {}{}",
        args.min_chars,
        chosen.len(),
        args.max_entries
            .map(|n| format!(" (capped at {n})"))
            .unwrap_or_default()
    );
    let mut buckets: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for (_, n) in &chosen {
        let b = length_bucket(*n);
        *buckets.entry((bucket_order(b), b)).or_default() += 1;
    }
    let by_bucket: Vec<String> = buckets
        .iter()
        .map(|((_, b), v)| format!("{b}: {v}"))
        .collect();
    println!("kept entries by length (chars): {}", by_bucket.join(", "));
    for min in [8, 10, 12, 16] {
        println!(
            "  >= {min}: {}",
            chosen.iter().filter(|(_, n)| *n >= min).count()
        );
    }

    // 2. One binary fuse filter per section.
    let mut built = Vec::new();
    for spec in &args.sections {
        let mut keys: Vec<u64> = chosen
            .iter()
            .filter(|(_, n)| covers(spec, *n))
            .map(|(p, _)| key_of(p))
            .collect();
        let entries = keys.len();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != entries {
            println!(
                "  note: {} 64-bit key collisions merged",
                entries - keys.len()
            );
        }
        built.push(build(*spec, entries, keys)?);
    }

    // 3. Serialise.
    let table_end = HEADER_LEN + SECTION_LEN * built.len();
    let mut out =
        Vec::with_capacity(table_end + built.iter().map(|b| b.fingerprints.len()).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(KEY_SCHEME_SHA256_LE64);
    out.push(u8::try_from(built.len()).map_err(|e| e.to_string())?);
    out.extend_from_slice(
        &u32::try_from(chosen.len())
            .map_err(|e| e.to_string())?
            .to_le_bytes(),
    );
    let mut offset = table_end;
    for b in &built {
        out.extend_from_slice(&b.spec.min_chars.to_le_bytes());
        out.extend_from_slice(&b.spec.max_chars.to_le_bytes());
        out.push(b.spec.bits);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(
            &u32::try_from(b.entries)
                .map_err(|e| e.to_string())?
                .to_le_bytes(),
        );
        out.extend_from_slice(&b.seed.to_le_bytes());
        out.extend_from_slice(&b.segment_length.to_le_bytes());
        out.extend_from_slice(&b.segment_length_mask.to_le_bytes());
        out.extend_from_slice(&b.segment_count_length.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(b.fingerprint_count)
                .map_err(|e| e.to_string())?
                .to_le_bytes(),
        );
        out.extend_from_slice(
            &u32::try_from(offset)
                .map_err(|e| e.to_string())?
                .to_le_bytes(),
        );
        offset += b.fingerprints.len();
    }
    for b in &built {
        out.extend_from_slice(&b.fingerprints);
    }
    assert_eq!(out.len(), offset);

    // 4. Verify with the reader that Gatehouse uses: every entry found; reader == xorf.
    let bytes: &'static [u8] = Box::leak(out.clone().into_boxed_slice());
    let missing: Vec<&str> = chosen
        .iter()
        .filter(|(p, _)| !reader::contains(bytes, p))
        .map(|(p, _)| p.as_str())
        .take(5)
        .collect();
    if !missing.is_empty() {
        return Err(format!("reader misses entries, e.g. {missing:?}"));
    }
    println!("verified: reader finds all {} entries", chosen.len());
    for (i, b) in built.iter().enumerate() {
        let rebuilt = xorf_from_bytes(&out, i).ok_or("xorf_from_bytes failed")?;
        if !b.keys.iter().all(|k| rebuilt.contains(*k)) {
            return Err("a filter rebuilt from the file bytes misses a key".into());
        }
    }
    println!(
        "verified: xorf filters rebuilt from the file bytes (public fields, no serde) find every key"
    );
    let mut state = 0x0123_4567_89ab_cdef_u64;
    for b in &built {
        for &k in &b.keys {
            if !b.xorf.contains(k) {
                return Err("xorf misses a key".into());
            }
        }
        let lo = usize::from(b.spec.min_chars);
        let hi = if b.spec.max_chars == u16::MAX {
            lo + 12
        } else {
            usize::from(b.spec.max_chars)
        };
        let trials = 1_000_000u32;
        let mut hits = 0u32;
        for _ in 0..trials {
            let len = lo + (splitmix64(&mut state) as usize) % (hi - lo + 1);
            let s = random_string(&mut state, len);
            let r = reader::contains(bytes, &s);
            if r != b.xorf.contains(key_of(&s)) {
                return Err(format!("reader and xorf disagree on {s:?}"));
            }
            hits += u32::from(r);
        }
        let bits_per_entry = (b.fingerprints.len() * 8) as f64 / b.entries.max(1) as f64;
        println!(
            "section {}-{} chars, {}-bit: {} entries, {} fingerprints, {} bytes ({:.2} bits/entry), \
             seed {:#x}, segment length {}, expected FPR {:.5}%, measured {:.5}% ({hits}/{trials} random strings)",
            b.spec.min_chars,
            if b.spec.max_chars == u16::MAX {
                "∞".to_string()
            } else {
                b.spec.max_chars.to_string()
            },
            b.spec.bits,
            b.entries,
            b.fingerprint_count,
            b.fingerprints.len(),
            bits_per_entry,
            b.seed,
            b.segment_length,
            100.0 / f64::from(1u32 << b.spec.bits),
            100.0 * f64::from(hits) / f64::from(trials),
        );
    }

    std::fs::write(&args.output, &out).map_err(|e| format!("{}: {e}", args.output))?;
    let digest = Sha256::digest(&out);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "wrote {} ({} bytes = {:.1} KiB), sha256 {hex}",
        args.output,
        out.len(),
        out.len() as f64 / 1024.0
    );
    Ok(())
}

fn bucket_order(b: &str) -> usize {
    ["<8", "8", "9", "10", "11", "12-15", "16-19", "20+"]
        .iter()
        .position(|x| *x == b)
        .unwrap_or(99)
}

fn covers(spec: &SectionSpec, chars: usize) -> bool {
    usize::from(spec.min_chars) <= chars
        && (spec.max_chars == u16::MAX || chars <= usize::from(spec.max_chars))
}

fn build(spec: SectionSpec, entries: usize, keys: Vec<u64>) -> Result<Built, String> {
    let (descriptor, fingerprints, count, xorf) = match spec.bits {
        8 => {
            let f = BinaryFuse8::try_from(&keys).map_err(|e| e.to_string())?;
            let fp: Vec<u8> = f.fingerprints.to_vec();
            let n = fp.len();
            (f.descriptor.clone(), fp, n, XorfFilter::Eight(f))
        }
        _ => {
            let f = BinaryFuse16::try_from(&keys).map_err(|e| e.to_string())?;
            let fp: Vec<u8> = f
                .fingerprints
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let n = f.fingerprints.len();
            (f.descriptor.clone(), fp, n, XorfFilter::Sixteen(f))
        }
    };
    Ok(Built {
        spec,
        entries,
        seed: descriptor.seed,
        segment_length: descriptor.segment_length,
        segment_length_mask: descriptor.segment_length_mask,
        segment_count_length: descriptor.segment_count_length,
        fingerprints,
        fingerprint_count: count,
        keys,
        xorf,
    })
}

/// How Gatehouse could use `xorf` itself instead of `reader.rs`: the fields of `BinaryFuse8`,
/// `BinaryFuse16` and `Descriptor` are public, so no serde/bincode is needed (one copy of the
/// fingerprints into a `Box`, done once). Kept here to prove the file supports it.
fn xorf_from_bytes(bytes: &[u8], section: usize) -> Option<XorfFilter> {
    let at = HEADER_LEN + section * SECTION_LEN;
    let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let descriptor = xorf::Descriptor {
        seed: u64::from_le_bytes(bytes.get(at + 12..at + 20)?.try_into().ok()?),
        segment_length: u32_at(at + 20)?,
        segment_length_mask: u32_at(at + 24)?,
        segment_count_length: u32_at(at + 28)?,
    };
    let count = u32_at(at + 32)? as usize;
    let offset = u32_at(at + 36)? as usize;
    match *bytes.get(at + 4)? {
        8 => Some(XorfFilter::Eight(BinaryFuse8 {
            descriptor,
            fingerprints: bytes.get(offset..offset + count)?.into(),
        })),
        16 => Some(XorfFilter::Sixteen(BinaryFuse16 {
            descriptor,
            fingerprints: bytes
                .get(offset..offset + 2 * count)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        })),
        _ => None,
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_string(state: &mut u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789!#%&*+-=?@^_~ ";
    (0..len)
        .map(|_| char::from(ALPHABET[(splitmix64(state) % ALPHABET.len() as u64) as usize]))
        .collect()
}
