//! `mcrsrv`, as the UI reaches it: the gRPC services over one channel,
//! each call carrying the session's token.

use mcr_grpc::client::{BearerToken, Clients};
use tonic::transport::Channel;

use crate::error::UiError;
use crate::session::Session;

/// The gRPC channel to `mcrsrv`; clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct Backend {
    channel: Channel,
    addr: String,
}

impl Backend {
    pub fn new(channel: Channel, addr: String) -> Backend {
        Backend { channel, addr }
    }

    /// Where `mcrsrv` is, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The services, as the holder of `session` (anonymous without one).
    pub fn clients(&self, session: Option<&Session>) -> Result<Clients, UiError> {
        let token = BearerToken::new(session.map(|s| s.token.as_str()))
            .map_err(|e| UiError::Server(e.to_string()))?;
        Ok(Clients::new(self.channel.clone(), token))
    }

    /// Maps a failed call to what the page says; `UNAVAILABLE` names
    /// where `mcrsrv` was looked for.
    pub fn failed(&self, status: tonic::Status) -> UiError {
        UiError::from_status(status, &self.addr)
    }
}

/// Turns the engine's answer into its own types; an answer the UI cannot
/// read is the server's fault.
pub fn answer<T, M: TryInto<T, Error = mcr_core::Error>>(message: M) -> Result<T, UiError> {
    message
        .try_into()
        .map_err(|e| UiError::Server(format!("mcrsrv sent an answer the UI cannot read: {e}")))
}
