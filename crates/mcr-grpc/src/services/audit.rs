//! AuditService: the audit log with the REST API's filters.

use mcr_core::audit::AuditQuery;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::status;
use crate::interceptors::caller;
use crate::pb;
use crate::pb::audit_service_server::AuditService;

#[tonic::async_trait]
impl AuditService for Api {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&req)?;
        let query = AuditQuery::try_from(req.into_inner()).map_err(status)?;
        let events = self
            .registry
            .audit_events(&caller, query)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.iter().map(Into::into).collect(),
        }))
    }
}
