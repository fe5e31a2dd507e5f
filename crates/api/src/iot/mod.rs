//! The `iot` control plane (restJson1): operation dispatch and wire DTOs.

mod authorization;
mod billing_groups;
mod ca_certificates;
mod certificates;
mod iam;
mod policies;
mod principals;
mod role_aliases;
mod settings;
mod tags;
mod thing_groups;
mod thing_types;
mod things;
mod topic_rules;

use std::collections::BTreeMap;

use ferrocore_model::Millis;
use ferrocore_model::registry::{AttributePayload, Tags};
use ferrocore_registry::Page;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::input::Input;
use crate::{ApiState, Reply};

pub(crate) use iam::authorize;

type Answer = Result<Reply, ApiError>;

pub(crate) async fn dispatch(state: &ApiState, operation: &'static str, input: Input) -> Answer {
    let registry = state.registry.as_ref();
    match operation {
        "CreateThing" => things::create(registry, &input).await,
        "DescribeThing" => things::describe(registry, &input).await,
        "UpdateThing" => things::update(registry, &input).await,
        "DeleteThing" => things::delete(registry, &input).await,
        "ListThings" => things::list(registry, &input).await,
        "CreateThingType" => thing_types::create(registry, &input).await,
        "DescribeThingType" => thing_types::describe(registry, &input).await,
        "UpdateThingType" => thing_types::update(registry, &input).await,
        "DeprecateThingType" => thing_types::deprecate(registry, &input).await,
        "DeleteThingType" => thing_types::delete(registry, &input).await,
        "ListThingTypes" => thing_types::list(registry, &input).await,
        "CreateThingGroup" => thing_groups::create(registry, &input).await,
        "DescribeThingGroup" => thing_groups::describe(registry, &input).await,
        "UpdateThingGroup" => thing_groups::update(registry, &input).await,
        "DeleteThingGroup" => thing_groups::delete(registry, &input).await,
        "ListThingGroups" => thing_groups::list(registry, &input).await,
        "AddThingToThingGroup" => thing_groups::add_thing(registry, &input).await,
        "RemoveThingFromThingGroup" => thing_groups::remove_thing(registry, &input).await,
        "UpdateThingGroupsForThing" => thing_groups::update_for_thing(registry, &input).await,
        "ListThingsInThingGroup" => thing_groups::list_things(registry, &input).await,
        "ListThingGroupsForThing" => thing_groups::list_for_thing(registry, &input).await,
        "CreateBillingGroup" => billing_groups::create(registry, &input).await,
        "DescribeBillingGroup" => billing_groups::describe(registry, &input).await,
        "UpdateBillingGroup" => billing_groups::update(registry, &input).await,
        "DeleteBillingGroup" => billing_groups::delete(registry, &input).await,
        "ListBillingGroups" => billing_groups::list(registry, &input).await,
        "AddThingToBillingGroup" => billing_groups::set_membership(registry, &input, true).await,
        "RemoveThingFromBillingGroup" => billing_groups::set_membership(registry, &input, false).await,
        "ListThingsInBillingGroup" => billing_groups::list_things(registry, &input).await,
        "TagResource" => tags::tag(registry, &input).await,
        "UntagResource" => tags::untag(registry, &input).await,
        "ListTagsForResource" => tags::list(registry, &input).await,
        "DescribeEndpoint" => settings::describe_endpoint(registry, &input),
        "DescribeEventConfigurations" => settings::describe_event_configurations(registry).await,
        "UpdateEventConfigurations" => settings::update_event_configurations(registry, &input).await,
        "GetIndexingConfiguration" => settings::get_indexing_configuration(registry).await,
        "UpdateIndexingConfiguration" => settings::update_indexing_configuration(registry, &input).await,
        "GetV2LoggingOptions" => settings::get_logging_options(registry).await,
        "SetV2LoggingOptions" => settings::set_logging_options(registry, &input).await,
        "CreateKeysAndCertificate" => certificates::create_keys_and_certificate(registry, &input).await,
        "CreateCertificateFromCsr" => certificates::create_from_csr(registry, &input).await,
        "RegisterCertificate" => certificates::register(registry, &input).await,
        "RegisterCertificateWithoutCA" => certificates::register_without_ca(registry, &input).await,
        "DescribeCertificate" => certificates::describe(registry, &input).await,
        "ListCertificates" => certificates::list(registry, &input, None).await,
        "ListCertificatesByCA" => certificates::list(registry, &input, Some(input.label("caCertificateId"))).await,
        "UpdateCertificate" => certificates::update(registry, &input).await,
        "DeleteCertificate" => certificates::delete(registry, &input).await,
        "GetRegistrationCode" => ca_certificates::get_registration_code(registry).await,
        "DeleteRegistrationCode" => ca_certificates::delete_registration_code(registry).await,
        "RegisterCACertificate" => ca_certificates::register(registry, &input).await,
        "DescribeCACertificate" => ca_certificates::describe(registry, &input).await,
        "ListCACertificates" => ca_certificates::list(registry, &input).await,
        "UpdateCACertificate" => ca_certificates::update(registry, &input).await,
        "DeleteCACertificate" => ca_certificates::delete(registry, &input).await,
        "CreatePolicy" => policies::create(registry, &input).await,
        "GetPolicy" => policies::get(registry, &input).await,
        "DeletePolicy" => policies::delete(registry, &input).await,
        "ListPolicies" => policies::list(registry, &input).await,
        "CreatePolicyVersion" => policies::create_version(registry, &input).await,
        "GetPolicyVersion" => policies::get_version(registry, &input).await,
        "ListPolicyVersions" => policies::list_versions(registry, &input).await,
        "DeletePolicyVersion" => policies::delete_version(registry, &input).await,
        "SetDefaultPolicyVersion" => policies::set_default_version(registry, &input).await,
        "AttachPolicy" => policies::attach(registry, &input, policies::TargetIn::Body).await,
        "DetachPolicy" => policies::detach(registry, &input, policies::TargetIn::Body).await,
        "AttachPrincipalPolicy" => policies::attach(registry, &input, policies::TargetIn::PrincipalHeader).await,
        "DetachPrincipalPolicy" => policies::detach(registry, &input, policies::TargetIn::PrincipalHeader).await,
        "ListAttachedPolicies" => policies::list_attached(registry, &input).await,
        "ListTargetsForPolicy" => policies::list_targets(registry, &input).await,
        "ListPolicyPrincipals" => policies::list_principals(registry, &input).await,
        "ListPrincipalPolicies" => policies::list_principal_policies(registry, &input).await,
        "AttachThingPrincipal" => principals::attach(registry, &input).await,
        "DetachThingPrincipal" => principals::detach(registry, &input).await,
        "ListThingPrincipals" => principals::list_for_thing(registry, &input, false).await,
        "ListThingPrincipalsV2" => principals::list_for_thing(registry, &input, true).await,
        "ListPrincipalThings" => principals::list_for_principal(registry, &input, false).await,
        "ListPrincipalThingsV2" => principals::list_for_principal(registry, &input, true).await,
        "CreateRoleAlias" => role_aliases::create(registry, &input).await,
        "DescribeRoleAlias" => role_aliases::describe(registry, &input).await,
        "UpdateRoleAlias" => role_aliases::update(registry, &input).await,
        "DeleteRoleAlias" => role_aliases::delete(registry, &input).await,
        "ListRoleAliases" => role_aliases::list(registry, &input).await,
        "TestAuthorization" => authorization::test_authorization(registry, &input).await,
        "CreateTopicRule" => topic_rules::create(registry, &input).await,
        "GetTopicRule" => topic_rules::get(registry, &input).await,
        "ListTopicRules" => topic_rules::list(registry, &input).await,
        "ReplaceTopicRule" => topic_rules::replace(registry, &input).await,
        "DeleteTopicRule" => topic_rules::delete(registry, &input).await,
        "EnableTopicRule" => topic_rules::set_enabled(registry, &input, true).await,
        "DisableTopicRule" => topic_rules::set_enabled(registry, &input, false).await,
        "CreateTopicRuleDestination" => topic_rules::create_destination(registry, &input).await,
        "GetTopicRuleDestination" => topic_rules::get_destination(registry, &input).await,
        "ListTopicRuleDestinations" => topic_rules::list_destinations(registry, &input).await,
        "UpdateTopicRuleDestination" => topic_rules::update_destination(registry, &input).await,
        "DeleteTopicRuleDestination" => topic_rules::delete_destination(registry, &input).await,
        "ConfirmTopicRuleDestination" => {
            registry.confirm_topic_rule_destination(&input.label("confirmationToken")).await?;
            empty()
        }
        other => Err(ApiError::not_implemented("iot", other)),
    }
}

/// A JSON answer with `null` members dropped, as AWS omits absent members.
fn reply(mut value: Value) -> Answer {
    strip_nulls(&mut value);
    Ok(Reply::Json(value))
}

fn empty() -> Answer {
    Ok(Reply::Json(json!({})))
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// AWS shows timestamps as fractional epoch seconds.
fn timestamp(ms: Millis) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A page of items under `key`, with the continuation under `token_key` when there is more.
fn paged<T>(key: &str, token_key: &str, page: Page<T>, render: impl Fn(T) -> Value) -> Answer {
    reply(json!({
        key: page.items.into_iter().map(render).collect::<Vec<_>>(),
        token_key: page.next_token,
    }))
}

/// `nextToken` paging.
fn page_reply<T>(key: &str, page: Page<T>, render: impl Fn(T) -> Value) -> Answer {
    paged(key, "nextToken", page, render)
}

/// `nextMarker` paging, of the older list operations.
fn marker_reply<T>(key: &str, page: Page<T>, render: impl Fn(T) -> Value) -> Answer {
    paged(key, "nextMarker", page, render)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AttributePayloadDto {
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    merge: bool,
}

impl From<AttributePayloadDto> for AttributePayload {
    fn from(dto: AttributePayloadDto) -> Self {
        Self { attributes: dto.attributes, merge: dto.merge }
    }
}

#[derive(Deserialize)]
struct TagDto {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

fn tags_from(dtos: Option<Vec<TagDto>>) -> Tags {
    dtos.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect()
}

fn tags_json(tags: impl IntoIterator<Item = (String, String)>) -> Vec<Value> {
    tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect()
}

/// A resource named by name or by ARN (`thingName`/`thingArn` pairs); the name wins.
fn name_or_arn(name: Option<String>, arn: Option<String>, what: &str) -> Result<String, ApiError> {
    match (name, arn) {
        (Some(name), _) => Ok(name),
        (None, Some(arn)) => arn
            .rsplit_once('/')
            .map(|(_, name)| name.to_string())
            .ok_or_else(|| ApiError::invalid(format!("{arn} is not a valid {what} ARN."))),
        (None, None) => Err(ApiError::invalid(format!(
            "Both {what}Name and {what}Arn are empty. Need to specify at least one of them"
        ))),
    }
}
