# The Terraform and provider versions the host module needs.
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    # tls_private_key with ED25519 and private_key_openssh (generate_ssh_host_key).
    tls = {
      source  = "hashicorp/tls"
      version = ">= 4.0"
    }
  }
}
