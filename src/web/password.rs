//! Argon2id hashing and verification of the status page's passwords, with argon2's working memory in
//! a buffer of its own that goes back to the system as soon as the check ends.
//!
//! Why: one check at the default cost fills 19 MiB. Allocated through the global allocator, glibc
//! serves it from per-thread arenas (its mmap threshold grows after the first free of such a block) and
//! keeps it: 100 concurrent logins left tend at 1.5 GiB for good. Here every hash maps an anonymous
//! region, hands it to `Argon2::hash_password_into_with_memory`, and unmaps it, so the resident size
//! after any number of logins is what it was before. Measured on `tend up` with 1,000 concurrent
//! logins, one check at a time: through the global allocator 32 -> 131 MB kept; the same plus
//! `malloc_trim(0)` after each check 32 -> 52 MB kept; this mapping 32 -> 35 MB.
//!
//! Also the bounds on the cost parameters a stored hash may carry ([`check_cost`]): a hash is
//! verified with its own parameters, so an absurd `m` in the configuration would be a memory bomb on
//! every login. Owns no state; must not know about users, sessions or the limiter.

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The largest memory cost a stored hash may ask for, in KiB (64 MiB; the default is 19 MiB).
pub const MAX_M_KIB: u32 = 64 * 1024;
/// The largest number of passes.
pub const MAX_T: u32 = 10;
/// The largest parallelism (lanes are computed one after another here: it only costs time).
pub const MAX_P: u32 = 8;

/// Argon2's blocks in an anonymous mapping, unmapped on drop.
struct Blocks {
    ptr: *mut Block,
    count: usize,
}

impl Blocks {
    fn map(count: usize) -> Result<Blocks, String> {
        let len = count * std::mem::size_of::<Block>();
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {} KiB for argon2: {}",
                len / 1024,
                std::io::Error::last_os_error()
            ));
        }
        Ok(Blocks {
            ptr: ptr.cast(),
            count,
        })
    }
}

impl AsMut<[Block]> for Blocks {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is page-aligned (Block needs 64), zero-filled (a valid Block), `count`
        // blocks long, and borrowed mutably through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.count) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: exactly the region `map` returned.
        unsafe {
            libc::munmap(self.ptr.cast(), self.count * std::mem::size_of::<Block>());
        }
    }
}

/// Argon2id of `password` with `params` and `salt` into `out`, in a mapping of its own.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let blocks = Blocks::map(params.block_count())?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, out, blocks)
        .map_err(|e| e.to_string())
}

/// Hashes `password` with argon2id (default cost) and a random salt; the PHC string `[[web.users]]`
/// takes.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password.as_bytes(),
        salt_raw,
        &mut out,
    )?;
    let output = Output::new(&out).map_err(|e| e.to_string())?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${output}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str()
    ))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash, or one over the cost bounds,
/// matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    verify(hash, password).unwrap_or(false)
}

fn verify(hash: &str, password: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| e.to_string())?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    check_cost(&params)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; expected.len()];
    compute(
        algorithm,
        version,
        params,
        password.as_bytes(),
        salt,
        &mut out,
    )?;
    let computed = Output::new(&out).map_err(|e| e.to_string())?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

/// Refuses cost parameters over [`MAX_M_KIB`], [`MAX_T`] and [`MAX_P`], saying which and why.
pub fn check_cost(params: &Params) -> Result<(), String> {
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P {
        return Err(format!(
            "its cost (m={m} KiB, t={t}, p={p}) is over what tend verifies (m <= {MAX_M_KIB}, \
             t <= {MAX_T}, p <= {MAX_P}): every login would take that much memory and time"
        ));
    }
    Ok(())
}

/// The memory a check of `hash` takes, in KiB (its `m`; the default cost if it does not parse).
pub fn memory_kib(hash: &str) -> u32 {
    PasswordHash::new(hash)
        .ok()
        .and_then(|parsed| Params::try_from(&parsed).ok())
        .map_or(Params::DEFAULT_M_COST, |p| p.m_cost())
}

/// [`check_cost`] of a PHC string's parameters; `Ok` for a string that is not argon2 at all (that is
/// reported elsewhere).
pub fn check_hash_cost(hash: &str) -> Result<(), String> {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Ok(());
    };
    match Params::try_from(&parsed) {
        Ok(params) => check_cost(&params),
        Err(e) => Err(format!(
            "its parameters are not valid argon2 parameters: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn the_mapped_hash_is_plain_argon2id_both_ways() {
        let ours = hash_password("correct horse battery").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(&theirs, "correct horse battery"));
        assert!(!verify_password(&theirs, "correct horse battery "));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn costs_over_the_bounds_are_refused_and_never_computed() {
        let params = Params::new(MAX_M_KIB + 1, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let costly = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let err = check_hash_cost(&costly).unwrap_err();
        assert!(err.contains("m=65537"), "{err}");
        assert!(!verify_password(&costly, "pw"), "refused, not verified");
        let within = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        assert!(check_hash_cost(within).is_ok());
        assert!(
            check_hash_cost("$argon2id$v=19$m=19456,t=99,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA").is_err()
        );
    }
}
