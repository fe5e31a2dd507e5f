# Seed 002, "Rules Engine" section (rules.tf), applied by tests/test_terraform_seed002_rules.py:
# the resources exactly as the seed writes them (IAM role and its two inline policies, the
# sensor-data DynamoDB table with TTL, the StoreSensorData rule with its cloudwatch_logs error
# action, the /aws/iot/rules/errors log group, the AnomalyDetection rule with a lambda action),
# plus what the seed references without showing it: aws_lambda_function.anomaly_handler (a
# tiny zip the test makes; python3.11; the seed's role).
#
# Endpoints: iot -> ferrocore; iam, dynamodb, logs, lambda, sts -> moto_server. ferrocore's
# own [rules] config sends the DynamoDB and CloudWatch Logs actions to the same moto_server
# and Lambda invocations to the test's stub.

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
  description = "ferrocore API endpoint (iot)"
  type        = string
}

variable "aws_endpoint" {
  description = "moto_server endpoint (iam, dynamodb, logs, lambda, sts)"
  type        = string
}

variable "lambda_zip" {
  description = "deployment package of the anomaly handler (made by the test)"
  type        = string
}

variable "suffix" {
  description = "set by the shared test helper; the seed's names are fixed, so unused here"
  type        = string
  default     = ""
}

provider "aws" {
  region     = "us-east-1"
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  max_retries                 = 1

  endpoints {
    iot      = var.endpoint
    iam      = var.aws_endpoint
    dynamodb = var.aws_endpoint
    logs     = var.aws_endpoint
    lambda   = var.aws_endpoint
    sts      = var.aws_endpoint
  }
}

# ---------------------------------------------------------------------------------------
# rules.tf (seed 002), unchanged
# ---------------------------------------------------------------------------------------

# IoT Rules Engine configuration

# IAM role for rules engine
resource "aws_iam_role" "iot_rules_role" {
  name = "iot-rules-role"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Action = "sts:AssumeRole"
        Effect = "Allow"
        Principal = {
          Service = "iot.amazonaws.com"
        }
      }
    ]
  })
}

# DynamoDB table for sensor data
resource "aws_dynamodb_table" "sensor_data" {
  name         = "sensor-data"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "device_id"
  range_key    = "timestamp"

  attribute {
    name = "device_id"
    type = "S"
  }

  attribute {
    name = "timestamp"
    type = "N"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }
}

# Policy for DynamoDB access
resource "aws_iam_role_policy" "iot_dynamodb_policy" {
  name = "iot-dynamodb-policy"
  role = aws_iam_role.iot_rules_role.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect = "Allow"
        Action = [
          "dynamodb:PutItem"
        ]
        Resource = aws_dynamodb_table.sensor_data.arn
      }
    ]
  })
}

# Rule to store sensor readings in DynamoDB
resource "aws_iot_topic_rule" "store_sensor_data" {
  name        = "StoreSensorData"
  description = "Store sensor readings in DynamoDB"
  enabled     = true
  sql         = "SELECT * FROM 'sensors/+/temperature'"
  sql_version = "2016-03-23"

  dynamodbv2 {
    role_arn = aws_iam_role.iot_rules_role.arn

    put_item {
      table_name = aws_dynamodb_table.sensor_data.name
    }
  }

  # Error action
  error_action {
    cloudwatch_logs {
      log_group_name = aws_cloudwatch_log_group.iot_errors.name
      role_arn       = aws_iam_role.iot_rules_role.arn
    }
  }
}

# CloudWatch log group for errors
resource "aws_cloudwatch_log_group" "iot_errors" {
  name              = "/aws/iot/rules/errors"
  retention_in_days = 14
}

# Policy for CloudWatch logging
resource "aws_iam_role_policy" "iot_cloudwatch_policy" {
  name = "iot-cloudwatch-policy"
  role = aws_iam_role.iot_rules_role.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect = "Allow"
        Action = [
          "logs:CreateLogStream",
          "logs:PutLogEvents"
        ]
        Resource = "${aws_cloudwatch_log_group.iot_errors.arn}:*"
      }
    ]
  })
}

# Rule to trigger Lambda for anomaly detection
resource "aws_iot_topic_rule" "anomaly_detection" {
  name        = "AnomalyDetection"
  description = "Detect temperature anomalies"
  enabled     = true
  sql         = "SELECT * FROM 'sensors/+/temperature' WHERE value > 40 OR value < 0"
  sql_version = "2016-03-23"

  lambda {
    function_arn = aws_lambda_function.anomaly_handler.arn
  }
}

# ---------------------------------------------------------------------------------------
# referenced by the seed, not shown there
# ---------------------------------------------------------------------------------------

resource "aws_lambda_function" "anomaly_handler" {
  function_name    = "anomaly-handler"
  role             = aws_iam_role.iot_rules_role.arn
  runtime          = "python3.11"
  handler          = "index.handler"
  filename         = var.lambda_zip
  source_code_hash = filebase64sha256(var.lambda_zip)
}

output "role_arn" {
  value = aws_iam_role.iot_rules_role.arn
}

output "table_name" {
  value = aws_dynamodb_table.sensor_data.name
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.iot_errors.name
}

output "lambda_arn" {
  value = aws_lambda_function.anomaly_handler.arn
}

output "store_rule_arn" {
  value = aws_iot_topic_rule.store_sensor_data.arn
}

output "anomaly_rule_arn" {
  value = aws_iot_topic_rule.anomaly_detection.arn
}
