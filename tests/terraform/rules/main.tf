# Topic rules and a VPC topic rule destination through their whole Terraform life cycle
# (tests/test_terraform_rules.py): create with tags and an error action, change the SQL,
# disable, and destroy; the destination is created, disabled through its waiter, destroyed.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "endpoint" {
  type = string
}

variable "suffix" {
  type = string
}

variable "threshold" {
  type    = number
  default = 40
}

variable "enabled" {
  type    = bool
  default = true
}

provider "aws" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  max_retries                 = 1

  endpoints {
    iot = var.endpoint
    sts = var.endpoint
  }
}

locals {
  role_arn = "arn:aws:iam::000000000000:role/iot-rules-${var.suffix}"
}

resource "aws_iot_topic_rule" "alerts" {
  name        = "Alerts_${var.suffix}"
  description = "Republish hot readings"
  enabled     = var.enabled
  sql         = "SELECT value, topic(2) AS device FROM 'sensors/+/temperature' WHERE value > ${var.threshold}"
  sql_version = "2016-03-23"

  republish {
    role_arn = local.role_arn
    topic    = "alerts/$${topic(2)}"
    qos      = 1
  }

  sqs {
    role_arn   = local.role_arn
    queue_url  = "https://sqs.us-east-1.amazonaws.com/000000000000/alerts-${var.suffix}"
    use_base64 = false
  }

  error_action {
    republish {
      role_arn = local.role_arn
      topic    = "errors/alerts"
    }
  }

  tags = {
    Team = "iot"
  }
}

resource "aws_iot_topic_rule_destination" "vpc" {
  enabled = var.enabled

  vpc_configuration {
    role_arn        = local.role_arn
    subnet_ids      = ["subnet-0123456789abcdef0"]
    security_groups = ["sg-0123456789abcdef0"]
    vpc_id          = "vpc-0123456789abcdef0"
  }
}

output "rule_name" {
  value = aws_iot_topic_rule.alerts.name
}

output "rule_arn" {
  value = aws_iot_topic_rule.alerts.arn
}

output "destination_arn" {
  value = aws_iot_topic_rule_destination.vpc.arn
}
