# An example nixship fleet on AWS: the store (cache module), two NixOS hosts tagged Role=web
# that bootstrap the pull agent (host module), the SSM document that activates systems
# (ssm-document module), a deploy of what `nixship terraform vars` built (deploy module), and
# optionally the roles a GitHub Actions workflow deploys and plans with (github-oidc module).
# README.md walks through it from a clean account to a deployed fleet, with rollback.

provider "aws" {
  region = var.region
}

locals {
  # Each host and its position: the position spreads the hosts over the default subnets.
  hosts = { web1 = 0, web2 = 1 }
}

# For an example, the account's default VPC and its default subnets (one per availability
# zone, with public addresses, so the hosts reach S3 and SSM without a NAT gateway). Use your
# own VPC and private subnets with VPC endpoints in production.
data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

# The whole bucket (a key prefix works too: the hosts' first boot then fetches nixship under
# it, signatures checked by Nix).
module "cache" {
  source        = "../../terraform/modules/cache"
  bucket_name   = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

module "web" {
  source   = "../../terraform/modules/host"
  for_each = local.hosts

  name          = each.key
  subnet_id     = element(sort(data.aws_subnets.default.ids), each.value)
  vpc_id        = data.aws_vpc.default.id
  instance_type = var.instance_type
  tags          = merge(var.tags, { Role = "web" })
  # Read the cache, channels and releases; write its own status only.
  policy_arns     = [module.cache.agent_policy_arn]
  ssh_cidr_blocks = var.ssh_cidr_blocks
  key_name        = var.key_name
  # More login keys, and a host key known before the first boot (fleet from-terraform
  # --known-hosts reads it from the hosts output).
  ssh_authorized_keys   = var.ssh_authorized_keys
  generate_ssh_host_key = var.generate_ssh_host_key

  agent_enabled       = var.agent_enabled
  nixship_package     = var.nixship_package
  store_url           = module.cache.store_url
  cache_public_keys   = var.cache_public_keys
  release_public_keys = var.release_public_keys
  channel             = var.channel
}

module "ssm_document" {
  source = "../../terraform/modules/ssm-document"
  tags   = var.tags

  # What `nixship ssm document` printed (README, step 2): the document your nixship sends.
  document = file("${path.module}/nixship-ssm-document.json")

  # Baked into the document: a command or association that passes no cache uses this one.
  default_substituters        = module.cache.store_url
  default_trusted_public_keys = join(" ", var.cache_public_keys)

  # Optional: State Manager keeps the hosts of each role (their Role tag) on one system.
  associations        = var.ssm_associations
  association_tag_key = "Role"
  # The deployer and the CI role may send the document to the Role=web hosts, and no others.
  sender_tag_values = ["web"]
}

# The example's association was the module's single association; it is now the "web" entry of
# ssm_associations (set ssm_associations = { web = <the store path> } to keep it).
moved {
  from = module.ssm_document.aws_ssm_association.this[0]
  to   = module.ssm_document.aws_ssm_association.role["web"]
}

# Optional: the roles examples/ci/github-actions.yml assumes through GitHub's OIDC provider.
# The deploy role (pushes from main) writes the store and sends the SSM document to the
# Role=web hosts; the plan role (pull requests) only reads the store.
module "github_oidc" {
  source = "../../terraform/modules/github-oidc"
  count  = var.github_repository == "" ? 0 : 1

  repository           = var.github_repository
  refs                 = var.github_refs
  environments         = var.github_environments
  create_oidc_provider = var.github_oidc_provider_arn == ""
  oidc_provider_arn    = var.github_oidc_provider_arn
  tags                 = var.tags

  cache_writer_policy_arn = module.cache.writer_policy_arn
  ssm_sender_policy_json  = module.ssm_document.sender_policy_json

  create_plan_role        = true
  cache_reader_policy_arn = module.cache.reader_policy_arn
}

# `terraform apply` after `nixship terraform vars --out nixship.auto.tfvars.json` pushes and
# deploys the built systems; with no store_paths (the first apply) there is nothing to deploy.
module "deploy" {
  source = "../../terraform/modules/deploy"
  count  = length(var.store_paths) > 0 ? 1 : 0

  store_paths      = var.store_paths
  cache_url        = var.cache_url
  fleet_file       = var.fleet_file
  via              = var.deploy_via
  nixship          = var.nixship_command
  key_file         = var.cache_key_file
  release_key_file = var.release_key_file

  depends_on = [module.web, module.ssm_document]
}
