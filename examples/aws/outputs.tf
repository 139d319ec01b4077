# What `nixship fleet from-terraform` reads from `terraform output -json`: the store, the
# region, the SSM document and every host's instance, addresses and tags.

output "cache_url" {
  description = "The fleet's store URL (the cache module's store_url): the fleet file's cache.url."
  value       = module.cache.store_url
}

output "region" {
  description = "The AWS region of the fleet: the fleet file's ssm.region."
  value       = var.region
}

output "ssm_document_name" {
  description = "The SSM document that activates systems: the fleet file's ssm.documentName."
  value       = module.ssm_document.document_name
}

output "hosts" {
  description = "Each host by name: its instance ID, private and public IPv4 address (\"\" when none), instance tags, and SSH host public key (\"\" unless the host module generated it)."
  value = {
    for name, host in module.web : name => {
      instance_id         = host.instance_id
      private_ip          = host.private_ip
      public_ip           = host.public_ip
      ssh_host_public_key = host.ssh_host_public_key
      tags                = host.tags
    }
  }
}
