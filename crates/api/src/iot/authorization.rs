use ferrocore_model::ResourceKind;
use ferrocore_policy::Decision;
use ferrocore_registry::{AuthCheck, Registry, TestAuthorization};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Answer, reply};
use crate::input::Input;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthInfoDto {
    action_type: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TestAuthorizationDto {
    principal: Option<String>,
    #[serde(default)]
    auth_infos: Vec<AuthInfoDto>,
    #[serde(default)]
    policy_names_to_add: Vec<String>,
    #[serde(default)]
    policy_names_to_skip: Vec<String>,
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allowed => "ALLOWED",
        Decision::ExplicitDeny => "EXPLICIT_DENY",
        Decision::ImplicitDeny => "IMPLICIT_DENY",
    }
}

pub(super) async fn test_authorization(registry: &Registry, input: &Input) -> Answer {
    let dto: TestAuthorizationDto = input.json()?;
    let request = TestAuthorization {
        principal: dto.principal,
        client_id: input.query("clientId").map(str::to_string),
        policies_to_add: dto.policy_names_to_add,
        policies_to_skip: dto.policy_names_to_skip,
        checks: dto
            .auth_infos
            .into_iter()
            .map(|info| AuthCheck { action_type: info.action_type.unwrap_or_default(), resources: info.resources })
            .collect(),
    };
    let results = registry.test_authorization(&request).await?;
    let policies = |names: Vec<String>| -> Vec<Value> {
        names
            .into_iter()
            .map(|name| json!({"policyName": name, "policyArn": registry.arn(ResourceKind::Policy, &name)}))
            .collect()
    };
    let auth_results: Vec<Value> = results
        .into_iter()
        .map(|result| {
            json!({
                "authInfo": {"actionType": result.check.action_type, "resources": result.check.resources},
                "allowed": {"policies": policies(result.allowed)},
                "denied": {
                    "implicitDeny": {"policies": policies(result.implicit_deny)},
                    "explicitDeny": {"policies": policies(result.explicit_deny)},
                },
                "authDecision": decision_name(result.decision),
                "missingContextValues": [],
            })
        })
        .collect();
    reply(json!({"authResults": auth_results}))
}
