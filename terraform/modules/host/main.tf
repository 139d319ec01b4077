# The host module: one NixOS instance for a nixship fleet. An EC2 instance (IMDSv2 only,
# encrypted root volume) with its own IAM role, instance profile and security group, whose
# user-data sets up root's SSH (ssh.sh.tftpl) and bootstraps nixship's pull agent
# (user-data.sh.tftpl, after fetch.sh.tftpl for a store with a key prefix). See README.md.

locals {
  tags = merge(var.tags, { Name = var.name })

  # The SSH host key Terraform generates (generate_ssh_host_key), else "".
  ssh_host_private_key = var.generate_ssh_host_key ? tls_private_key.ssh_host[0].private_key_openssh : ""
  ssh_host_public_key  = var.generate_ssh_host_key ? trimspace(tls_private_key.ssh_host[0].public_key_openssh) : ""

  # The store: "s3" or "file" (or "" for none), and an S3 store's bucket, key prefix ("" for
  # the whole bucket; as the cache module's prefix, without "/" at either end), region and
  # endpoint (its endpoint= parameter, "" for S3's own).
  store_kind     = var.store_url == null ? "" : (can(regex("^s3://", var.store_url)) ? "s3" : "file")
  store_bucket   = local.store_kind == "s3" ? regex("^s3://([^/?]+)", var.store_url)[0] : ""
  store_prefix   = local.store_kind == "s3" ? trim(regex("^s3://[^/?]+([^?]*)", var.store_url)[0], "/") : ""
  store_region   = local.store_kind == "s3" ? try(regex("[?&]region=([a-z0-9-]+)", var.store_url)[0], "") : ""
  store_endpoint = local.store_kind == "s3" ? try(regex("[?&]endpoint=([^&]*)", var.store_url)[0], "") : ""
  # The HTTPS address of the store's objects (the prefix included), for the user-data's own
  # signed requests: endpoint= path-style, as nixship addresses it; else S3's virtual-hosted
  # address, or the path-style one for a bucket name with dots (which S3's TLS certificate
  # does not cover as a host name).
  s3_endpoint = "s3.${local.store_region}.${data.aws_partition.current.dns_suffix}"
  store_http_url = join("", [
    (
      local.store_endpoint != "" ? "${trim(local.store_endpoint, "/")}/${local.store_bucket}"
      : can(regex("\\.", local.store_bucket)) ? "https://${local.s3_endpoint}/${local.store_bucket}"
      : "https://${local.store_bucket}.${local.s3_endpoint}"
    ),
    local.store_prefix == "" ? "" : "/${local.store_prefix}",
  ])

  # Where a host without the agent publishes its SSH public key (an agent publishes its own):
  # status/host-keys/NAME.pub in the store (under its prefix), "s3" or "file", or "" for nowhere.
  host_key_store = var.agent_enabled ? "" : local.store_kind
  host_key_key   = "status/host-keys/${var.name}.pub"
  host_key_url = (
    local.host_key_store == "s3" ? "${local.store_http_url}/${local.host_key_key}"
    : local.host_key_store == "file" ? "${regex("^file://(/[^?]*)", var.store_url)[0]}/${local.host_key_key}"
    : ""
  )
  host_key_arn = "arn:${data.aws_partition.current.partition}:s3:::${local.store_bucket}/${local.store_prefix == "" ? "" : "${local.store_prefix}/"}${local.host_key_key}"

  # An agent host whose S3 store has a key prefix, which Nix's own S3 store cannot read: its
  # user-data fetches the nixship package itself first (fetch.sh.tftpl), with curl, into a
  # file:// cache that Nix realises it from, at most fetch_max_paths paths and fetch_max_bytes
  # bytes (far more than nixship's closure, Node.js and its libraries, needs).
  fetch_needed = var.agent_enabled && local.store_kind == "s3" && local.store_prefix != ""
  fetch_user_data_vars = {
    host_name         = var.name
    nixship_package   = var.nixship_package
    cache_public_keys = var.cache_public_keys
    store_http_url    = local.store_http_url
    store_region      = local.store_region
    fetch_max_paths   = 2000
    fetch_max_bytes   = 4294967296
  }

  # What ssh.sh.tftpl, the SSH part of the user-data, is rendered with.
  ssh_user_data_vars = {
    host_name            = var.name
    ssh_host_private_key = local.ssh_host_private_key
    ssh_host_public_key  = local.ssh_host_public_key
    ssh_authorized_keys  = join("\n", [for k in var.ssh_authorized_keys : trimspace(k)])
    host_key_store       = local.host_key_store
    host_key_url         = local.host_key_url
    host_key_region      = local.host_key_store == "s3" ? local.store_region : ""
  }

  # What user-data.sh.tftpl, the agent's bootstrap, is rendered with
  # (test/terraform-host-user-data.test.ts renders it with exactly these names).
  user_data_vars = {
    host_name           = var.name
    nixship_package     = var.nixship_package
    store_url           = var.store_url
    channel             = var.channel
    release_public_keys = var.release_public_keys
    cache_public_keys   = var.cache_public_keys
    poll_interval       = var.poll_interval
  }

  # The SSH part when there is something for it to do, then the agent's bootstrap on an agent
  # host (the fetch first, for a store with a key prefix): a host without the agent gets
  # nothing of it, and an agent host without SSH inputs or a prefix gets the bootstrap alone,
  # byte for byte what it had before the SSH inputs existed (a new user-data would stop and
  # start it). A host with neither gets no user-data at all.
  ssh_user_data_needed = var.generate_ssh_host_key || length(var.ssh_authorized_keys) > 0 || local.host_key_store != ""
  user_data_script = var.agent_enabled || local.ssh_user_data_needed ? join("", [
    local.ssh_user_data_needed ? templatefile("${path.module}/ssh.sh.tftpl", local.ssh_user_data_vars) : "",
    local.fetch_needed ? templatefile("${path.module}/fetch.sh.tftpl", local.fetch_user_data_vars) : "",
    var.agent_enabled ? templatefile("${path.module}/user-data.sh.tftpl", local.user_data_vars) : "",
  ]) : null
  # EC2 takes at most 16 KiB: a script over that (the SSH part, the fetch and the bootstrap
  # together) loses its comment lines, those that hold nothing but "#" or "# ..." after their
  # indentation (no value in a here-document can be such a line; "#!" lines stay). A script
  # within 16 KiB is kept byte for byte. EC2 counts bytes, and length() characters (a key's
  # comment in another script is one character of up to four bytes): the bytes are read from
  # the text's base64, 3 for each 4 characters less its "=" padding.
  user_data_script_base64 = local.user_data_script == null ? "" : base64encode(local.user_data_script)
  user_data_script_bytes  = length(local.user_data_script_base64) / 4 * 3 - (endswith(local.user_data_script_base64, "==") ? 2 : endswith(local.user_data_script_base64, "=") ? 1 : 0)
  user_data = (
    local.user_data_script == null ? null
    : local.user_data_script_bytes <= 16384 ? local.user_data_script
    : replace(local.user_data_script, "/(?m)^[ \t]*#( .*)?\n/", "")
  )
  user_data_base64 = local.user_data == null ? "" : base64encode(local.user_data)
  user_data_bytes  = length(local.user_data_base64) / 4 * 3 - (endswith(local.user_data_base64, "==") ? 2 : endswith(local.user_data_base64, "=") ? 1 : 0)
}

data "aws_partition" "current" {}

# The newest official NixOS AMI (NixOS's own account publishes them), unless ami_id is given.
data "aws_ami" "nixos" {
  count       = var.ami_id == "" ? 1 : 0
  owners      = var.ami_owners
  most_recent = true

  filter {
    name   = "name"
    values = [var.ami_name_pattern]
  }

  filter {
    name   = "architecture"
    values = [var.architecture]
  }
}

data "aws_iam_policy_document" "assume_by_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# One role per host. Its nixship-host tag is what the cache module's agent policy names as
# ${aws:PrincipalTag/nixship-host}: the host may write only its own status objects.
resource "aws_iam_role" "host" {
  # IAM names are account-wide and name_prefix takes at most 38 characters.
  name_prefix        = substr("nixship-${var.name}-", 0, 38)
  description        = "nixship host ${var.name}"
  assume_role_policy = data.aws_iam_policy_document.assume_by_ec2.json
  tags               = merge(local.tags, { "nixship-host" = var.name })
}

# SSM's agent on the host (Run Command for deploy --via ssm, Session Manager instead of SSH),
# unless the host is never reached through SSM.
resource "aws_iam_role_policy_attachment" "ssm_core" {
  count = var.ssm_enabled ? 1 : 0

  role       = aws_iam_role.host.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# AmazonSSMManagedInstanceCore also grants ssm:GetParameter* on every parameter of the account,
# SecureStrings included: a process on any host could read another system's passwords. nixship
# reads none, so the role is denied them unless allow_parameter_store (a service of the host's
# own that reads its parameters).
data "aws_iam_policy_document" "no_parameter_store" {
  statement {
    sid       = "NoParameterStoreReads"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "no_parameter_store" {
  count  = var.allow_parameter_store ? 0 : 1
  name   = "nixship-no-parameter-store"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.no_parameter_store.json
}

# count, not for_each: the ARNs usually come from resources made in the same apply, and
# for_each needs its keys before that.
resource "aws_iam_role_policy_attachment" "extra" {
  count      = length(var.policy_arns)
  role       = aws_iam_role.host.name
  policy_arn = var.policy_arns[count.index]
}

# A host without the agent publishes its SSH public key from its user-data (an agent host
# may already, through the cache module's agent policy): this role may read and write that
# one object, status/host-keys/NAME.pub, and nothing else of the store.
data "aws_iam_policy_document" "publish_host_key" {
  statement {
    sid       = "PublishOwnHostKey"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.host_key_arn]
  }
}

resource "aws_iam_role_policy" "publish_host_key" {
  count  = local.host_key_store == "s3" ? 1 : 0
  name   = "nixship-publish-host-key"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.publish_host_key.json
}

# The host's SSH host key, made by Terraform when generate_ssh_host_key: known before the host
# first boots (output ssh_host_public_key), installed by the user-data. Its private half is
# kept in the Terraform state: protect the state (README.md).
resource "tls_private_key" "ssh_host" {
  count     = var.generate_ssh_host_key ? 1 : 0
  algorithm = "ED25519"
}

resource "aws_iam_instance_profile" "host" {
  name_prefix = substr("nixship-${var.name}-", 0, 38)
  role        = aws_iam_role.host.name
  tags        = local.tags
}

resource "aws_security_group" "host" {
  name_prefix = "nixship-${var.name}-"
  description = "nixship host ${var.name}"
  vpc_id      = var.vpc_id
  tags        = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

# No inbound rule unless ssh_cidr_blocks names some: deploys reach the host through SSM or the
# agent, which only connect outwards.
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  count             = length(var.ssh_cidr_blocks)
  security_group_id = aws_security_group.host.id
  description       = "SSH"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = strcontains(var.ssh_cidr_blocks[count.index], ":") ? null : var.ssh_cidr_blocks[count.index]
  cidr_ipv6         = strcontains(var.ssh_cidr_blocks[count.index], ":") ? var.ssh_cidr_blocks[count.index] : null
  tags              = local.tags
}

# The host's own services: each of ingress_ports from each of ingress_cidr_blocks (none by
# default). count over the pairs, since the ports and ranges are known at plan time.
locals {
  ingress = flatten([for p in var.ingress_ports : [for c in var.ingress_cidr_blocks : { port = p, cidr = c }]])
}

resource "aws_vpc_security_group_ingress_rule" "service" {
  count             = length(local.ingress)
  security_group_id = aws_security_group.host.id
  description       = "service port ${local.ingress[count.index].port}"
  ip_protocol       = "tcp"
  from_port         = local.ingress[count.index].port
  to_port           = local.ingress[count.index].port
  cidr_ipv4         = strcontains(local.ingress[count.index].cidr, ":") ? null : local.ingress[count.index].cidr
  cidr_ipv6         = strcontains(local.ingress[count.index].cidr, ":") ? local.ingress[count.index].cidr : null
  tags              = local.tags
}

# Egress is open: the host fetches its systems from S3 and talks to SSM over HTTPS, at
# addresses that change (restrict it with VPC endpoints and prefix lists where required), and
# the system it runs decides what else it needs. IMDS, the VPC's DNS and the time service are
# link-local and pass regardless.
resource "aws_vpc_security_group_egress_rule" "all_ipv4" {
  security_group_id = aws_security_group.host.id
  description       = "everything (S3, SSM and the host's own services)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "all_ipv6" {
  security_group_id = aws_security_group.host.id
  description       = "everything (S3, SSM and the host's own services)"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"
  tags              = local.tags
}

resource "aws_instance" "host" {
  ami                    = var.ami_id != "" ? var.ami_id : data.aws_ami.nixos[0].id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.host.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  key_name               = var.key_name

  # NixOS's amazon-init runs it on every boot; the script is idempotent.
  user_data = local.user_data
  # A changed bootstrap must not replace a running host (its state, its address): the
  # provider stops the instance, sets the new user-data and starts it, and the new script
  # runs at that boot.
  user_data_replace_on_change = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = var.root_volume_size
    encrypted   = true
    tags        = local.tags
  }

  tags = local.tags

  lifecycle {
    # The agent's inputs are optional for hosts that nixship reaches over ssh or ssm.
    precondition {
      condition     = !var.agent_enabled || (var.nixship_package != null && var.store_url != null && var.cache_public_keys != null && var.release_public_keys != null)
      error_message = "agent_enabled = true needs nixship_package, store_url, cache_public_keys and release_public_keys; set them, or agent_enabled = false for a host reached over ssh or ssm."
    }

    # EC2 refuses user-data over 16 KiB: say so at plan time (each authorized key adds its line).
    precondition {
      condition     = local.user_data == null || local.user_data_bytes <= 16384
      error_message = "the user-data is over EC2's 16 KiB: give fewer or shorter ssh_authorized_keys (an ssh-ed25519 key is about 100 bytes, an RSA key up to 750)."
    }

    # Without the agent, the user-data signs its S3 request to publish the host key for the
    # bucket's region, which it does not look up.
    precondition {
      condition     = local.host_key_store != "s3" || local.store_region != ""
      error_message = "without the agent, the host publishes its SSH host key to store_url, which must then name its region: s3://BUCKET?region=R (the cache module's store_url does)."
    }

    # With a key prefix, the bootstrap fetches the nixship package itself and signs its S3
    # requests for the bucket's region, which it does not look up.
    precondition {
      condition     = !local.fetch_needed || local.store_region != ""
      error_message = "with a key prefix in store_url, the host's bootstrap fetches nixship_package from S3 itself, and store_url must then name its region: s3://BUCKET/PREFIX?region=R (the cache module's store_url does)."
    }

    # The user-data's own S3 requests go to store_url's endpoint= when it has one, taken as
    # written: scheme://host[:port], as nixship takes it.
    precondition {
      condition     = !(local.fetch_needed || local.host_key_store == "s3") || local.store_endpoint == "" || can(regex("^https?://[A-Za-z0-9.:\\[\\]-]+/?$", local.store_endpoint))
      error_message = "store_url's endpoint= must be written as scheme://host[:port] (not percent-encoded, no path): the host's user-data sends its signed S3 requests there."
    }

    # Ports with no address range to open them to open nothing: said rather than dropped.
    precondition {
      condition     = length(var.ingress_ports) == 0 || length(var.ingress_cidr_blocks) > 0
      error_message = "ingress_ports opens its ports only to ingress_cidr_blocks, which is empty: give the address ranges that may reach them (e.g. [\"0.0.0.0/0\"] for a public web server), or leave ingress_ports empty."
    }

    # The AMI only starts the host: nixship delivers every system after that. A newer NixOS
    # AMI found by the lookup must not replace running hosts (replace one on purpose with
    # terraform apply -replace).
    ignore_changes = [ami]
  }
}
