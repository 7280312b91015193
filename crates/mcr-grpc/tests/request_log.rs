//! The request log: one line per call with method, peer, code and
//! duration, and never the bearer token. Its own test binary, so that no
//! other test's threads race the log subscriber it installs.

mod support;

use std::sync::Arc;

use mcr_core::testing::admin;
use mcr_grpc::pb;
use support::Server;

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_request_log_names_method_peer_and_code_but_never_the_token() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let s = Server::start().await;
    let token = s.token(admin());
    let mut c = s.clients(Some(&token)).await;
    c.registry
        .get_gc_status(pb::GetGcStatusRequest {})
        .await
        .unwrap();
    let mut anon = s.anonymous().await;
    let _ = anon.policy.list_rules(pb::ListRulesRequest {}).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("grpc request done"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("/mcr.v1.RegistryService/GetGCStatus"),
        "{text}"
    );
    assert!(lines[0].contains("peer=127.0.0.1:"), "{text}");
    assert!(
        lines[0].contains("code=Ok") && lines[0].contains("duration_ms="),
        "{text}"
    );
    assert!(
        lines[1].contains("/mcr.v1.PolicyService/ListRules"),
        "{text}"
    );
    assert!(lines[1].contains("code=Unauthenticated"), "{text}");
    assert!(!text.contains(&token), "the token leaked: {text}");
}
