# Inputs of the github-oidc module: the repository and the jobs of it that may deploy, the
# account's OIDC provider for GitHub, and the two policies the deploy role holds.

variable "repository" {
  description = "The GitHub repository whose workflows may assume the role, as its tokens' subjects name it: OWNER@OWNER_ID/NAME@REPO_ID (immutable subject claims: GitHub's default for repositories created or renamed since 2026-07-15, and the safer form, as a name can be taken by another account after a rename or deletion), or OWNER/NAME (a repository whose tokens still carry names alone)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(@[0-9]+/[A-Za-z0-9_.-]+@[0-9]+|/[A-Za-z0-9_.-]+)$", var.repository))
    error_message = "repository must be OWNER@OWNER_ID/NAME@REPO_ID (both ids, the numbers GitHub's API gives as owner.id and id) or OWNER/NAME: letters, digits, '_', '.' and '-' (no wildcards)."
  }
}

variable "refs" {
  description = "Git refs whose jobs (naming no environment) may assume the deploy role, exactly: e.g. \"refs/heads/main\", \"refs/tags/v1.2.0\"."
  type        = list(string)
  default     = ["refs/heads/main"]

  validation {
    condition     = alltrue([for ref in var.refs : can(regex("^refs/[^*?\\s]+$", ref))])
    error_message = "Each of refs must be a full ref such as refs/heads/main, without wildcards or spaces."
  }
}

variable "environments" {
  description = "GitHub environments whose jobs may assume the deploy role (a job that names an environment presents it instead of its ref)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for environment in var.environments : can(regex("^[^*?:]+$", environment))])
    error_message = "An environment name cannot hold '*', '?' or ':'."
  }
}

variable "name" {
  description = "Name of the deploy role; the plan role is NAME-plan."
  type        = string
  default     = "nixship-github-actions"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,59}$", var.name))
    error_message = "name must be 1 to 59 letters, digits or '+=,.@_-' (IAM role names, with room for -plan)."
  }
}

variable "create_oidc_provider" {
  description = "Create the account's IAM OIDC provider for token.actions.githubusercontent.com; false when the account has one (there can be only one), then give oidc_provider_arn."
  type        = bool
  default     = true
}

variable "oidc_provider_arn" {
  description = "ARN of the account's existing OIDC provider for token.actions.githubusercontent.com, when create_oidc_provider is false."
  type        = string
  default     = ""
}

variable "cache_writer_policy_arn" {
  description = "The cache module's writer_policy_arn: push to the cache, publish releases, read status."
  type        = string
}

variable "send_ssm_commands" {
  description = "Give the deploy role ssm_sender_policy_json (fleets with ssm hosts); false for fleets of agent hosts only."
  type        = bool
  default     = true
}

variable "ssm_sender_policy_json" {
  description = "The ssm-document module's sender_policy_json: send the nixship document to the tagged instances, read the results."
  type        = string
  default     = null
}

variable "create_plan_role" {
  description = "Also create the read-only role NAME-plan that jobs run for pull requests may assume (for `nixship plan`)."
  type        = bool
  default     = false
}

variable "cache_reader_policy_arn" {
  description = "The cache module's reader_policy_arn, the plan role's only policy (with create_plan_role)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the roles and the OIDC provider."
  type        = map(string)
  default     = {}
}
