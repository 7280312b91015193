//! RegistryService: repositories, manifests, the dashboard, garbage
//! collection, reconcile, the pull-through cache's mirrors.

use mcr_core::names::{Reference, RepoName};
use mcr_core::quota::QuotaDraft;
use mcr_core::registry::{RepoListing, DEFAULT_EVENTS_LISTED, GC_RUNS_DEFAULT};
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::status;
use crate::interceptors::caller;
use crate::pb;
use crate::pb::registry_service_server::RegistryService;

#[tonic::async_trait]
impl RegistryService for Api {
    async fn list_repositories(
        &self,
        req: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        let caller = caller(&req)?;
        let listing = RepoListing::try_from(req.into_inner()).map_err(status)?;
        let page = self
            .registry
            .repository_summaries(&caller, listing)
            .await
            .map_err(status)?;
        Ok(Response::new((&page).into()))
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::ManifestDetail>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let repo = RepoName::new(&r.repository).map_err(status)?;
        let reference = Reference::parse(&r.reference).map_err(status)?;
        let detail = self
            .registry
            .manifest_detail(&caller, &repo, &reference)
            .await
            .map_err(status)?;
        Ok(Response::new((&detail).into()))
    }

    async fn get_dashboard(
        &self,
        req: Request<pb::GetDashboardRequest>,
    ) -> Result<Response<pb::Dashboard>, Status> {
        let caller = caller(&req)?;
        let d = self.registry.dashboard(&caller).await.map_err(status)?;
        Ok(Response::new((&d).into()))
    }

    async fn get_repository(
        &self,
        req: Request<pb::GetRepositoryRequest>,
    ) -> Result<Response<pb::RepositoryDetail>, Status> {
        let caller = caller(&req)?;
        let repo = RepoName::new(&req.get_ref().name).map_err(status)?;
        let detail = self
            .registry
            .repository_detail(&caller, &repo)
            .await
            .map_err(status)?;
        Ok(Response::new((&detail).into()))
    }

    async fn delete_repository(
        &self,
        req: Request<pb::DeleteRepositoryRequest>,
    ) -> Result<Response<pb::DeleteRepositoryResponse>, Status> {
        let caller = caller(&req)?;
        let repo = RepoName::new(&req.get_ref().name).map_err(status)?;
        self.registry
            .delete_repository(&caller, &repo)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteRepositoryResponse {}))
    }

    /// Claims the GC slot, answers with the run's id and runs it in the
    /// background (in the program's task tracker), as `POST /v1/gc` does.
    async fn garbage_collect(
        &self,
        req: Request<pb::GarbageCollectRequest>,
    ) -> Result<Response<pb::GarbageCollectResponse>, Status> {
        let caller = caller(&req)?;
        let run = self.registry.start_gc(&caller).await.map_err(status)?;
        let id = run.id().to_string();
        // The run logs, audits and records its own outcome; the tracker's
        // owner waits for it on shutdown.
        self.tasks.spawn(run.run());
        Ok(Response::new(pb::GarbageCollectResponse { id }))
    }

    async fn get_gc_status(
        &self,
        req: Request<pb::GetGcStatusRequest>,
    ) -> Result<Response<pb::GcStatus>, Status> {
        let caller = caller(&req)?;
        let s = self.registry.gc_status(&caller).await.map_err(status)?;
        Ok(Response::new((&s).into()))
    }

    async fn list_gc_runs(
        &self,
        req: Request<pb::ListGcRunsRequest>,
    ) -> Result<Response<pb::ListGcRunsResponse>, Status> {
        let caller = caller(&req)?;
        let n = match req.get_ref().n {
            0 => GC_RUNS_DEFAULT,
            n => n as usize,
        };
        let runs = self.registry.gc_runs(&caller, n).await.map_err(status)?;
        Ok(Response::new(pb::ListGcRunsResponse {
            runs: runs.iter().map(Into::into).collect(),
        }))
    }

    async fn reconcile(
        &self,
        req: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let caller = caller(&req)?;
        let report = self.registry.reconcile(&caller).await.map_err(status)?;
        Ok(Response::new((&report).into()))
    }

    async fn list_proxies(
        &self,
        req: Request<pb::ListProxiesRequest>,
    ) -> Result<Response<pb::ListProxiesResponse>, Status> {
        let caller = caller(&req)?;
        let proxies = self.registry.proxies(&caller).await.map_err(status)?;
        Ok(Response::new(pb::ListProxiesResponse {
            proxies: proxies.iter().map(pb::Proxy::from).collect(),
        }))
    }

    async fn drop_proxy_cache(
        &self,
        req: Request<pb::DropProxyCacheRequest>,
    ) -> Result<Response<pb::DropProxyCacheResponse>, Status> {
        let caller = caller(&req)?;
        let repo = RepoName::new(&req.get_ref().repository).map_err(status)?;
        self.registry
            .drop_proxy_cache(&caller, &repo)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DropProxyCacheResponse {}))
    }

    async fn list_webhooks(
        &self,
        req: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let caller = caller(&req)?;
        let hooks = self
            .registry
            .webhook_status(&caller)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: hooks.iter().map(pb::Webhook::from).collect(),
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let limit = match r.limit {
            0 => DEFAULT_EVENTS_LISTED,
            n => n as usize,
        };
        let events = self
            .registry
            .list_events(&caller, r.after, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListEventsResponse {
            events: events.iter().map(pb::Event::from).collect(),
        }))
    }

    async fn list_quotas(
        &self,
        req: Request<pb::ListQuotasRequest>,
    ) -> Result<Response<pb::ListQuotasResponse>, Status> {
        let caller = caller(&req)?;
        let quotas = self.registry.quotas(&caller).await.map_err(status)?;
        Ok(Response::new(pb::ListQuotasResponse {
            quotas: quotas.iter().map(pb::Quota::from).collect(),
        }))
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::Quota>, Status> {
        let caller = caller(&req)?;
        let draft = QuotaDraft {
            scope: req.get_ref().scope.clone(),
            limit_bytes: req.get_ref().limit_bytes,
        };
        let quota = self
            .registry
            .set_quota(&caller, &draft)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::Quota::from(&quota)))
    }

    async fn delete_quota(
        &self,
        req: Request<pb::DeleteQuotaRequest>,
    ) -> Result<Response<pb::DeleteQuotaResponse>, Status> {
        let caller = caller(&req)?;
        self.registry
            .delete_quota(&caller, req.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteQuotaResponse {}))
    }
}
