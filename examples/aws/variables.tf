# Inputs of the example fleet: where it lives, the keys it trusts, and (from
# `nixship terraform vars`) what to deploy. See README.md for the walkthrough.

variable "region" {
  description = "The AWS region of the bucket, the hosts and the SSM document."
  type        = string
  default     = "eu-west-1"
}

variable "bucket_name" {
  description = "Name of the S3 bucket that holds the fleet's store (globally unique)."
  type        = string
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket with everything in it (caches, releases, status)."
  type        = bool
  default     = false
}

variable "nixship_package" {
  description = "Store path of the nixship package the hosts realise from the cache at their first boot; push it there first."
  type        = string
}

variable "cache_public_keys" {
  description = "Public keys (name:base64) of the cache: the hosts substitute only paths signed by one of them."
  type        = list(string)
}

variable "release_public_keys" {
  description = "Public keys (name:base64) whose signed releases the hosts' agents apply."
  type        = list(string)
}

variable "channel" {
  description = "The release channel the hosts' agents follow."
  type        = string
  default     = "production"
}

variable "agent_enabled" {
  description = "Bootstrap the pull agent on the hosts (user-data). With false, deliver with deploy_via = \"ssm\" only."
  type        = bool
  default     = true
}

variable "instance_type" {
  description = "EC2 instance type of the hosts."
  type        = string
  default     = "t3.small"
}

variable "ssh_cidr_blocks" {
  description = "Address ranges allowed to reach the hosts' port 22; [] (no inbound port at all) suits SSM and the agent."
  type        = list(string)
  default     = []
}

variable "key_name" {
  description = "EC2 key pair for SSH logins as root; null for none."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "More OpenSSH public keys that may log in as root, one line each."
  type        = list(string)
  default     = []
}

variable "generate_ssh_host_key" {
  description = "Generate each host's SSH host key in Terraform (its private half is then in the state); false: each host publishes the key it makes at first boot to the store."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for everything the example makes (the hosts also get Role = \"web\")."
  type        = map(string)
  default     = {}
}

variable "ssm_associations" {
  description = "Role -> system store path: an SSM State Manager association keeps the hosts tagged Role = ROLE on it (the example's hosts are Role = \"web\"); {} for none."
  type        = map(string)
  default     = {}
}

variable "github_repository" {
  description = "The GitHub repository (OWNER/NAME) whose Actions workflow deploys this fleet through OIDC; \"\" makes no CI roles."
  type        = string
  default     = ""
}

variable "github_refs" {
  description = "Git refs whose workflow jobs (naming no environment) may assume the CI deploy role; none by default: examples/ci's jobs name the environment production."
  type        = list(string)
  default     = []
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the CI deploy role: examples/ci's build, deploy and rollback jobs name production, whose deployment branches should be main alone."
  type        = list(string)
  default     = ["production"]
}

variable "github_oidc_provider_arn" {
  description = "ARN of the account's existing IAM OIDC provider for token.actions.githubusercontent.com; \"\" creates it."
  type        = string
  default     = ""
}

variable "store_paths" {
  description = "Host name -> system store path to deploy, as `nixship terraform vars` prints it; {} deploys nothing."
  type        = map(string)
  default     = {}
}

variable "cache_url" {
  description = "The fleet file's cache URL, as `nixship terraform vars` prints it; a change deploys again."
  type        = string
  default     = ""
}

variable "fleet_file" {
  description = "The fleet file the deploy reads (written by `nixship fleet from-terraform`), relative to this directory."
  type        = string
  default     = "nixship.json"
}

variable "deploy_via" {
  description = "How the deploy module delivers store_paths: ssm (Run Command), agent (a signed release) or ssh."
  type        = string
  default     = "ssm"
}

variable "nixship_command" {
  description = "The command that runs nixship on the machine that runs terraform."
  type        = string
  default     = "nixship"
}

variable "cache_key_file" {
  description = "Secret key file that signs what the deploy pushes into the cache."
  type        = string
  default     = "cache.sec"
}

variable "release_key_file" {
  description = "Secret key file that signs releases, for deploy_via = \"agent\"; \"\" for none."
  type        = string
  default     = ""
}
