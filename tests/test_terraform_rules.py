"""Terraform (hashicorp/aws 5.100.0) manages topic rules and topic rule destinations on
ferrocore through their whole life cycle: create, re-plan clean, update in place, destroy."""

from __future__ import annotations

import pytest

from iot_helpers import aws_error
from terraform_helpers import APPLY, DESTROY, PLAN_CHECK, destroy_leftovers, prepare

pytestmark = pytest.mark.terraform


@pytest.fixture
def terraform(server, tmp_path):
    tf = prepare(server, tmp_path, "rules")
    yield tf
    destroy_leftovers(tf)


def test_rule_and_destination_life_cycle(terraform, client_factory):
    iot = client_factory("iot")
    tf = terraform
    tf(*APPLY)
    tf(*PLAN_CHECK)
    out = tf.outputs()

    rule = iot.get_topic_rule(ruleName=out["rule_name"])
    assert rule["ruleArn"] == out["rule_arn"]
    assert rule["rule"]["sql"].endswith("WHERE value > 40")
    assert rule["rule"]["awsIotSqlVersion"] == "2016-03-23"
    assert rule["rule"]["ruleDisabled"] is False
    kinds = sorted(next(iter(action)) for action in rule["rule"]["actions"])
    assert kinds == ["republish", "sqs"]
    assert rule["rule"]["errorAction"]["republish"]["topic"] == "errors/alerts"
    tags = {t["Key"]: t["Value"] for t in iot.list_tags_for_resource(resourceArn=out["rule_arn"])["tags"]}
    assert tags == {"Team": "iot"}
    destination = iot.get_topic_rule_destination(arn=out["destination_arn"])["topicRuleDestination"]
    assert destination["status"] == "ENABLED"
    assert destination["vpcProperties"]["vpcId"] == "vpc-0123456789abcdef0"

    # In-place updates: new SQL (ReplaceTopicRule), rule and destination disabled.
    tf.env.update(TF_VAR_threshold="50", TF_VAR_enabled="false")
    tf(*APPLY)
    tf(*PLAN_CHECK)
    rule = iot.get_topic_rule(ruleName=out["rule_name"])["rule"]
    assert rule["sql"].endswith("WHERE value > 50") and rule["ruleDisabled"] is True
    assert iot.get_topic_rule(ruleName=out["rule_name"])["ruleArn"] == out["rule_arn"]
    destination = iot.get_topic_rule_destination(arn=out["destination_arn"])["topicRuleDestination"]
    assert destination["status"] == "DISABLED"

    tf(*DESTROY)
    with aws_error("UnauthorizedException", 401):
        iot.get_topic_rule(ruleName=out["rule_name"])
    with aws_error("UnauthorizedException", 401):
        iot.get_topic_rule_destination(arn=out["destination_arn"])
