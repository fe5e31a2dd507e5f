# Device-registry resources of the hashicorp/aws provider, applied against ferrocore by
# tests/test_terraform_registry.py. Names carry var.suffix so runs never collide.

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
  description = "ferrocore API endpoint, e.g. http://127.0.0.1:4566"
  type        = string
}

variable "suffix" {
  description = "unique suffix for every resource name"
  type        = string
}

provider "aws" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  # a local server needs no SDK-level retries; failures should surface at once
  max_retries = 1

  endpoints {
    iot = var.endpoint
    sts = var.endpoint
  }
}

resource "aws_iot_thing_type" "sensor" {
  name = "tf-sensor-${var.suffix}"

  properties {
    description           = "Temperature monitoring sensors"
    searchable_attributes = ["location", "floor"]
  }

  tags = {
    Environment = "test"
  }
}

resource "aws_iot_thing" "sensor" {
  name            = "tf-sensor-001-${var.suffix}"
  thing_type_name = aws_iot_thing_type.sensor.name

  attributes = {
    location = "warehouse-a"
    floor    = "1"
  }
}

resource "aws_iot_thing_group" "warehouse" {
  name = "tf-warehouse-${var.suffix}"

  properties {
    description = "All sensors in warehouse"

    attribute_payload {
      attributes = {
        site = "warehouse-a"
      }
    }
  }

  tags = {
    Environment = "production"
  }
}

resource "aws_iot_thing_group" "floor1" {
  name              = "tf-floor1-${var.suffix}"
  parent_group_name = aws_iot_thing_group.warehouse.name

  properties {
    description = "Sensors on floor 1"
  }
}

resource "aws_iot_thing_group_membership" "sensor_floor1" {
  thing_name       = aws_iot_thing.sensor.name
  thing_group_name = aws_iot_thing_group.floor1.name
}

resource "aws_iot_billing_group" "fleet" {
  name = "tf-billing-${var.suffix}"

  properties {
    description = "Billing group for the warehouse fleet"
  }

  tags = {
    CostCenter = "42"
  }
}

# Account-wide singletons. Every event type is listed: the provider reads all of them back.
resource "aws_iot_event_configurations" "this" {
  event_configurations = {
    "THING"                  = true
    "THING_GROUP"            = true
    "THING_TYPE"             = false
    "THING_GROUP_MEMBERSHIP" = true
    "THING_GROUP_HIERARCHY"  = false
    "THING_TYPE_ASSOCIATION" = false
    "JOB"                    = false
    "JOB_EXECUTION"          = false
    "POLICY"                 = false
    "CERTIFICATE"            = false
    "CA_CERTIFICATE"         = false
  }
}

resource "aws_iot_indexing_configuration" "this" {
  thing_indexing_configuration {
    thing_indexing_mode              = "REGISTRY"
    thing_connectivity_indexing_mode = "STATUS"

    custom_field {
      name = "attributes.location"
      type = "String"
    }
  }

  thing_group_indexing_configuration {
    thing_group_indexing_mode = "ON"
  }
}

resource "aws_iot_logging_options" "this" {
  role_arn          = "arn:aws:iam::000000000000:role/iot-logging"
  default_log_level = "WARN"
}

data "aws_iot_endpoint" "data_ats" {
  endpoint_type = "iot:Data-ATS"
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

output "iot_endpoint" {
  value = data.aws_iot_endpoint.data_ats.endpoint_address
}

output "account_id" {
  value = data.aws_caller_identity.current.account_id
}

output "region" {
  value = data.aws_region.current.name
}

output "thing_name" {
  value = aws_iot_thing.sensor.name
}

output "thing_arn" {
  value = aws_iot_thing.sensor.arn
}

output "thing_type_name" {
  value = aws_iot_thing_type.sensor.name
}

output "parent_group_name" {
  value = aws_iot_thing_group.warehouse.name
}

output "child_group_name" {
  value = aws_iot_thing_group.floor1.name
}

output "billing_group_name" {
  value = aws_iot_billing_group.fleet.name
}
