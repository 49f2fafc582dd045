//! A receiver of perfsync's generic webhook: `POST /hooks/perfsync` with a JSON body signed
//! `X-Perfsync-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` under the shared
//! secret, checked the way a receiver of GitHub's webhooks checks them; 401 for a missing or
//! wrong signature, 415 for a body that is not JSON.

use super::{Fake, Req, Resp, State};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const PATH: &str = "/hooks/perfsync";

pub async fn start(secret: &str) -> Fake {
    let f = Fake::start(handle, "", "").await;
    f.state.lock().unwrap().secret = secret.to_string();
    f
}

pub fn url(f: &Fake) -> String {
    format!("{}{PATH}", f.base())
}

/// Whether `header` is the signature of `body` under `secret` (compared in constant time).
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(bytes) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

pub fn handle(s: &mut State, r: &Req) -> Resp {
    if r.path != PATH || r.method != "POST" {
        return Resp::text(404, "not found");
    }
    if r.json_object().is_none() {
        return Resp::text(415, "a JSON object please");
    }
    if !verify(&s.secret, &r.body, r.header("x-perfsync-signature-256")) {
        return Resp::text(401, "bad signature");
    }
    s.deliveries.push(r.clone());
    Resp::json(200, serde_json::json!({"ok": true}))
}
