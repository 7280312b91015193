//! PolicyService: rule CRUD and explain.

use mcr_core::policy::RuleDraft;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert::{explain_input, rule_patch};
use crate::error::status;
use crate::interceptors::caller;
use crate::pb;
use crate::pb::policy_service_server::PolicyService;

#[tonic::async_trait]
impl PolicyService for Api {
    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let caller = caller(&req)?;
        let rules = self.registry.list_rules(&caller).await.map_err(status)?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(Into::into).collect(),
        }))
    }

    async fn get_rule(
        &self,
        req: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let caller = caller(&req)?;
        let rule = self
            .registry
            .get_rule(&caller, req.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new((&rule).into()))
    }

    async fn create_rule(
        &self,
        req: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let caller = caller(&req)?;
        let draft = RuleDraft::try_from(req.into_inner()).map_err(status)?;
        let rule = self
            .registry
            .create_rule(&caller, draft)
            .await
            .map_err(status)?;
        Ok(Response::new((&rule).into()))
    }

    async fn update_rule(
        &self,
        req: Request<pb::UpdateRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = r.id;
        let patch = rule_patch(r).map_err(status)?;
        let rule = self
            .registry
            .update_rule(&caller, id, patch)
            .await
            .map_err(status)?;
        Ok(Response::new((&rule).into()))
    }

    async fn delete_rule(
        &self,
        req: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let caller = caller(&req)?;
        self.registry
            .delete_rule(&caller, req.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteRuleResponse {}))
    }

    async fn explain(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let caller = caller(&req)?;
        let ask = explain_input(req.into_inner()).map_err(status)?;
        let e = self
            .registry
            .explain(
                &caller,
                &ask.principal,
                ask.action,
                ask.repository.as_ref(),
                ask.tag.as_ref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new((&e).into()))
    }
}
