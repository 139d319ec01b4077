# The SSM Command document that runs nixship's activate.sh on ssm hosts, and optionally a
# State Manager association that keeps the instances with a tag on one system (seed 000).
# The content is the committed document.json, which is exactly what `nixship ssm document`
# prints (a test compares them), so there is no copy here that could drift.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

resource "aws_ssm_document" "this" {
  name            = var.name
  document_type   = "Command"
  document_format = "JSON"
  content         = file("${path.module}/document.json")
  tags            = var.tags
}

resource "aws_ssm_association" "this" {
  count = var.create_association ? 1 : 0

  name             = aws_ssm_document.this.name
  association_name = var.name

  targets {
    key    = "tag:${var.association_tag_key}"
    values = var.association_tag_values
  }

  # The substituter and the trusted keys are parameters (seed 000), so one document serves
  # every cache.
  parameters = {
    StorePath         = var.store_path
    Substituters      = var.substituters
    TrustedPublicKeys = var.trusted_public_keys
  }

  lifecycle {
    precondition {
      condition     = var.store_path != ""
      error_message = "create_association needs store_path: the system the association activates."
    }
    precondition {
      condition     = length(var.association_tag_values) > 0
      error_message = "create_association needs association_tag_values: the tag values of the instances to target."
    }
  }
}

# What `nixship deploy --via ssm` needs: send this document, only to instances tagged as
# given, and read the outcome of its commands.
data "aws_iam_policy_document" "sender" {
  statement {
    sid       = "SendThisDocument"
    actions   = ["ssm:SendCommand"]
    resources = [aws_ssm_document.this.arn]
  }

  dynamic "statement" {
    for_each = length(var.association_tag_values) > 0 ? ["tagged"] : []

    content {
      sid       = "SendToTaggedInstances"
      actions   = ["ssm:SendCommand"]
      resources = ["arn:${data.aws_partition.current.partition}:ec2:*:${data.aws_caller_identity.current.account_id}:instance/*"]

      condition {
        test     = "StringEquals"
        variable = "ssm:resourceTag/${var.association_tag_key}"
        values   = var.association_tag_values
      }
    }
  }

  # These calls take no resource-level permissions.
  statement {
    sid       = "ReadCommandResults"
    actions   = ["ssm:ListCommands", "ssm:ListCommandInvocations", "ssm:GetCommandInvocation"]
    resources = ["*"]
  }
}
