# Seed 000 ("How to manage IoT Core resources with Terraform"), applied against ferrocore by
# tests/test_terraform_seeds.py: a thing, a self-signed certificate registered from its PEM,
# the thing-principal attachment, the "walled garden" policy built from the thing's ARN with
# the ${iot:Connection.Thing.ThingName} policy variable, its attachment, and the ATS endpoint.
#
# The seed makes the key and certificate with the tls provider; that provider is not
# available here, so the test makes them with openssl/cryptography and passes the files in.

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
  description = "unique suffix for every resource name (the seed's random_id)"
  type        = string
}

variable "cert_pem_file" {
  description = "PEM file of the device's self-signed certificate"
  type        = string
}

variable "key_pem_file" {
  description = "PEM file of the device's private key"
  type        = string
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

resource "aws_iot_thing" "thing" {
  name = "thing_${var.suffix}"
}

resource "aws_iot_certificate" "cert" {
  certificate_pem = trimspace(file(var.cert_pem_file))
  active          = true
}

resource "aws_iot_thing_principal_attachment" "attachment" {
  principal = aws_iot_certificate.cert.arn
  thing     = aws_iot_thing.thing.name
}

data "aws_arn" "thing" {
  arn = aws_iot_thing.thing.arn
}

resource "aws_iot_policy" "policy" {
  name = "thingpolicy_${var.suffix}"

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Action   = ["iot:Connect"]
        Effect   = "Allow"
        Resource = "arn:aws:iot:${data.aws_arn.thing.region}:${data.aws_arn.thing.account}:client/$${iot:Connection.Thing.ThingName}"
      },
      {
        Action   = ["iot:Publish", "iot:Receive"]
        Effect   = "Allow"
        Resource = "arn:aws:iot:${data.aws_arn.thing.region}:${data.aws_arn.thing.account}:topic/$aws/things/$${iot:Connection.Thing.ThingName}/*"
      },
      {
        Action   = ["iot:Subscribe"]
        Effect   = "Allow"
        Resource = "arn:aws:iot:${data.aws_arn.thing.region}:${data.aws_arn.thing.account}:topicfilter/$aws/things/$${iot:Connection.Thing.ThingName}/*"
      },
    ]
  })
}

resource "aws_iot_policy_attachment" "attachment" {
  policy = aws_iot_policy.policy.name
  target = aws_iot_certificate.cert.arn
}

data "aws_iot_endpoint" "iot_endpoint" {
  endpoint_type = "iot:Data-ATS"
}

output "thing_name" {
  value = aws_iot_thing.thing.name
}

output "cert" {
  value = file(var.cert_pem_file)
}

output "key" {
  value     = file(var.key_pem_file)
  sensitive = true
}

output "iot_endpoint" {
  value = data.aws_iot_endpoint.iot_endpoint.endpoint_address
}

output "certificate_id" {
  value = aws_iot_certificate.cert.id
}

output "certificate_arn" {
  value = aws_iot_certificate.cert.arn
}

output "policy_name" {
  value = aws_iot_policy.policy.name
}

output "thing_region" {
  value = data.aws_arn.thing.region
}

output "thing_account" {
  value = data.aws_arn.thing.account
}
