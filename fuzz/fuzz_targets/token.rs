//! The local identity's token verifier, through `TokenValidator::validate`
//! with a fixed key and clock. The first input byte picks the mode: `'0'`
//! takes the rest as the token; `'1'` takes it as the claims and signs them
//! with the key first, so the fuzzer reaches the claims parser behind the
//! MAC.
//!
//! A token is accepted only if its tag is the key's MAC of its payload in
//! canonical base64url (so no other spelling of a signed token passes),
//! and only before it expires; the principal is the one the claims name.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use mcr_adapters::local_identity::{Key, LocalIdentity, KEY_LEN};
use mcr_core::ports::{Secret, TokenValidator};
use mcr_core::time::{Clock, Timestamp};
use sha2::Sha256;

const KEY: [u8; KEY_LEN] = *b"mcr fuzz key, never a real one!!";
/// 2024-01-01T00:00:00Z; the seed tokens expire a year later.
const NOW: Timestamp = Timestamp::from_millis(1_704_067_200_000);

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        NOW
    }
}

fn identity() -> &'static LocalIdentity {
    static IDENTITY: OnceLock<LocalIdentity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        LocalIdentity::with_key(
            Vec::new(),
            Key::from_bytes(KEY),
            Duration::from_secs(3600),
            Arc::new(Fixed),
        )
        .expect("an identity without users")
    })
}

/// The key's tag for `payload`, as a token carries it.
fn tag(payload: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("any key length");
    m.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        s.to_string()
    } else {
        let payload = URL_SAFE_NO_PAD.encode(rest);
        let tag = tag(&payload);
        format!("{payload}.{tag}")
    };
    let Ok(principal) =
        futures_executor::block_on(identity().validate(&Secret::new(token.clone())))
    else {
        return;
    };
    let (payload, sent_tag) = token.split_once('.').expect("an accepted token has a tag");
    assert_eq!(
        sent_tag,
        tag(payload),
        "accepted a tag the key did not make"
    );
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .expect("an accepted payload is base64url"),
    )
    .expect("accepted claims are JSON");
    assert!(claims["exp"].as_i64().expect("exp is a number") > NOW.as_millis());
    assert_eq!(claims["sub"].as_str(), Some(principal.subject.as_str()));
    assert_eq!(claims["name"].as_str(), principal.username.as_deref());
});
