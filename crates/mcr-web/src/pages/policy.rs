//! Policy (admin): the rules in force, built-ins included; a form that
//! creates one with every field; enabling and disabling inline (htmx swaps
//! the row); editing priority and description; deleting after a
//! confirmation; and explaining a decision.
//!
//! Values go to `mcrsrv` as typed and it validates them, so a refused
//! rule shows the API's own message beside the form, which keeps what was
//! typed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::Form;
use axum_extra::extract::WithRejection;
use mcr_core::policy::{Effect, Rule, RulePatch};
use mcr_core::principal::{AccountType, Action, Role};
use mcr_grpc::convert::update_rule_request;
use mcr_grpc::pb;
use serde::Deserialize;

use super::{choices, render, require_admin, Choice, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::{LoggedIn, Session};
use crate::state::Web;

const ACTIONS: [Action; 8] = [
    Action::Pull,
    Action::Push,
    Action::Delete,
    Action::Catalog,
    Action::VersionCheck,
    Action::PolicyManage,
    Action::TagOverwrite,
    Action::TagDelete,
];
const ROLES: [Role; 3] = [Role::Admin, Role::User, Role::Guest];
const ACCOUNT_TYPES: [AccountType; 2] = [AccountType::Human, AccountType::System];

/// A rule as a row shows it.
pub struct RuleRow {
    id: i64,
    builtin: bool,
    priority: u32,
    effect: String,
    actions: String,
    roles: String,
    account_types: String,
    subject: String,
    repositories: String,
    tags: String,
    description: String,
    enabled: bool,
}

fn any_or<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "any".into()
    } else {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl RuleRow {
    fn of(r: &Rule) -> RuleRow {
        RuleRow {
            id: r.id,
            builtin: r.is_builtin(),
            priority: r.priority,
            effect: r.effect.to_string(),
            actions: any_or(&r.actions),
            roles: any_or(&r.roles),
            account_types: any_or(&r.account_types),
            subject: r.subject.clone().unwrap_or_else(|| "any".into()),
            repositories: if r.repositories.is_empty() {
                "every repository".into()
            } else {
                any_or(&r.repositories)
            },
            tags: if r.tags.is_empty() {
                "every tag".into()
            } else {
                any_or(&r.tags)
            },
            description: r.description.clone(),
            enabled: r.enabled,
        }
    }
}

/// The new-rule form as typed (strings, so a refusal keeps them).
#[derive(Deserialize, Default)]
pub struct DraftForm {
    #[serde(default)]
    priority: String,
    #[serde(default)]
    effect: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    account_types: Vec<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    repositories: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    description: String,
    enabled: Option<String>,
}

/// The form's state for the template.
pub struct DraftView {
    priority: String,
    effect: String,
    subject: String,
    repositories: String,
    tags: String,
    description: String,
    enabled: bool,
}

/// The explain form's fields.
#[derive(Deserialize, Default)]
pub struct ExplainForm {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    account_type: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: String,
}

pub struct ExplainView {
    subject: String,
    repository: String,
    tag: String,
    account_choices: Vec<Choice>,
    role_choices: Vec<Choice>,
    action_choices: Vec<Choice>,
}

impl ExplainView {
    fn of(f: &ExplainForm) -> ExplainView {
        let one = |s: &str, default: &str| vec![if s.is_empty() { default } else { s }.to_string()];
        ExplainView {
            subject: f.subject.clone(),
            repository: f.repository.clone(),
            tag: f.tag.clone(),
            account_choices: choices(&ACCOUNT_TYPES, &one(&f.account_type, "human")),
            role_choices: choices(&ROLES, &f.roles),
            action_choices: choices(&ACTIONS, &one(&f.action, "registry:pull")),
        }
    }
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    chrome: Chrome,
    csrf: String,
    error: Option<String>,
    rules: Vec<RuleRow>,
    draft: DraftView,
    action_choices: Vec<Choice>,
    role_choices: Vec<Choice>,
    account_choices: Vec<Choice>,
    explain: ExplainView,
}

#[derive(Template)]
#[template(path = "policy_row.html")]
struct PolicyRow {
    r: RuleRow,
    csrf: String,
}

async fn rules(web: &Web, session: &Session) -> Result<Vec<Rule>, UiError> {
    let mut c = web.backend().clients(Some(session))?;
    let list = c
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .map_err(|s| web.backend().failed(s))?
        .into_inner();
    list.rules.into_iter().map(answer).collect()
}

/// The policy page, with `form` (and a refusal) in the new-rule form.
async fn policy_page(
    web: &Web,
    session: &Session,
    csrf: &CsrfToken,
    form: &DraftForm,
    error: Option<String>,
    notice: Option<String>,
) -> Result<Response, UiError> {
    let rules = rules(web, session).await?;
    let mut chrome = Chrome::new(session, csrf, "policy");
    chrome.notice = notice;
    render(&PolicyPage {
        chrome,
        csrf: csrf.0.clone(),
        error,
        rules: rules.iter().map(RuleRow::of).collect(),
        draft: DraftView {
            priority: form.priority.clone(),
            effect: if form.effect.is_empty() {
                "allow".into()
            } else {
                form.effect.clone()
            },
            subject: form.subject.clone(),
            repositories: form.repositories.clone(),
            tags: form.tags.clone(),
            description: form.description.clone(),
            enabled: form.enabled.is_some() || form.priority.is_empty(),
        },
        action_choices: choices(&ACTIONS, &form.actions),
        role_choices: choices(&ROLES, &form.roles),
        account_choices: choices(&ACCOUNT_TYPES, &form.account_types),
        explain: ExplainView::of(&ExplainForm::default()),
    })
}

#[derive(Deserialize)]
pub struct Notice {
    done: Option<String>,
}

/// `GET /policy`.
pub async fn page(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(Query(n), _): WithRejection<Query<Notice>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let notice = n.done.as_deref().and_then(|d| match d {
        "created" => Some("Rule created.".to_string()),
        "saved" => Some("Rule saved.".to_string()),
        "deleted" => Some("Rule deleted.".to_string()),
        "toggled" => Some("Rule changed.".to_string()),
        _ => None,
    });
    policy_page(&web, &session, &csrf, &DraftForm::default(), None, notice).await
}

/// Repository or tag patterns as typed: one per line or separated by
/// commas.
fn patterns(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /policy/rules`: creates a rule, or shows the form again with
/// the refusal.
pub async fn create(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(Form(form), _): WithRejection<Form<DraftForm>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let priority = match form.priority.trim().parse::<u32>() {
        Ok(p) => p,
        Err(_) => {
            let error = format!(
                "invalid priority: {:?} is not a whole number of 1 or more",
                form.priority
            );
            return refused(&web, &session, &csrf, &form, error).await;
        }
    };
    let request = pb::CreateRuleRequest {
        priority,
        description: form.description.clone(),
        effect: form.effect.clone(),
        actions: form.actions.clone(),
        roles: form.roles.clone(),
        account_types: form.account_types.clone(),
        subject: Some(form.subject.trim().to_string()).filter(|s| !s.is_empty()),
        repositories: patterns(&form.repositories),
        enabled: Some(form.enabled.is_some()),
        tags: patterns(&form.tags),
    };
    let mut c = web.backend().clients(Some(&session))?;
    match c.policy.create_rule(request).await {
        Ok(_) => Ok(Redirect::to("/policy?done=created").into_response()),
        Err(s) => match web.backend().failed(s) {
            UiError::Invalid(m) => refused(&web, &session, &csrf, &form, m).await,
            other => Err(other),
        },
    }
}

async fn refused(
    web: &Web,
    session: &Session,
    csrf: &CsrfToken,
    form: &DraftForm,
    error: String,
) -> Result<Response, UiError> {
    let page = policy_page(web, session, csrf, form, Some(error), None).await?;
    Ok((StatusCode::BAD_REQUEST, page).into_response())
}

async fn update(web: &Web, session: &Session, id: i64, patch: RulePatch) -> Result<Rule, UiError> {
    let mut c = web.backend().clients(Some(session))?;
    answer(
        c.policy
            .update_rule(update_rule_request(id, &patch))
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )
}

#[derive(Deserialize)]
pub struct EnabledForm {
    enabled: bool,
}

/// `POST /policy/rules/{id}/enabled`: the row again for htmx, else back
/// to the page.
pub async fn set_enabled(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    WithRejection(Path(id), _): WithRejection<Path<i64>, UiError>,
    WithRejection(Form(f), _): WithRejection<Form<EnabledForm>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let patch = RulePatch {
        enabled: Some(f.enabled),
        ..RulePatch::default()
    };
    let rule = update(&web, &session, id, patch).await?;
    if headers.contains_key("hx-request") {
        return render(&PolicyRow {
            r: RuleRow::of(&rule),
            csrf: csrf.0,
        });
    }
    Ok(Redirect::to("/policy?done=toggled").into_response())
}

#[derive(Deserialize)]
pub struct EditForm {
    priority: String,
    #[serde(default)]
    description: String,
}

/// `POST /policy/rules/{id}`: a new priority and description.
pub async fn edit(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    WithRejection(Path(id), _): WithRejection<Path<i64>, UiError>,
    WithRejection(Form(f), _): WithRejection<Form<EditForm>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let priority = f.priority.trim().parse::<u32>().map_err(|_| {
        UiError::Invalid(format!(
            "invalid priority: {:?} is not a whole number of 1 or more",
            f.priority
        ))
    })?;
    let patch = RulePatch {
        priority: Some(priority),
        description: Some(f.description),
        ..RulePatch::default()
    };
    update(&web, &session, id, patch).await?;
    Ok(Redirect::to("/policy?done=saved").into_response())
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete {
    chrome: Chrome,
    id: i64,
    summary: String,
}

/// `GET /policy/rules/{id}/delete`: are you sure?
pub async fn confirm_delete(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(Path(id), _): WithRejection<Path<i64>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let mut c = web.backend().clients(Some(&session))?;
    let rule: Rule = answer(
        c.policy
            .get_rule(pb::GetRuleRequest { id })
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )?;
    let row = RuleRow::of(&rule);
    render(&ConfirmDelete {
        chrome: Chrome::new(&session, &csrf, "policy"),
        id,
        summary: format!(
            "Priority {}: {} {} for roles {}, accounts {}, subject {}, on {}. {}",
            row.priority,
            row.effect,
            row.actions,
            row.roles,
            row.account_types,
            row.subject,
            row.repositories,
            row.description
        ),
    })
}

/// `POST /policy/rules/{id}/delete`.
pub async fn delete(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    WithRejection(Path(id), _): WithRejection<Path<i64>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let mut c = web.backend().clients(Some(&session))?;
    c.policy
        .delete_rule(pb::DeleteRuleRequest { id })
        .await
        .map_err(|s| web.backend().failed(s))?;
    Ok(Redirect::to("/policy?done=deleted").into_response())
}

pub struct ResultView {
    effect: String,
    rule_id: Option<i64>,
    text: String,
    verdicts: Vec<VerdictRow>,
}

pub struct VerdictRow {
    id: i64,
    priority: u32,
    effect: String,
    description: String,
    matched: bool,
    mismatch: String,
}

#[derive(Template)]
#[template(path = "explain.html")]
struct ExplainPage {
    chrome: Chrome,
    error: Option<String>,
    result: Option<ResultView>,
    explain: ExplainView,
}

/// `GET /policy/explain?subject=&account_type=&roles=&action=&repository=&tag=`.
pub async fn explain(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(axum_extra::extract::Query(f), _): WithRejection<
        axum_extra::extract::Query<ExplainForm>,
        UiError,
    >,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let mut c = web.backend().clients(Some(&session))?;
    let request = pb::ExplainRequest {
        subject: f.subject.trim().to_string(),
        account_type: f.account_type.clone(),
        roles: f.roles.clone(),
        action: f.action.clone(),
        repository: Some(f.repository.trim().to_string()).filter(|r| !r.is_empty()),
        tag: Some(f.tag.trim().to_string()).filter(|t| !t.is_empty()),
    };
    let (result, error) = match c.policy.explain(request).await {
        Ok(r) => (Some(result_view(r.into_inner())?), None),
        Err(s) => match web.backend().failed(s) {
            UiError::Invalid(m) => (None, Some(m)),
            other => return Err(other),
        },
    };
    render(&ExplainPage {
        chrome: Chrome::new(&session, &csrf, "policy"),
        error,
        result,
        explain: ExplainView::of(&f),
    })
}

fn result_view(e: pb::ExplainResponse) -> Result<ResultView, UiError> {
    let decision = e.decision.unwrap_or_default();
    let effect: Effect = decision
        .effect
        .parse()
        .map_err(|e: mcr_core::Error| UiError::Server(e.to_string()))?;
    let verdicts = e
        .rules
        .into_iter()
        .map(|v| {
            let rule: Rule = answer(v.rule.unwrap_or_default())?;
            Ok(VerdictRow {
                id: rule.id,
                priority: rule.priority,
                effect: rule.effect.to_string(),
                description: rule.description,
                matched: v.matched,
                mismatch: v.mismatch.unwrap_or_default().replace('_', " "),
            })
        })
        .collect::<Result<_, UiError>>()?;
    Ok(ResultView {
        effect: effect.to_string(),
        rule_id: decision.rule_id,
        text: e.text,
        verdicts,
    })
}
