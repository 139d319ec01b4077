# Outputs of the deploy module, known once the deploy succeeded.

output "hosts" {
  description = "The hosts deployed (sorted names)."
  value       = terraform_data.deploy.output.hosts
}

output "store_paths" {
  description = "Host name -> the store path deployed to it."
  value       = terraform_data.deploy.output.store_paths
}
