# The host module: one NixOS instance for a nixship fleet. An EC2 instance (IMDSv2 only,
# encrypted root volume) with its own IAM role, instance profile and security group, whose
# user-data bootstraps nixship's pull agent (user-data.sh.tftpl). See README.md.

locals {
  tags = merge(var.tags, { Name = var.name })

  # What user-data.sh.tftpl is rendered with (test/terraform-host-user-data.test.ts renders it
  # with exactly these names).
  user_data_vars = {
    host_name           = var.name
    nixship_package     = var.nixship_package
    store_url           = var.store_url
    channel             = var.channel
    release_public_keys = var.release_public_keys
    cache_public_keys   = var.cache_public_keys
    poll_interval       = var.poll_interval
  }
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

# SSM's agent on the host (Run Command for deploy --via ssm, Session Manager instead of SSH).
resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# count, not for_each: the ARNs usually come from resources made in the same apply, and
# for_each needs its keys before that.
resource "aws_iam_role_policy_attachment" "extra" {
  count      = length(var.policy_arns)
  role       = aws_iam_role.host.name
  policy_arn = var.policy_arns[count.index]
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
  user_data = var.agent_enabled ? templatefile("${path.module}/user-data.sh.tftpl", local.user_data_vars) : null
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

    # The AMI only starts the host: nixship delivers every system after that. A newer NixOS
    # AMI found by the lookup must not replace running hosts (replace one on purpose with
    # terraform apply -replace).
    ignore_changes = [ami]
  }
}
