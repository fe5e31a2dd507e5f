//! IAM authorization of the `iot` control plane for access keys with a policy.
//!
//! On AWS an IAM identity's policy decides which control-plane calls it may make;
//! here an access key's `[[credentials]]` policy plays that part. The action is
//! `iot:<Operation>` and the resources are the ones the IAM Service Authorization
//! Reference lists for it (research note: `iam_table.md`): the ARN of the thing,
//! group, certificate, policy, rule, ... the request names, the ARN a create will
//! give the new resource, or `*` for actions without a resource type. Every
//! resource a request names must be allowed. A key without a policy may do everything.

use axum::http::StatusCode;
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;
use crate::input::Input;

/// What IAM evaluates for a request: `(resource kind, path label)` ARNs, others named in the body.
fn labelled(operation: &str) -> Option<(&'static str, &'static str)> {
    Some(match operation {
        "CreateThing"
        | "DescribeThing"
        | "UpdateThing"
        | "DeleteThing"
        | "ListThingGroupsForThing"
        | "ListThingPrincipals"
        | "ListThingPrincipalsV2" => ("thing", "thingName"),
        "CreateThingType" | "DescribeThingType" | "UpdateThingType" | "DeprecateThingType" | "DeleteThingType" => {
            ("thingtype", "thingTypeName")
        }
        "CreateThingGroup"
        | "DescribeThingGroup"
        | "UpdateThingGroup"
        | "DeleteThingGroup"
        | "ListThingsInThingGroup" => ("thinggroup", "thingGroupName"),
        "CreateBillingGroup"
        | "DescribeBillingGroup"
        | "UpdateBillingGroup"
        | "DeleteBillingGroup"
        | "ListThingsInBillingGroup" => ("billinggroup", "billingGroupName"),
        "DescribeCertificate" | "UpdateCertificate" | "DeleteCertificate" => ("cert", "certificateId"),
        "DescribeCACertificate" | "UpdateCACertificate" | "DeleteCACertificate" => ("cacert", "caCertificateId"),
        "CreatePolicy"
        | "GetPolicy"
        | "DeletePolicy"
        | "CreatePolicyVersion"
        | "GetPolicyVersion"
        | "ListPolicyVersions"
        | "DeletePolicyVersion"
        | "SetDefaultPolicyVersion"
        | "ListTargetsForPolicy" => ("policy", "policyName"),
        "CreateRoleAlias" | "DescribeRoleAlias" | "UpdateRoleAlias" | "DeleteRoleAlias" => ("rolealias", "roleAlias"),
        "CreateTopicRule" | "GetTopicRule" | "ReplaceTopicRule" | "DeleteTopicRule" | "EnableTopicRule"
        | "DisableTopicRule" => ("rule", "ruleName"),
        _ => return None,
    })
}

/// A body member that names a resource by name (`<kind>Name`) or by ARN (`<kind>Arn`).
fn named(body: &Value, arn: &impl Fn(&str, &str) -> String, kind: &str, member: &str) -> Option<String> {
    let text = |key: String| body.get(key).and_then(Value::as_str).map(str::to_string);
    text(format!("{member}Name")).map(|name| arn(kind, &name)).or_else(|| text(format!("{member}Arn")))
}

/// The resources IAM evaluates `iot:<operation>` on.
fn resources(operation: &str, input: &Input, arn: impl Fn(&str, &str) -> String) -> Result<Vec<String>, ApiError> {
    if let Some((kind, label)) = labelled(operation) {
        let mut resources = vec![arn(kind, &input.label(label))];
        if operation == "CreateThing" {
            let body: Value = input.json()?;
            resources.extend(named(&body, &arn, "billinggroup", "billingGroup"));
        }
        return Ok(resources);
    }
    let body = || input.json::<Value>();
    let text = |body: &Value, key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let resources: Vec<String> = match operation {
        "AddThingToThingGroup" | "RemoveThingFromThingGroup" => {
            let body = body()?;
            [named(&body, &arn, "thing", "thing"), named(&body, &arn, "thinggroup", "thingGroup")]
                .into_iter()
                .flatten()
                .collect()
        }
        "AddThingToBillingGroup" | "RemoveThingFromBillingGroup" => {
            let body = body()?;
            [named(&body, &arn, "billinggroup", "billingGroup"), named(&body, &arn, "thing", "thing")]
                .into_iter()
                .flatten()
                .collect()
        }
        "UpdateThingGroupsForThing" => {
            let body = body()?;
            let groups = ["thingGroupsToAdd", "thingGroupsToRemove"]
                .into_iter()
                .filter_map(|key| body.get(key).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .map(|group| arn("thinggroup", group));
            text(&body, "thingName").map(|thing| arn("thing", &thing)).into_iter().chain(groups).collect()
        }
        // Checked against the target (a certificate or thing group ARN), not the policy.
        "AttachPolicy" | "DetachPolicy" => text(&body()?, "target").into_iter().collect(),
        "AttachPrincipalPolicy" | "DetachPrincipalPolicy" => {
            input.header_value("x-amzn-iot-principal").map(str::to_string).into_iter().collect()
        }
        "AttachThingPrincipal" | "DetachThingPrincipal" | "ListPrincipalThings" | "ListPrincipalThingsV2" => {
            input.header_value("x-amzn-principal").map(str::to_string).into_iter().collect()
        }
        "TestAuthorization" => text(&body()?, "principal").into_iter().collect(),
        "TagResource" | "UntagResource" => text(&body()?, "resourceArn").into_iter().collect(),
        "ListTagsForResource" => input.query("resourceArn").map(str::to_string).into_iter().collect(),
        "GetTopicRuleDestination" | "DeleteTopicRuleDestination" => vec![input.label("arn")],
        "UpdateTopicRuleDestination" => text(&body()?, "arn").into_iter().collect(),
        // No resource type (creates of generated ids, account settings, listings).
        _ => Vec::new(),
    };
    Ok(if resources.is_empty() { vec!["*".to_string()] } else { resources })
}

/// Answers AccessDeniedException unless the caller's key policy allows the
/// operation on every resource the request names.
pub(crate) fn authorize(state: &ApiState, caller: &str, operation: &str, input: &Input) -> Result<(), ApiError> {
    let Some(permissions) = state.config.credentials.permissions(caller, None) else {
        return Err(denied(format!("The access key {caller} is not accepted.")));
    };
    let account = state.registry.account();
    let arn = |kind: &str, name: &str| format!("arn:aws:iot:{}:{}:{kind}/{name}", account.region, account.id);
    let action = format!("iot:{operation}");
    for resource in resources(operation, input, arn)? {
        if !permissions.allows(&action, &resource) {
            metrics::counter!("ferrocore_api_access_denied_total", "service" => "iot").increment(1);
            return Err(denied(format!(
                "User: {caller} is not authorized to perform: {action} on resource: {resource}"
            )));
        }
    }
    Ok(())
}

fn denied(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::Bytes;
    use axum::http::HeaderMap;

    use super::*;

    fn arn(kind: &str, name: &str) -> String {
        format!("arn:aws:iot:r:1:{kind}/{name}")
    }

    fn input(labels: &[(&'static str, &str)], headers: &[(&'static str, &str)], body: &str) -> Input {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let labels: HashMap<&'static str, String> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Input::new(labels, "", map, Bytes::from(body.to_string()))
    }

    #[test]
    fn requests_name_the_resources_iam_evaluates() {
        let create = input(&[("thingName", "t1")], &[], r#"{"billingGroupName":"b"}"#);
        assert_eq!(resources("CreateThing", &create, arn).unwrap(), vec![arn("thing", "t1"), arn("billinggroup", "b")]);
        let add = input(&[], &[], r#"{"thingArn":"arn:aws:iot:r:1:thing/t","thingGroupName":"g"}"#);
        assert_eq!(
            resources("AddThingToThingGroup", &add, arn).unwrap(),
            vec!["arn:aws:iot:r:1:thing/t".to_string(), arn("thinggroup", "g")]
        );
        let attach = input(&[("policyName", "p")], &[], r#"{"target":"arn:aws:iot:r:1:cert/abc"}"#);
        assert_eq!(resources("AttachPolicy", &attach, arn).unwrap(), vec!["arn:aws:iot:r:1:cert/abc".to_string()]);
        let principal = input(&[("thingName", "t")], &[("x-amzn-principal", "arn:aws:iot:r:1:cert/abc")], "");
        assert_eq!(
            resources("AttachThingPrincipal", &principal, arn).unwrap(),
            vec!["arn:aws:iot:r:1:cert/abc".to_string()]
        );
        let groups = input(&[], &[], r#"{"thingName":"t","thingGroupsToAdd":["a"],"thingGroupsToRemove":["b"]}"#);
        assert_eq!(
            resources("UpdateThingGroupsForThing", &groups, arn).unwrap(),
            vec![arn("thing", "t"), arn("thinggroup", "a"), arn("thinggroup", "b")]
        );
        for generated in ["CreateKeysAndCertificate", "CreatePolicyVersionX", "ListThings", "DescribeEndpoint"] {
            assert_eq!(resources(generated, &input(&[], &[], ""), arn).unwrap(), vec!["*".to_string()], "{generated}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_an_invalid_request() {
        let err = resources("AttachPolicy", &input(&[], &[], "{"), arn).unwrap_err();
        assert_eq!(err.code, "InvalidRequestException");
    }
}
