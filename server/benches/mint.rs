//! Assertion-minting benchmark: how many Salesforce JWT-bearer assertions (RS256, RSA 2048) and
//! Entra ID client assertions (PS256, RSA 2048, `x5t` + `x5t#S256` header) one core signs per
//! second, beside `openssl speed rsa2048` on the same machine in the same run.
//!
//! - `AssertionSigner`: the key parsed once into aws-lc-rs (what connvault uses), RS256 and
//!   PS256 (`entra::assertion`, fresh claims with a new `jti` each);
//! - `jsonwebtoken::encode` with `EncodingKey::from_rsa_der`, which parses the key on every call
//!   (for comparison);
//! - `openssl speed -seconds 3 rsa2048` as a subprocess: its `sign/s` figure.
//!
//! Every mint builds fresh claims (a new random `jti`) and the whole compact JWT, on one thread.
//! OpenSSL divides by the CPU time it used, so mints/s are also given per CPU second of the
//! benchmark thread (`/proc/thread-self/schedstat`), and the ratio uses that: other work on the
//! machine then changes neither figure much. Rounds alternate between the three and the best
//! round of each counts.
//!
//!     cargo bench -p server --bench mint
//!
//! `MINT_ROUNDS` (default 3) and `MINT_SECONDS` (default 3) change the rounds and their length.

use std::process::Command;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use server::assertion::HeaderExtras;
use server::providers::salesforce::jwt::{AssertionSigner, Claims};

const CONSUMER_KEY: &str = "3MVG9benchmarkconsumerkey";
const USERNAME: &str = "integration+bench@acme.com";
const AUDIENCE: &str = "https://login.salesforce.com";

/// Nanoseconds this thread has run on a CPU, if the kernel says (Linux schedstat).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse::<u64>().ok().map(Duration::from_nanos)
}

#[derive(Clone, Copy, Default)]
struct Rate {
    /// Mints per wall-clock second.
    wall: f64,
    /// Mints per CPU second of this thread (falls back to wall-clock).
    cpu: f64,
}

/// Calls `mint` for `seconds`, checking the clock every 16 mints.
fn measure(seconds: f64, mut mint: impl FnMut() -> usize) -> Rate {
    let limit = Duration::from_secs_f64(seconds);
    let (start, cpu_start) = (Instant::now(), thread_cpu());
    let mut n = 0usize;
    let mut bytes = 0usize;
    while start.elapsed() < limit {
        for _ in 0..16 {
            bytes += mint();
        }
        n += 16;
    }
    let wall = start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    let cpu = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => wall,
    };
    Rate { wall: n as f64 / wall, cpu: n as f64 / cpu }
}

fn claims() -> Claims {
    Claims::new(CONSUMER_KEY, USERNAME, AUDIENCE, chrono::Utc::now().timestamp())
}

/// `openssl speed -seconds N rsa2048`: its RSA-2048 signatures per second, or why there is none.
fn openssl_speed(seconds: u32) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .output()
        .map_err(|e| format!("openssl could not be run ({e}); is it installed?"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("openssl speed failed ({}): {}", out.status, stderr.trim()));
    }
    parse_sign_table(&stdout)
        .or_else(|| parse_sign_progress(&stderr))
        .or_else(|| parse_sign_progress(&stdout))
        .ok_or_else(|| format!("no RSA 2048 sign/s figure in openssl's output:\n{stdout}{stderr}"))
}

/// The summary table, in any OpenSSL 1.1/3.x layout:
///
/// ```text
///                   sign    verify    sign/s verify/s
/// rsa 2048 bits 0.000690s 0.000020s   1449.3  49367.3
/// ```
///
/// (3.2+ adds encrypt/decrypt columns, labels may read `rsa  2048 bits` or `rsa2048`). The row's
/// figures are its last fields, one per header column, so `sign/s` is found by position from the
/// right, whatever the label looks like.
fn parse_sign_table(text: &str) -> Option<f64> {
    let mut columns: Option<Vec<&str>> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.contains(&"sign/s") {
            columns = Some(fields);
            continue;
        }
        let Some(cols) = &columns else { continue };
        if fields.len() <= cols.len() {
            continue;
        }
        let (label, values) = fields.split_at(fields.len() - cols.len());
        let label = label.join(" ").to_ascii_lowercase();
        let is_rsa2048 = label.starts_with("rsa") && label.split(|c: char| !c.is_ascii_digit()).any(|d| d == "2048");
        if !is_rsa2048 {
            continue;
        }
        let at = cols.iter().position(|c| *c == "sign/s")?;
        if let Some(v) = values[at].parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0) {
            return Some(v);
        }
    }
    None
}

/// The progress lines, when no table could be read:
/// `Doing 2048 bits private rsa's for 3s: 4349 2048 bits private RSA's in 3.00s` (3.0) or
/// `… private rsa sign ops for 3s: 4349 2048 bits private RSA sign ops in 2.99s` (3.2+).
fn parse_sign_progress(text: &str) -> Option<f64> {
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if !lower.contains("2048 bits private rsa") {
            continue;
        }
        let (_, done) = lower.split_once(": ")?;
        let count: f64 = done.split_whitespace().next()?.parse().ok()?;
        let secs: f64 = done.rsplit_once(" in ")?.1.trim().trim_end_matches('s').parse().ok()?;
        if secs > 0.0 {
            return Some(count / secs);
        }
    }
    None
}

/// The parsers against the layouts of OpenSSL 3.0 and 3.2+ (and a compact label), so that a
/// format change fails loudly here instead of skewing the ratio.
fn check_parsers() {
    let v30 = "                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.000690s 0.000020s   1449.3  49367.3\n";
    let v32 = "version: 3.2.1\n                   sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s\n\
               rsa   512 bits 0.000046s 0.000003s 0.000003s 0.000046s  21739.1 333333.3 312500.0  21739.1\n\
               rsa  2048 bits 0.000651s 0.000019s 0.000020s 0.000644s   1536.4  53028.5  49845.6   1553.3\n";
    let compact = "                    sign    verify    sign/s verify/s\nrsa2048 0.000700s 0.000021s   1428.6  47619.0\n";
    assert_eq!(parse_sign_table(v30), Some(1449.3));
    assert_eq!(parse_sign_table(v32), Some(1536.4));
    assert_eq!(parse_sign_table(compact), Some(1428.6));
    assert_eq!(parse_sign_table("nothing here\n"), None);
    let p30 = "Doing 2048 bits private rsa's for 3s: 4350 2048 bits private RSA's in 3.00s\n";
    let p32 = "Doing 2048 bits private rsa sign ops for 3s: 4350 2048 bits private RSA sign ops in 3.00s\n";
    assert_eq!(parse_sign_progress(p30), Some(1450.0));
    assert_eq!(parse_sign_progress(p32), Some(1450.0));
}

fn main() {
    check_parsers();
    let rounds: usize = std::env::var("MINT_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(3);
    let seconds: u32 = std::env::var("MINT_SECONDS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(3);

    let issued = server::certs::issue(2048, "Bench", "DEV", time::OffsetDateTime::now_utc()).expect("an RSA 2048 key");
    let pkcs8 = issued.private_key.expose_secret();
    let signer = AssertionSigner::from_pkcs8_der(pkcs8).expect("the key parses");
    assert_eq!(signer.bits(), 2048);
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::PrivateKey::from_pkcs8_der(pkcs8).expect("PKCS#8");
        key.to_pkcs1_der().expect("PKCS#1").as_bytes().to_vec()
    };
    let encoding_key = EncodingKey::from_rsa_der(&pkcs1);
    let certificate_der = server::assertion::certificate_der_from_pem(&issued.certificate_pem).expect("the certificate");
    let token_url = server::entra::token_url(server::entra::DEFAULT_AUTHORITY, "contoso.onmicrosoft.com");
    let ps256 = || server::entra::assertion(&signer, &certificate_der, "00000000-0000-4000-8000-000000000000", &token_url, chrono::Utc::now().timestamp());
    assert!(ps256().unwrap().starts_with(&{
        use base64::Engine;
        let extras = HeaderExtras::for_certificate(&certificate_der);
        let header = format!(r#"{{"typ":"JWT","alg":"PS256","x5t":"{}","x5t#S256":"{}"}}"#, extras.x5t.unwrap(), extras.x5t_s256.unwrap());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
    }));
    let header = Header::new(Algorithm::RS256);

    // Both produce assertions the same verifier accepts.
    let a = signer.assertion(&claims()).unwrap();
    let b = jsonwebtoken::encode(&header, &claims(), &encoding_key).unwrap();
    assert_eq!(a.split('.').count(), 3);
    assert_eq!(a.split('.').next(), b.split('.').next(), "the same JWT header");

    let mut best_signer = Rate::default();
    let mut best_jwt = Rate::default();
    let mut best_ps256 = Rate::default();
    let mut best_openssl: Result<f64, String> = Err("not run".into());
    let secs = f64::from(seconds);
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: openssl speed -seconds {seconds} rsa2048, AssertionSigner RS256 and PS256, jsonwebtoken::encode");
        let o = openssl_speed(seconds);
        best_openssl = match (best_openssl, o) {
            (Ok(x), Ok(y)) => Ok(x.max(y)),
            (_, Ok(y)) => Ok(y),
            (Ok(x), Err(_)) => Ok(x),
            (Err(_), Err(e)) => Err(e),
        };
        let s = measure(secs, || signer.assertion(&claims()).unwrap().len());
        let j = measure(secs, || jsonwebtoken::encode(&header, &claims(), &encoding_key).unwrap().len());
        let p = measure(secs, || ps256().unwrap().len());
        eprintln!(
            "  signer {:.0}/s ({:.0}/CPU s), PS256 {:.0}/s ({:.0}/CPU s), encode {:.0}/s ({:.0}/CPU s), openssl {}",
            s.wall,
            s.cpu,
            p.wall,
            p.cpu,
            j.wall,
            j.cpu,
            best_openssl.as_ref().map(|v| format!("{v:.1} sign/s")).unwrap_or_else(|e| e.clone())
        );
        if s.cpu > best_signer.cpu {
            best_signer = s;
        }
        if j.cpu > best_jwt.cpu {
            best_jwt = j;
        }
        if p.cpu > best_ps256.cpu {
            best_ps256 = p;
        }
    }

    println!();
    println!("Assertions (RSA 2048) on one thread, best of {rounds} rounds of {seconds} s:");
    println!();
    println!("| signer | mints/s (wall) | mints per CPU s | × openssl sign/s |");
    println!("|---|---|---|---|");
    let ratio = |r: Rate| match &best_openssl {
        Ok(o) => format!("{:.2}", r.cpu / o),
        Err(_) => "n/a".into(),
    };
    println!("| `AssertionSigner` (key parsed once, aws-lc-rs) | {:.0} | {:.0} | {} |", best_signer.wall, best_signer.cpu, ratio(best_signer));
    println!("| `AssertionSigner` PS256 (Entra: x5t, x5t#S256) | {:.0} | {:.0} | {} |", best_ps256.wall, best_ps256.cpu, ratio(best_ps256));
    println!("| `jsonwebtoken::encode` + `EncodingKey::from_rsa_der` | {:.0} | {:.0} | {} |", best_jwt.wall, best_jwt.cpu, ratio(best_jwt));
    match &best_openssl {
        Ok(o) => println!("| `openssl speed -seconds {seconds} rsa2048` (sign/s) | | {o:.1} | 1.00 |"),
        Err(e) => println!("| `openssl speed rsa2048` | skipped: {e} | | |"),
    }
    if let Ok(o) = &best_openssl {
        println!();
        for (name, rate) in [("AssertionSigner RS256", best_signer), ("AssertionSigner PS256", best_ps256)] {
            let r = rate.cpu / o;
            println!("{name}: {r:.2}× OpenSSL's RSA-2048 signatures per second (aim ≥ 0.80×): {}", if r >= 0.8 { "met" } else { "NOT met" });
        }
    }
}
