# The IAM role a GitHub Actions workflow assumes through OIDC to deploy a nixship fleet: only
# jobs of the given repository, on the given refs or in the given environments, may assume it,
# and it holds exactly the cache module's writer policy and the ssm-document module's sender
# policy (which sends the document only to tagged instances). Optionally a second, read-only
# role for the plans of pull requests. No AWS key is stored anywhere.

locals {
  # GitHub's token issuer; the IAM OIDC provider for it exists once per account.
  issuer       = "token.actions.githubusercontent.com"
  audience     = "sts.amazonaws.com"
  provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : var.oidc_provider_arn

  # The `sub` claims (GitHub's default format) of the jobs that may deploy: a job that names an
  # environment presents the environment, any other job the ref it runs on.
  deploy_subjects = concat(
    [for ref in var.refs : "repo:${var.repository}:ref:${ref}"],
    [for environment in var.environments : "repo:${var.repository}:environment:${environment}"],
  )
  # A job run for a pull request (and naming no environment).
  plan_subjects = ["repo:${var.repository}:pull_request"]
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.issuer}"
  client_id_list = [local.audience]
  # AWS checks GitHub's certificate against its own trusted CAs and ignores these; older AWS
  # providers require the argument, so GitHub's published thumbprints are given.
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
  tags            = var.tags
}

data "aws_iam_policy_document" "deploy_trust" {
  statement {
    sid     = "GitHubActionsDeploy"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = [local.audience]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = local.deploy_subjects
    }
  }
}

resource "aws_iam_role" "deploy" {
  name               = var.name
  description        = "nixship: deploys from GitHub Actions in ${var.repository}"
  assume_role_policy = data.aws_iam_policy_document.deploy_trust.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = length(local.deploy_subjects) > 0
      error_message = "Give refs or environments: the jobs that may assume the role."
    }
    precondition {
      condition     = var.create_oidc_provider == (var.oidc_provider_arn == "")
      error_message = "Give oidc_provider_arn exactly when create_oidc_provider is false (the account's existing provider for token.actions.githubusercontent.com)."
    }
    precondition {
      condition     = !var.send_ssm_commands || var.ssm_sender_policy_json != null
      error_message = "send_ssm_commands needs ssm_sender_policy_json (the ssm-document module's sender_policy_json)."
    }
  }
}

# Push signed closures, publish releases, move channels, read and record status.
resource "aws_iam_role_policy_attachment" "cache_writer" {
  role       = aws_iam_role.deploy.name
  policy_arn = var.cache_writer_policy_arn
}

# Send the nixship document to the tagged instances, and read the commands' results.
resource "aws_iam_role_policy" "ssm_sender" {
  count = var.send_ssm_commands ? 1 : 0

  name   = "nixship-ssm-sender"
  role   = aws_iam_role.deploy.id
  policy = var.ssm_sender_policy_json
}

# (A policy document is computed locally, so it is there whether or not the role is.)
data "aws_iam_policy_document" "plan_trust" {
  statement {
    sid     = "GitHubActionsPullRequests"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = [local.audience]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = local.plan_subjects
    }
  }
}

# Pull requests run the workflow as the pull request changed it, so their role may only read.
resource "aws_iam_role" "plan" {
  count = var.create_plan_role ? 1 : 0

  name               = "${var.name}-plan"
  description        = "nixship: plans of pull requests in ${var.repository} (read only)"
  assume_role_policy = data.aws_iam_policy_document.plan_trust.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = var.cache_reader_policy_arn != null
      error_message = "create_plan_role needs cache_reader_policy_arn (the cache module's reader_policy_arn)."
    }
  }
}

resource "aws_iam_role_policy_attachment" "plan_cache_reader" {
  count = var.create_plan_role ? 1 : 0

  role       = aws_iam_role.plan[0].name
  policy_arn = var.cache_reader_policy_arn
}
