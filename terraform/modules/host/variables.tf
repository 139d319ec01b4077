# The host module's inputs: the instance, its network and IAM, and what its user-data needs to
# bootstrap nixship's pull agent (see README.md).

variable "name" {
  description = "The host's name: its fleet name, its Name tag and the agent's host in releases."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be a fleet host name: [a-z0-9][a-z0-9-]*, at most 63 characters."
  }
}

variable "subnet_id" {
  description = "The subnet to start the instance in."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of subnet_id, where the host's security group is made."
  type        = string
}

variable "instance_type" {
  description = "The EC2 instance type."
  type        = string
  default     = "t3.small"
}

variable "ami_id" {
  description = "The AMI to start from; \"\" looks up the newest official NixOS AMI (owner 427812963091) by ami_name_pattern and architecture."
  type        = string
  default     = ""

  validation {
    condition     = var.ami_id == "" || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be \"\" or an AMI ID such as ami-0123456789abcdef0."
  }
}

variable "ami_name_pattern" {
  description = "The name pattern of the official NixOS AMIs to pick the newest of, when ami_id is \"\"."
  type        = string
  default     = "nixos/24.11*"
}

variable "ami_owners" {
  description = "The accounts whose AMIs the lookup picks from, when ami_id is \"\": NixOS's own (427812963091) by default, or yours for images you import (the ami-import module)."
  type        = list(string)
  default     = ["427812963091"]

  validation {
    condition     = length(var.ami_owners) > 0 && alltrue([for o in var.ami_owners : can(regex("^([0-9]{12}|self|amazon|aws-marketplace)$", o))])
    error_message = "ami_owners must hold account IDs (12 digits), self, amazon or aws-marketplace."
  }
}

variable "architecture" {
  description = "The AMI's architecture, when ami_id is \"\": x86_64 or arm64 (it must suit instance_type)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "root_volume_size" {
  description = "Size of the encrypted gp3 root volume, in GiB. It holds /nix: every system the host keeps."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && floor(var.root_volume_size) == var.root_volume_size
    error_message = "root_volume_size must be a whole number of GiB, at least 8."
  }
}

variable "tags" {
  description = "Tags for the instance, its volume, role and security group (Name is set to name). nixship fleet from-terraform reads them, e.g. Role = \"web\"."
  type        = map(string)
  default     = {}
}

variable "policy_arns" {
  description = "IAM policies to attach to the host's role, besides AmazonSSMManagedInstanceCore: e.g. the cache module's agent_policy_arn."
  type        = list(string)
  default     = []
}

variable "ssm_enabled" {
  description = "Attach AmazonSSMManagedInstanceCore to the host's role: SSM's agent, for deploy --via ssm and Session Manager. false for a host reached only by its pull agent or over ssh: its role then grants nothing of SSM."
  type        = bool
  default     = true
}

variable "allow_parameter_store" {
  description = "Let the host's role read SSM Parameter Store (which AmazonSSMManagedInstanceCore grants on every parameter of the account). false (the default) denies it: nixship reads no parameter."
  type        = bool
  default     = false
}

variable "ssh_cidr_blocks" {
  description = "Address ranges (IPv4 or IPv6 CIDR) allowed to reach port 22. [] (the default) opens no inbound port at all: reach the host with SSM."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "ssh_cidr_blocks must hold CIDR blocks such as 203.0.113.0/24 or 2001:db8::/64."
  }
}

variable "ingress_ports" {
  description = "TCP ports of the host's services to open to ingress_cidr_blocks (e.g. [80, 443]). [] (the default) opens none."
  type        = list(number)
  default     = []

  validation {
    condition     = alltrue([for p in var.ingress_ports : p == floor(p) && p >= 1 && p <= 65535])
    error_message = "ingress_ports must hold TCP port numbers from 1 to 65535."
  }
}

variable "ingress_cidr_blocks" {
  description = "Address ranges (IPv4 or IPv6 CIDR) that may reach ingress_ports."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ingress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "ingress_cidr_blocks must hold CIDR blocks such as 0.0.0.0/0 or 2001:db8::/64."
  }
}

variable "key_name" {
  description = "The EC2 key pair for SSH logins as root; null for none (SSM needs no key). NixOS installs it in /root/.ssh/authorized_keys at first boot."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "OpenSSH public keys (one key a line: type, base64 and an optional comment) that may log in as root, besides key_name's. The user-data keeps them in a block of /root/.ssh/authorized_keys of its own, rewritten at each boot, so a key taken out of the list leaves the host."
  type        = list(string)
  default     = []

  validation {
    # The type, then base64 that encodes that same type first (so a key pasted under the
    # wrong type, or cut short, is refused), then an optional comment; one line only.
    condition     = alltrue([for k in var.ssh_authorized_keys : can(regex("^(ssh-ed25519 AAAAC3NzaC1lZDI1NTE5|ssh-rsa AAAAB3NzaC1y|ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAy|ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAz|ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1|sk-ssh-ed25519@openssh\\.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t|sk-ecdsa-sha2-nistp256@openssh\\.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5j)[A-Za-z0-9+/]+={0,2}( [^\\r\\n]*)?$", trimspace(k)))])
    error_message = "ssh_authorized_keys must hold OpenSSH public keys, one line each: ssh-ed25519 AAAA… [comment] (also ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com), without options such as from=\"…\"."
  }
}

variable "generate_ssh_host_key" {
  description = "Generate the host's SSH host key (ED25519) in Terraform: the user-data installs it as /etc/ssh/ssh_host_ed25519_key, and the output ssh_host_public_key gives its public half to known_hosts before the host first boots. The private key is then kept in the Terraform state (and the user-data): protect the state. false: the host keeps the key sshd makes at first boot and publishes it to the store (see README.md)."
  type        = bool
  default     = false
}

variable "agent_enabled" {
  description = "Bootstrap nixship's pull agent with user-data. false: no user-data; deliver to the host with ssh or ssm."
  type        = bool
  default     = true
}

variable "nixship_package" {
  description = "The store path of the nixship package (it provides bin/nixship) that the host realises from the cache; push it there, signed, before the host boots. Needed when agent_enabled."
  type        = string
  default     = null

  validation {
    condition     = var.nixship_package == null || can(regex("^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+$", var.nixship_package))
    error_message = "nixship_package must be a store path: /nix/store/<32 base-32 characters>-<name>."
  }
}

variable "store_url" {
  description = "The fleet's store: the agent's store and, at bootstrap, where nixship_package is realised from. s3://BUCKET[/PREFIX]?region=R (the cache module's store_url) or file:///DIR. Needed when agent_enabled. Without the agent, optional: when given, the user-data publishes the host's SSH public key there (status/host-keys/NAME.pub), which only this host's role may write."
  type        = string
  default     = null

  validation {
    # A prefix as the cache module takes one: path segments of letters, digits, _, . and -,
    # none of them . or .. (written as is, so that it needs no percent-encoding anywhere).
    condition = var.store_url == null || (
      can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]((/[A-Za-z0-9_.-]+)+/?)?|file:///[^?\\n\\r]+)(\\?[^\\n\\r]*)?$", var.store_url))
      && !can(regex("^s3://[^?]*/\\.\\.?(/|\\?|$)", var.store_url))
    )
    error_message = "store_url must be s3://BUCKET?region=R or s3://BUCKET/PREFIX?region=R (the cache module's store_url; PREFIX is path segments of letters, digits, '_', '.' and '-', none of them '.' or '..'), or file:///DIR; on one line."
  }
}

variable "cache_public_keys" {
  description = "Public keys (name:base64) of the fleet's cache: the host's Nix substitutes only paths signed by one of them. Needed when agent_enabled."
  type        = list(string)
  default     = null

  validation {
    condition     = var.cache_public_keys == null || try(length(var.cache_public_keys) > 0 && alltrue([for k in var.cache_public_keys : can(regex("^[^:\\s\"]+:[A-Za-z0-9+/]{43}=$", k))]), false)
    error_message = "cache_public_keys must hold at least one Nix public key, name:base64 (nixship key generate prints one)."
  }
}

variable "release_public_keys" {
  description = "Public keys (name:base64) whose signed releases the agent applies. Needed when agent_enabled."
  type        = list(string)
  default     = null

  validation {
    condition     = var.release_public_keys == null || try(length(var.release_public_keys) > 0 && alltrue([for k in var.release_public_keys : can(regex("^[^:\\s\"]+:[A-Za-z0-9+/]{43}=$", k))]), false)
    error_message = "release_public_keys must hold at least one Nix public key, name:base64 (nixship key generate prints one)."
  }
}

variable "channel" {
  description = "The release channel the agent follows (channels/<channel>.json in the store)."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,62}$", var.channel))
    error_message = "channel must match [a-z0-9][a-z0-9-]*, at most 63 characters."
  }
}

variable "poll_interval" {
  description = "Seconds between the agent's polls of its channel."
  type        = number
  default     = 30

  validation {
    condition     = var.poll_interval >= 1 && var.poll_interval <= 86400 && floor(var.poll_interval) == var.poll_interval
    error_message = "poll_interval must be a whole number of seconds from 1 to 86400."
  }
}
