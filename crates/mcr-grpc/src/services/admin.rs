//! AdminService: health, readiness and login, the calls that need no
//! token, logout, and database snapshots.

use mcr_core::ports::Secret;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert::timestamp;
use crate::error::status;
use crate::interceptors::{bearer_token, caller};
use crate::pb;
use crate::pb::admin_service_server::AdminService;

#[tonic::async_trait]
impl AdminService for Api {
    async fn health(
        &self,
        _req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(pb::HealthResponse {
            status: "ok".to_string(),
        }))
    }

    /// UNAVAILABLE naming what is wrong, as `GET /v1/ready`'s 503.
    async fn ready(
        &self,
        _req: Request<pb::ReadyRequest>,
    ) -> Result<Response<pb::ReadyResponse>, Status> {
        match self.registry.readiness().await.reason() {
            None => Ok(Response::new(pb::ReadyResponse {
                status: "ready".to_string(),
            })),
            Some(reason) => Err(Status::unavailable(format!("not ready: {reason}"))),
        }
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let ip = req.remote_addr().map(|a| a.ip().to_string());
        let r = req.into_inner();
        let (issued, principal) = self
            .registry
            .login(&r.username, &Secret::new(r.password), ip)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LoginResponse {
            token: issued.token.expose().to_string(),
            expires_at: Some(timestamp(issued.expires_at)),
            principal: Some((&principal).into()),
        }))
    }

    /// Revokes the token the call was authenticated with.
    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = caller(&req)?;
        let token = bearer_token(&req.metadata().clone().into_headers()).map_err(status)?;
        self.registry
            .logout(&caller, &token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let caller = caller(&req)?;
        let snapshot = self.registry.snapshot(&caller).await.map_err(status)?;
        Ok(Response::new(pb::SnapshotResponse {
            location: snapshot.location,
            taken_at: Some(timestamp(snapshot.taken_at)),
        }))
    }
}
