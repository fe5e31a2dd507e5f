# Seed 001 ("How to generate IoT Core certificates with Terraform"), applied against ferrocore
# by tests/test_terraform_seeds.py, extended to every way aws_iot_certificate can create a
# certificate:
#   - a self-signed device certificate registered from its PEM (RegisterCertificateWithoutCA);
#   - a CA registered with aws_iot_ca_certificate and a verification certificate whose CN is
#     the registration code (data.aws_iot_registration_code);
#   - a CA-signed device certificate registered with ca_pem (RegisterCertificate) and another
#     one without ca_pem (RegisterCertificateWithoutCA, as in the seed);
#   - a certificate with neither PEM nor CSR (CreateKeysAndCertificate);
#   - a certificate from a CSR (CreateCertificateFromCsr);
#   - a role alias.
#
# The seed makes keys and certificates with the tls provider, which is not available here:
# the test makes them with openssl/cryptography in var.pki_dir. The verification certificate
# needs the registration code, so the test reads it (GetRegistrationCode) before it makes the
# certificate and runs terraform; the data source below must return the same code.

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

variable "pki_dir" {
  description = "directory with self_signed.pem, ca.pem, verification.pem, signed_1.pem, signed_2.pem, csr.pem"
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

data "aws_iot_registration_code" "code" {}

# Self-signed certificate
resource "aws_iot_certificate" "cert" {
  certificate_pem = trimspace(file("${var.pki_dir}/self_signed.pem"))
  active          = true
}

# The CA, proven with a verification certificate (CN = registration code, signed by the CA key)
resource "aws_iot_ca_certificate" "ca" {
  active                       = true
  allow_auto_registration      = false
  ca_certificate_pem           = trimspace(file("${var.pki_dir}/ca.pem"))
  verification_certificate_pem = trimspace(file("${var.pki_dir}/verification.pem"))
}

# CA-signed certificate registered with its CA
resource "aws_iot_certificate" "ca_cert_1" {
  certificate_pem = trimspace(file("${var.pki_dir}/signed_1.pem"))
  ca_pem          = aws_iot_ca_certificate.ca.ca_certificate_pem
  active          = true
}

# CA-signed certificate registered without its CA (as the seed does)
resource "aws_iot_certificate" "ca_cert_2" {
  certificate_pem = trimspace(file("${var.pki_dir}/signed_2.pem"))
  active          = true
}

# AWS-issued key and certificate
resource "aws_iot_certificate" "generated" {
  active = true
}

# AWS-issued certificate for a CSR
resource "aws_iot_certificate" "from_csr" {
  csr    = file("${var.pki_dir}/csr.pem")
  active = false
}

resource "aws_iot_role_alias" "alias" {
  alias               = "tf-alias-${var.suffix}"
  role_arn            = "arn:aws:iam::000000000000:role/tf-device-role-${var.suffix}"
  credential_duration = 7200
}

output "registration_code" {
  value = data.aws_iot_registration_code.code.registration_code
}

output "self_signed_id" {
  value = aws_iot_certificate.cert.id
}

output "ca_id" {
  value = aws_iot_ca_certificate.ca.id
}

output "ca_arn" {
  value = aws_iot_ca_certificate.ca.arn
}

output "ca_cert_1_id" {
  value = aws_iot_certificate.ca_cert_1.id
}

output "ca_cert_1_ca_certificate_id" {
  value = aws_iot_certificate.ca_cert_1.ca_certificate_id
}

output "ca_cert_2_id" {
  value = aws_iot_certificate.ca_cert_2.id
}

output "generated_id" {
  value = aws_iot_certificate.generated.id
}

output "generated_private_key" {
  value     = aws_iot_certificate.generated.private_key
  sensitive = true
}

output "generated_certificate_pem" {
  value     = aws_iot_certificate.generated.certificate_pem
  sensitive = true
}

output "from_csr_id" {
  value = aws_iot_certificate.from_csr.id
}

output "from_csr_certificate_pem" {
  value     = aws_iot_certificate.from_csr.certificate_pem
  sensitive = true
}

output "role_alias" {
  value = aws_iot_role_alias.alias.alias
}

output "role_alias_arn" {
  value = aws_iot_role_alias.alias.arn
}
