//! Identity: turning credentials into a principal, and logging in and out.

use super::{details, Caller, Registry, RequestSlot};
use crate::audit::{EventType, NewAuditEvent};
use crate::error::{Error, Result};
use crate::ports::{IssuedToken, Secret};
use crate::principal::Principal;

impl Registry {
    /// The principal a bearer token stands for, once it has drawn this
    /// request from its rate limit (`Error::TooManyRequests` when empty).
    pub async fn authenticate(&self, token: &Secret) -> Result<Principal> {
        let principal = self.identity.validate(token).await?;
        self.draw_request(&principal)?;
        Ok(principal)
    }

    /// Counts one request against the principal's rate limit, if any.
    fn draw_request(&self, principal: &Principal) -> Result<()> {
        match &self.rate {
            Some(rate) => rate.check(&principal.subject),
            None => Ok(()),
        }
    }

    /// Counts a request of `principal` as in flight until the slot is
    /// dropped; `Error::TooManyRequests` (retry after 1 s) when it has
    /// [`RegistryConfig::max_requests_in_flight`](super::RegistryConfig::max_requests_in_flight)
    /// already. The edge holds the slot while it reads the request's body
    /// and works on it, so a principal whose bodies trickle cannot take
    /// every connection the server has.
    pub fn begin_request(&self, principal: &Principal) -> Result<RequestSlot> {
        match &self.in_flight {
            Some(in_flight) => in_flight.begin(&principal.subject),
            None => Ok(RequestSlot::unlimited()),
        }
    }

    /// The principal behind a username and password sent with a request
    /// (HTTP Basic). A failure is audited; a success is not, since clients
    /// send the credentials with every request. Past
    /// [`RegistryConfig::login_limit`](super::RegistryConfig::login_limit)'s
    /// failures, `Error::TooManyRequests` without checking the password.
    pub async fn authenticate_password(
        &self,
        username: &str,
        password: &Secret,
        ip: Option<String>,
    ) -> Result<Principal> {
        let issued = self.login_or_audit(username, password, ip).await?;
        self.authenticate(&issued.token).await
    }

    /// Logs in with a username and password, for a token; failures are
    /// audited with the username (never the password), and limited as in
    /// [`Registry::authenticate_password`].
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
        ip: Option<String>,
    ) -> Result<(IssuedToken, Principal)> {
        let issued = self.login_or_audit(username, password, ip.clone()).await?;
        let principal = self.authenticate(&issued.token).await?;
        let caller = Caller {
            principal: principal.clone(),
            ip,
        };
        self.audit(
            &caller,
            EventType::Login,
            None,
            None,
            details([("username", username.to_string())]),
        )
        .await?;
        Ok((issued, principal))
    }

    async fn login_or_audit(
        &self,
        username: &str,
        password: &Secret,
        ip: Option<String>,
    ) -> Result<IssuedToken> {
        // Refused before the password is checked: that check is what a
        // guesser is after, and what costs the CPU.
        if let Some(logins) = &self.logins {
            logins.check(username, ip.as_deref())?;
        }
        let result = self.identity.login(username, password).await;
        if let Err(Error::Unauthenticated(_)) = &result {
            if let Some(logins) = &self.logins {
                logins.failed(username, ip.as_deref());
            }
            self.meta
                .record_audit(&NewAuditEvent {
                    time: self.clock.now(),
                    event_type: EventType::LoginFailed,
                    actor_id: None,
                    repository: None,
                    digest: None,
                    ip,
                    details: details([("username", username.to_string())]),
                })
                .await?;
        }
        result
    }

    /// Revokes the caller's token where the identity service can.
    pub async fn logout(&self, caller: &Caller, token: &Secret) -> Result<()> {
        self.identity.logout(token).await?;
        self.audit(caller, EventType::Logout, None, None, Default::default())
            .await
    }
}
