//! TOTP (RFC 6238) with totp-rs: SHA-1, 6 digits, 30-second steps, one step of skew either
//! way (RFC 6238 §5.2), the Key URI format of authenticator apps, and the QR code of it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
pub use totp_rs::Algorithm;

/// 160-bit secrets, the length RFC 4226 §4 recommends.
pub const SECRET_BYTES: usize = 20;
pub const DIGITS: u8 = 6;
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of now, for phones whose clocks drift.
pub const SKEW_STEPS: u16 = 1;

/// The parameters of one TOTP configuration; production uses [`Params::APP`].
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub step: u64,
}

impl Params {
    /// What every authenticator app supports.
    pub const APP: Params = Params {
        algorithm: Algorithm::SHA1,
        digits: DIGITS,
        step: STEP_SECONDS,
    };
}

fn totp(secret: &[u8], p: Params) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_algorithm(p.algorithm)
        .with_digits(p.digits)
        .with_skew(SKEW_STEPS)
        .with_step_duration(p.step)
        .with_secret(secret.to_vec())
        .build_noncompliant()
}

/// The time step a code belongs to, if it is valid at `unix_seconds` within the skew.
/// Comparison is constant-time; accepting each step once is the caller's job.
pub fn verify(secret: &[u8], p: Params, code: &str, unix_seconds: u64) -> Option<u64> {
    if code.len() != usize::from(p.digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, p).check(code, unix_seconds)
}

/// The code for `unix_seconds`: for tests, benchmarks and tools, never sent to a client.
pub fn generate(secret: &[u8], p: Params, unix_seconds: u64) -> String {
    totp(secret, p).generate(unix_seconds).to_string()
}

/// Base32 (RFC 4648) without padding: the manual-entry form of a secret.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::new(secret.to_vec().into_boxed_slice())
        .to_base32()
        .trim_end_matches('=')
        .to_owned()
}

/// Decodes the manual-entry form (padding optional, case-insensitive).
pub fn from_base32(s: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::try_from_base32(s.to_ascii_uppercase())
        .ok()
        .map(|s| s.as_bytes().to_vec())
}

/// Everything but RFC 3986 unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`
/// (Google Authenticator Key URI format), issuer and account URL-encoded.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let i = utf8_percent_encode(issuer, COMPONENT);
    let a = utf8_percent_encode(account, COMPONENT);
    format!(
        "otpauth://totp/{i}:{a}?secret={secret_base32}&issuer={i}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
}

/// A PNG QR code of `text` as a `data:image/png;base64,…` URI: black modules on white, with
/// the four-module quiet zone of ISO/IEC 18004, 6 pixels a module.
pub fn qr_png_data_uri(text: &str) -> Option<String> {
    const SCALE: usize = 6;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut png_bytes = Vec::new();
    {
        let side = u32::try_from(side).ok()?;
        let mut enc = png::Encoder::new(&mut png_bytes, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().ok()?;
        w.write_image_data(&pixels).ok()?;
    }
    Some(format!(
        "data:image/png;base64,{}",
        STANDARD.encode(png_bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: 8 digits, 30-second steps, the ASCII seeds of the reference
    /// implementation (20, 32 and 64 bytes for SHA-1, SHA-256 and SHA-512).
    #[test]
    fn rfc_6238_appendix_b_vectors_verify_at_their_step() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        for (time, c1, c256, c512) in rows {
            for (alg, seed, code) in [
                (Algorithm::SHA1, &sha1, c1),
                (Algorithm::SHA256, &sha256, c256),
                (Algorithm::SHA512, &sha512, c512),
            ] {
                let p = Params {
                    algorithm: alg,
                    digits: 8,
                    step: 30,
                };
                assert_eq!(
                    verify(seed, p, code, time),
                    Some(time / 30),
                    "{alg:?} at {time}"
                );
                assert_eq!(generate(seed, p, time), code);
                // Two steps away, the same code no longer verifies.
                assert_eq!(
                    verify(seed, p, code, time + 60),
                    None,
                    "{alg:?} at {time} + 60 s"
                );
            }
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let seed = [42u8; SECRET_BYTES];
        let t = 1_800_000_000;
        let code = generate(&seed, Params::APP, t);
        assert_eq!(verify(&seed, Params::APP, &code, t), Some(t / 30));
        assert_eq!(
            verify(&seed, Params::APP, &code, t + 30),
            Some(t / 30),
            "phone 30 s slow"
        );
        assert_eq!(
            verify(&seed, Params::APP, &code, t - 30),
            Some(t / 30),
            "phone 30 s fast"
        );
        assert_eq!(verify(&seed, Params::APP, &code, t + 60), None);
        assert_eq!(verify(&seed, Params::APP, &code, t - 60), None);
    }

    #[test]
    fn base32_round_trips() {
        let seed = [9u8; SECRET_BYTES];
        assert_eq!(from_base32(&base32(&seed)), Some(seed.to_vec()));
        assert_eq!(
            from_base32(&base32(&seed).to_lowercase()),
            Some(seed.to_vec())
        );
    }

    #[test]
    fn base32_has_no_padding() {
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert!(!base32(&[1, 2, 3]).contains('='));
    }

    #[test]
    fn the_uri_encodes_issuer_and_account() {
        let uri = otpauth_uri("Acme Corp", "alice+mfa@example.com", "ABC");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Corp:alice%2Bmfa%40example.com?secret=ABC&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn malformed_codes_never_verify() {
        let s = [7u8; 20];
        for code in ["", "12345", "1234567", "12345a", " 12345", "１２３４５６"] {
            assert_eq!(verify(&s, Params::APP, code, 1_000_000), None, "{code:?}");
        }
    }
}
