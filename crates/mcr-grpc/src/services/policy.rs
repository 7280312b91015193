//! PolicyService: rule CRUD, explain, and retention policies and runs.

use mcr_core::policy::RuleDraft;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert::{explain_input, required_body, rule_patch};
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

    async fn list_retention_policies(
        &self,
        req: Request<pb::ListRetentionPoliciesRequest>,
    ) -> Result<Response<pb::ListRetentionPoliciesResponse>, Status> {
        let caller = caller(&req)?;
        let policies = self
            .registry
            .list_retention_policies(&caller)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListRetentionPoliciesResponse {
            policies: policies.iter().map(Into::into).collect(),
        }))
    }

    async fn get_retention_policy(
        &self,
        req: Request<pb::GetRetentionPolicyRequest>,
    ) -> Result<Response<pb::RetentionPolicy>, Status> {
        let caller = caller(&req)?;
        let policy = self
            .registry
            .get_retention_policy(&caller, req.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new((&policy).into()))
    }

    async fn create_retention_policy(
        &self,
        req: Request<pb::CreateRetentionPolicyRequest>,
    ) -> Result<Response<pb::RetentionPolicy>, Status> {
        let caller = caller(&req)?;
        let spec = required_body(req.into_inner().body).map_err(status)?;
        let policy = self
            .registry
            .create_retention_policy(&caller, spec)
            .await
            .map_err(status)?;
        Ok(Response::new((&policy).into()))
    }

    async fn replace_retention_policy(
        &self,
        req: Request<pb::ReplaceRetentionPolicyRequest>,
    ) -> Result<Response<pb::RetentionPolicy>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let spec = required_body(r.body).map_err(status)?;
        let policy = self
            .registry
            .replace_retention_policy(&caller, r.id, spec)
            .await
            .map_err(status)?;
        Ok(Response::new((&policy).into()))
    }

    async fn delete_retention_policy(
        &self,
        req: Request<pb::DeleteRetentionPolicyRequest>,
    ) -> Result<Response<pb::DeleteRetentionPolicyResponse>, Status> {
        let caller = caller(&req)?;
        self.registry
            .delete_retention_policy(&caller, req.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteRetentionPolicyResponse {}))
    }

    async fn run_retention(
        &self,
        req: Request<pb::RunRetentionRequest>,
    ) -> Result<Response<pb::RetentionReport>, Status> {
        let caller = caller(&req)?;
        let report = self
            .registry
            .run_retention(&caller, req.into_inner().into())
            .await
            .map_err(status)?;
        Ok(Response::new((&report).into()))
    }

    async fn get_retention_status(
        &self,
        req: Request<pb::GetRetentionStatusRequest>,
    ) -> Result<Response<pb::RetentionStatus>, Status> {
        let caller = caller(&req)?;
        let s = self
            .registry
            .retention_status(&caller)
            .await
            .map_err(status)?;
        Ok(Response::new((&s).into()))
    }
}
