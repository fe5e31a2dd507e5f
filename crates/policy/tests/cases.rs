//! Policy evaluation cases from the AWS IoT documentation and the reference, and
//! properties every evaluation must keep.

use ferrocore_policy::{CertificateFacts, Context, Decision, Policy, ThingFacts, evaluate};
use proptest::prelude::*;

const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

/// Seed 000's walled-garden policy.
fn walled_garden() -> Policy {
    Policy::parse(&format!(
        r#"{{
      "Version": "2012-10-17",
      "Statement": [
        {{"Action": ["iot:Connect"], "Effect": "Allow", "Resource": "{ARN}:client/${{iot:Connection.Thing.ThingName}}"}},
        {{"Action": ["iot:Publish", "iot:Receive"], "Effect": "Allow", "Resource": "{ARN}:topic/$aws/things/${{iot:Connection.Thing.ThingName}}/*"}},
        {{"Action": "iot:Subscribe", "Effect": "Allow", "Resource": "{ARN}:topicfilter/$aws/things/${{iot:Connection.Thing.ThingName}}/*"}}
      ]
    }}"#
    ))
    .unwrap()
}

fn thing(name: &str) -> ThingFacts {
    ThingFacts {
        name: name.into(),
        type_name: Some("Sensor".into()),
        attributes: [("floor".to_string(), "3".to_string())].into(),
    }
}

fn decide(policy: &Policy, action: &str, resource: &str, context: &Context) -> Decision {
    evaluate(&[policy], action, &format!("{ARN}:{resource}"), context).decision
}

#[test]
fn walled_garden_allows_only_the_things_own_topics() {
    let policy = walled_garden();
    let device = Context::for_connection("sensor-1", Some(&thing("sensor-1")), None);
    let cases = [
        ("iot:Connect", "client/sensor-1", Decision::Allowed),
        ("iot:Connect", "client/sensor-2", Decision::ImplicitDeny),
        ("iot:Publish", "topic/$aws/things/sensor-1/shadow/update", Decision::Allowed),
        ("iot:Receive", "topic/$aws/things/sensor-1/shadow/update/accepted", Decision::Allowed),
        ("iot:Publish", "topic/$aws/things/sensor-2/shadow/update", Decision::ImplicitDeny),
        ("iot:Subscribe", "topicfilter/$aws/things/sensor-1/shadow/#", Decision::Allowed),
        ("iot:Subscribe", "topicfilter/$aws/things/+/shadow/#", Decision::ImplicitDeny),
        ("iot:Publish", "topic/sensors/sensor-1/temperature", Decision::ImplicitDeny),
        ("iot:Subscribe", "topic/$aws/things/sensor-1/shadow/get", Decision::ImplicitDeny),
    ];
    for (action, resource, expected) in cases {
        assert_eq!(decide(&policy, action, resource, &device), expected, "{action} {resource}");
    }
    let unattached = Context::for_connection("sensor-1", None, None);
    assert_eq!(decide(&policy, "iot:Connect", "client/sensor-1", &unattached), Decision::ImplicitDeny);
}

#[test]
fn explicit_deny_wins_and_is_attributed() {
    let allow =
        Policy::parse(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#)
            .unwrap();
    let deny = Policy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Action":"iot:Publish","Resource":"{ARN}:topic/secret/*"}}]}}"#
    ))
    .unwrap();
    let context = Context::new().with("iot:ClientId", "c");
    let result = evaluate(&[&allow, &deny], "iot:Publish", &format!("{ARN}:topic/secret/x"), &context);
    assert_eq!((result.decision, result.allowing, result.denying), (Decision::ExplicitDeny, vec![0], vec![1]));
    let other = evaluate(&[&allow, &deny], "iot:Publish", &format!("{ARN}:topic/open"), &context);
    assert_eq!(other.decision, Decision::Allowed);
}

#[test]
fn variables_wildcards_and_escapes() {
    let policy = Policy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Action":"iot:Publish","Resource":[
            "{ARN}:topic/c/${{iot:ClientId}}",
            "{ARN}:topic/floor/${{iot:Connection.Thing.Attributes[floor]}}/*",
            "{ARN}:topic/type/${{iot:Connection.Thing.ThingTypeName}}",
            "{ARN}:topic/cn/${{iot:Certificate.Subject.CommonName}}",
            "{ARN}:topic/org2/${{iot:Certificate.Subject.Organization.1}}",
            "{ARN}:topic/lit/${{*}}",
            "{ARN}:topic/q/a?c"
          ]}}]}}"#
    ))
    .unwrap();
    let certificate = CertificateFacts {
        subject: vec![
            ("CommonName".into(), "dev-cn".into()),
            ("Organization".into(), "first".into()),
            ("Organization".into(), "second".into()),
        ],
        ..Default::default()
    };
    let context = Context::for_connection("client-9", Some(&thing("t")), Some(&certificate));
    let allowed = |resource: &str| decide(&policy, "iot:Publish", resource, &context) == Decision::Allowed;
    assert!(allowed("topic/c/client-9"));
    assert!(!allowed("topic/c/client-8"));
    assert!(allowed("topic/floor/3/x/y"));
    assert!(allowed("topic/type/Sensor"));
    assert!(allowed("topic/cn/dev-cn"));
    assert!(allowed("topic/org2/second"));
    assert!(allowed("topic/lit/*"));
    assert!(!allowed("topic/lit/anything"), "${{*}} is a literal star");
    assert!(allowed("topic/q/abc"));
}

#[test]
fn wildcard_values_are_not_substituted() {
    let policy = Policy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"iot:Subscribe","Resource":"{ARN}:topicfilter/c/${{iot:ClientId}}/#"}}}}"#
    ))
    .unwrap();
    let sneaky = Context::new().with("iot:ClientId", "+");
    assert_eq!(decide(&policy, "iot:Subscribe", "topicfilter/c/+/#", &sneaky), Decision::ImplicitDeny);
}

#[test]
fn old_version_does_not_substitute() {
    let policy = Policy::parse(&format!(
        r#"{{"Version":"2008-10-17","Statement":{{"Effect":"Allow","Action":"iot:Connect","Resource":"{ARN}:client/${{iot:ClientId}}"}}}}"#
    ))
    .unwrap();
    let context = Context::new().with("iot:ClientId", "a");
    assert_eq!(decide(&policy, "iot:Connect", "client/a", &context), Decision::ImplicitDeny);
}

#[test]
fn conditions() {
    let policy = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"iot:Connect","Resource":"*",
            "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"},
                          "StringLike":{"iot:ClientId":["dev-*","${iot:Connection.Thing.ThingName}"]}}},
          {"Effect":"Deny","Action":"iot:Connect","Resource":"*",
            "Condition":{"ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":["evil"]}}},
          {"Effect":"Allow","Action":"iot:Publish","Resource":"*",
            "Condition":{"StringNotEquals":{"iot:Connection.Thing.ThingTypeName":"Banned"},
                          "NumericGreaterThanEquals":{"iot:Connection.Thing.Attributes[floor]":"2"}}}
        ]}"#,
    )
    .unwrap();
    let attached = Context::for_connection("dev-1", Some(&thing("t")), None);
    assert_eq!(decide(&policy, "iot:Connect", "client/dev-1", &attached), Decision::Allowed);
    let unattached = Context::for_connection("dev-1", None, None);
    assert_eq!(decide(&policy, "iot:Connect", "client/dev-1", &unattached), Decision::ImplicitDeny);
    let named_like_thing = Context::for_connection("t", Some(&thing("t")), None);
    assert_eq!(decide(&policy, "iot:Connect", "client/t", &named_like_thing), Decision::Allowed);
    let evil = CertificateFacts { subject: vec![("Organization".into(), "evil".into())], ..Default::default() };
    let evil_context = Context::for_connection("dev-1", Some(&thing("t")), Some(&evil));
    assert_eq!(decide(&policy, "iot:Connect", "client/dev-1", &evil_context), Decision::ExplicitDeny);
    assert_eq!(decide(&policy, "iot:Publish", "topic/x", &attached), Decision::Allowed);
    let low = ThingFacts { attributes: [("floor".to_string(), "1".to_string())].into(), ..thing("t") };
    assert_eq!(
        decide(&policy, "iot:Publish", "topic/x", &Context::for_connection("c", Some(&low), None)),
        Decision::ImplicitDeny
    );
}

#[test]
fn malformed_documents_are_refused() {
    for document in [
        "not json",
        "[]",
        r#"{"Version":"2012-10-17"}"#,
        r#"{"Statement":[]}"#,
        r#"{"Statement":{"Effect":"Maybe","Action":"iot:*","Resource":"*"}}"#,
        r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#,
        r#"{"Statement":{"Effect":"Allow","Action":"iot:*"}}"#,
        r#"{"Statement":{"Effect":"Allow","Action":"publish","Resource":"*"}}"#,
        r#"{"Version":"1999","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#,
        r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"Sometimes":{"k":"v"}}}}"#,
    ] {
        assert!(Policy::parse(document).is_err(), "{document}");
    }
}

fn statement(effect: &str, action: &str, resource: &str) -> String {
    format!(r#"{{"Effect":"{effect}","Action":"{action}","Resource":"{ARN}:{resource}"}}"#)
}

fn actions() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["iot:Publish", "iot:Subscribe", "iot:Connect", "iot:*", "iot:P*", "*"])
}

fn resources() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "*", "?", "+", "#", "${iot:ClientId}"]), 1..4)
        .prop_map(|parts| format!("topic/{}", parts.join("/")))
}

proptest! {
    #[test]
    fn deny_always_wins(
        allows in prop::collection::vec((actions(), resources()), 0..4),
        deny in (actions(), resources()),
        request_action in prop::sample::select(vec!["iot:Publish", "iot:Subscribe", "iot:Connect"]),
        request_parts in prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4),
    ) {
        let context = Context::new().with("iot:ClientId", "a");
        let resource = format!("{ARN}:topic/{}", request_parts.join("/"));
        let mut statements: Vec<String> = allows.iter().map(|(a, r)| statement("Allow", a, r)).collect();
        let before = Policy::parse(&format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            if statements.is_empty() { statement("Allow", "iot:None", "none") } else { statements.join(",") })).unwrap();
        statements.push(statement("Deny", deny.0, &deny.1));
        let after = Policy::parse(&format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statements.join(","))).unwrap();
        let deny_only = Policy::parse(&format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, statement("Deny", deny.0, &deny.1))).unwrap();

        let was = evaluate(&[&before], request_action, &resource, &context).decision;
        let now = evaluate(&[&after], request_action, &resource, &context).decision;
        // Adding a Deny never grants more.
        prop_assert!(!(now == Decision::Allowed && was != Decision::Allowed));
        // If the Deny alone matches, nothing can allow.
        if evaluate(&[&deny_only], request_action, &resource, &context).decision == Decision::ExplicitDeny {
            prop_assert_eq!(now, Decision::ExplicitDeny);
            prop_assert_eq!(evaluate(&[&before, &deny_only], request_action, &resource, &context).decision, Decision::ExplicitDeny);
        }
    }
}

#[test]
fn unresolved_variables_never_widen_an_allow() {
    let policy = Policy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Action":"iot:Publish","NotResource":"{ARN}:topic/${{iot:Connection.Thing.ThingName}}/private"}},
          {{"Effect":"Allow","Action":"iot:Subscribe","Resource":"*",
            "Condition":{{"StringNotEquals":{{"iot:ClientId":"${{iot:Connection.Thing.ThingName}}"}}}}}}
        ]}}"#
    ))
    .unwrap();
    let unattached = Context::for_connection("c", None, None);
    assert_eq!(decide(&policy, "iot:Publish", "topic/anything", &unattached), Decision::ImplicitDeny);
    assert_eq!(decide(&policy, "iot:Subscribe", "topicfilter/x", &unattached), Decision::ImplicitDeny);
    let attached = Context::for_connection("c", Some(&thing("t")), None);
    assert_eq!(decide(&policy, "iot:Publish", "topic/anything", &attached), Decision::Allowed);
    assert_eq!(decide(&policy, "iot:Publish", "topic/t/private", &attached), Decision::ImplicitDeny);
    assert_eq!(decide(&policy, "iot:Subscribe", "topicfilter/x", &attached), Decision::Allowed);
}

#[test]
fn a_context_kept_to_the_names_its_policies_read_decides_the_same() {
    let variables = Policy::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[
          {{"Effect":"Allow","Action":"iot:Publish","Resource":[
            "{ARN}:topic/c/${{iot:ClientId}}",
            "{ARN}:topic/floor/${{iot:Connection.Thing.Attributes[floor]}}/*",
            "{ARN}:topic/org2/${{iot:Certificate.Subject.Organization.1}}"]}},
          {{"Effect":"Deny","Action":"iot:Publish","NotResource":"{ARN}:topic/t/${{iot:Connection.Thing.ThingName}}/*",
            "Condition":{{"StringEquals":{{"iot:Certificate.Subject.CommonName":"${{iot:ClientId}}"}}}}}}]}}"#
    ))
    .unwrap();
    let conditions = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"iot:Connect","Resource":"*",
            "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"},
                          "ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":["second"]}}}]}"#,
    )
    .unwrap();
    let certificate = CertificateFacts {
        subject: vec![
            ("CommonName".into(), "dev-cn".into()),
            ("Organization".into(), "first".into()),
            ("Organization".into(), "second".into()),
            ("Country".into(), "NL".into()),
        ],
        serial_number: "0a".into(),
        ..Default::default()
    };
    let resources = [
        "topic/c/dev-cn",
        "topic/c/other",
        "topic/floor/3/x",
        "topic/org2/second",
        "topic/org2/first",
        "topic/t/t/x",
        "client/dev-cn",
    ];
    for client_id in ["dev-cn", "other"] {
        let full = Context::for_connection(client_id, Some(&thing("t")), Some(&certificate));
        for policies in [vec![&variables], vec![&conditions], vec![&variables, &conditions]] {
            let mut read = std::collections::BTreeSet::new();
            for policy in &policies {
                policy.context_names(&mut read);
            }
            let mut kept = full.clone();
            kept.retain_names(&read);
            assert_ne!(kept, full, "unread keys (the country, the serial number) go");
            for action in ["iot:Publish", "iot:Connect"] {
                for resource in resources {
                    let resource = format!("{ARN}:{resource}");
                    assert_eq!(
                        evaluate(&policies, action, &resource, &kept),
                        evaluate(&policies, action, &resource, &full),
                        "{client_id} {action} {resource}"
                    );
                }
            }
        }
    }
}
