# The SSM Command document that runs nixship's activate.sh on ssm hosts, State Manager
# associations that keep the instances with a tag on one system each, and the policy a
# deployer (or CI) needs to send the document to tagged instances.
# The content is var.document: what `nixship ssm document` prints (or a nixship build's
# dist/ssm-document.json), given by the caller, so the module holds no copy that could drift
# from the nixship that deploys. Default substituters and trusted keys, when given, are set as
# the defaults of its parameters.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  document = jsondecode(var.document)

  # The parameters whose defaults this module may set, and the values given for them.
  parameter_defaults = {
    for name, value in {
      Substituters      = var.default_substituters
      TrustedPublicKeys = var.default_trusted_public_keys
    } : name => value if value != ""
  }

  # With no defaults to set, the document given byte for byte (no new document version for
  # anyone who sets none); else the same document with those parameters' defaults replaced.
  document_content = length(local.parameter_defaults) == 0 ? var.document : jsonencode(merge(local.document, {
    parameters = {
      for name, parameter in local.document.parameters : name => merge(parameter, {
        for key, value in local.parameter_defaults : "default" => value if key == name
      })
    }
  }))

  # What an association passes besides StorePath: only values given, so that an empty one
  # leaves the document's default (baked in above, or none) in force.
  association_parameters = {
    for name, value in {
      Substituters      = var.substituters
      TrustedPublicKeys = var.trusted_public_keys
    } : name => value if value != ""
  }

  # The tag values of the instances the sender policy may send the document to.
  sender_tag_values = distinct(concat(var.association_tag_values, keys(var.associations), var.sender_tag_values))
}

resource "aws_ssm_document" "this" {
  name            = var.name
  document_type   = "Command"
  document_format = "JSON"
  content         = local.document_content
  tags            = var.tags

  lifecycle {
    # The document's own allowedPattern decides, as SSM would when the default is used.
    precondition {
      condition     = can(regex(local.document.parameters.Substituters.allowedPattern, var.default_substituters))
      error_message = "default_substituters must be space-separated http://, https:// or s3:// URLs (the document's Substituters allowedPattern)."
    }
    precondition {
      condition     = can(regex(local.document.parameters.TrustedPublicKeys.allowedPattern, var.default_trusted_public_keys))
      error_message = "default_trusted_public_keys must be space-separated name:base64 keys (the document's TrustedPublicKeys allowedPattern)."
    }
  }
}

# One association per role: the instances tagged association_tag_key = ROLE are kept on the
# role's system.
resource "aws_ssm_association" "role" {
  for_each = var.associations

  name             = aws_ssm_document.this.name
  association_name = "${var.name}-${each.key}"

  targets {
    key    = "tag:${var.association_tag_key}"
    values = [each.key]
  }

  parameters = merge({ StorePath = each.value }, local.association_parameters)
}

# The single association of earlier versions (create_association, association_tag_values,
# store_path), kept as it was so that existing state needs no move; see README.md to migrate.
resource "aws_ssm_association" "this" {
  count = var.create_association ? 1 : 0

  name             = aws_ssm_document.this.name
  association_name = var.name

  targets {
    key    = "tag:${var.association_tag_key}"
    values = var.association_tag_values
  }

  parameters = merge({ StorePath = var.store_path }, local.association_parameters)

  lifecycle {
    precondition {
      condition     = var.store_path != ""
      error_message = "create_association needs store_path: the system the association activates."
    }
    precondition {
      condition     = length(var.association_tag_values) > 0
      error_message = "create_association needs association_tag_values: the tag values of the instances to target."
    }
    # Two associations on the same instances would switch them back and forth.
    precondition {
      condition     = alltrue([for value in var.association_tag_values : !contains(keys(var.associations), value)])
      error_message = "a tag value of association_tag_values is also a role of associations: each tagged instance can follow one association only."
    }
  }
}

# What `nixship deploy --via ssm` (and `plan` and `rollback` of ssm hosts, which go through the
# same document) needs: send this document, only to instances tagged association_tag_key = one of
# the sender tag values, and read the outcome of its commands.
data "aws_iam_policy_document" "sender" {
  statement {
    sid       = "SendThisDocument"
    actions   = ["ssm:SendCommand"]
    resources = [aws_ssm_document.this.arn]
  }

  dynamic "statement" {
    for_each = length(local.sender_tag_values) > 0 ? ["tagged"] : []

    content {
      sid       = "SendToTaggedInstances"
      actions   = ["ssm:SendCommand"]
      resources = ["arn:${data.aws_partition.current.partition}:ec2:*:${data.aws_caller_identity.current.account_id}:instance/*"]

      condition {
        test     = "StringEquals"
        variable = "ssm:resourceTag/${var.association_tag_key}"
        values   = local.sender_tag_values
      }
    }
  }

  # These calls take no resource-level permissions.
  statement {
    sid       = "ReadCommandResults"
    actions   = ["ssm:ListCommands", "ssm:ListCommandInvocations", "ssm:GetCommandInvocation"]
    resources = ["*"]
  }

  # An interrupted deploy cancels its commands where SSM has not started them (no new host).
  statement {
    sid       = "CancelWaitingCommands"
    actions   = ["ssm:CancelCommand"]
    resources = ["*"]
  }
}
